// The host chain (CVMFS_SERVER_URL) and the proxy chain (CVMFS_HTTP_PROXY) with the global
// "which one is current" state that failover moves along (spec §7.2). Plain state, no I/O.
import { GridboxError, q } from '../errors.js';

/** The pseudo-proxy meaning "no proxy". */
export const DIRECT = 'DIRECT';

/** Splits a `;`-separated server list and expands `@fqrn@` / `@org@`. */
export function parseServerUrls(text: string, fqrn: string): string[] {
  const urls = text.split(';').map((s) => s.trim()).filter((s) => s !== '')
    .map((s) => s.replaceAll('@fqrn@', fqrn).replaceAll('@org@', fqrn.split('.')[0]).replace(/\/+$/, ''));
  if (urls.length === 0) throw new GridboxError('CONFIG_INVALID', `No server URL in ${q(text)}`);
  return urls;
}

/** `a|b;c` → [[a, b], [c]]; `http://` is added where the scheme is missing; DIRECT stays as is. */
export function parseProxyList(text: string): string[][] {
  const groups = text.split(';').map((g) => g.split('|').map((p) => p.trim()).filter((p) => p !== '')
    .map((p) => (p.toUpperCase() === DIRECT ? DIRECT : /^[a-z][a-z0-9+.-]*:\/\//i.test(p) ? p.replace(/\/+$/, '') : `http://${p}`)))
    .filter((g) => g.length > 0);
  if (groups.length === 0) throw new GridboxError('CONFIG_INVALID', `No proxy in ${q(text)}: set CVMFS_HTTP_PROXY, at least to DIRECT`);
  return groups;
}

/**
 * Ordered hosts; `current()` is shared by all requests. `fail(h)` moves on only when `h` is still
 * the current host, so concurrent requests that saw the same failure switch once (spec §7.2).
 * `reorder()` installs a new order (server ordering by round-trip time, host-order.ts) and makes its
 * first host current, as CernVM-FS's ProbeHosts does.
 */
export class HostChain {
  private index = 0;
  private switchedAt = 0;
  private order: readonly string[];

  constructor(readonly configured: readonly string[], private readonly resetAfterMs = 1_800_000, private readonly now = Date.now) {
    if (configured.length === 0) throw new GridboxError('CONFIG_INVALID', 'Host chain is empty');
    this.order = configured.slice();
  }

  /** The hosts in the order failover walks them. */
  get hosts(): readonly string[] {
    return this.order;
  }

  current(): string {
    if (this.index !== 0 && this.resetAfterMs > 0 && this.now() - this.switchedAt >= this.resetAfterMs) this.index = 0;
    return this.order[this.index];
  }

  /** Returns true when this call switched the global host. */
  fail(host: string): boolean {
    if (host !== this.order[this.index]) return false;
    this.index = (this.index + 1) % this.order.length;
    this.switchedAt = this.now();
    return true;
  }

  /** Installs `hosts` (a permutation of the configured hosts) as the order, current = first. */
  reorder(hosts: readonly string[]): void {
    const same = hosts.length === this.configured.length && [...hosts].sort().join('\n') === [...this.configured].sort().join('\n');
    if (!same) throw new GridboxError('INTERNAL', `Host order ${hosts.join(';')} is not a permutation of ${this.configured.join(';')}`);
    this.order = hosts.slice();
    this.index = 0;
  }
}

/**
 * Failover groups of load-balanced proxies. A member is picked at random inside the current
 * group; a failed member is burned; a fully burned group hands over to the next group.
 * With `shard` (CVMFS_PROXY_SHARD=yes) the member depends on the request: `current(key)` maps a key
 * (the URL path) to one live member of the group by rendezvous hashing, so every client of a site
 * sends one URL to the same proxy and each proxy caches its share only; burning a member moves just
 * that member's keys to the others (CernVM-FS builds a consistent-hash ring for the same purpose).
 */
export class ProxyChain {
  private groupIndex = 0;
  private member: string;
  private burned = new Set<string>();
  private switchedAt = 0;
  readonly size: number;

  constructor(readonly groups: readonly (readonly string[])[], private readonly resetAfterMs = 300_000,
    private readonly random = Math.random, private readonly now = Date.now, readonly shard = false) {
    if (groups.length === 0 || groups.some((g) => g.length === 0)) throw new GridboxError('CONFIG_INVALID', 'Proxy chain is empty');
    this.size = groups.reduce((n, g) => n + g.length, 0);
    this.member = this.pick(groups[0]);
  }

  /** The proxy for a request; `key` matters only when sharding. */
  current(key?: string): string {
    if (this.groupIndex !== 0 && this.resetAfterMs > 0 && this.now() - this.switchedAt >= this.resetAfterMs) this.reset();
    if (!this.shard || key === undefined) return this.member;
    let best = this.member;
    let bestScore = -1;
    for (const p of this.alive()) {
      const score = rendezvousScore(p, key);
      if (score > bestScore) { best = p; bestScore = score; }
    }
    return best;
  }

  /** Burns `proxy` if it is still in use and moves to another member or group; true when it switched. */
  fail(proxy: string): boolean {
    if (this.shard ? !this.alive().includes(proxy) : proxy !== this.member) return false;
    this.burned.add(proxy);
    const left = this.alive();
    if (left.length > 0) {
      this.member = this.pick(left);
    } else {
      this.groupIndex = (this.groupIndex + 1) % this.groups.length;
      this.burned.clear();
      this.member = this.pick(this.groups[this.groupIndex]);
    }
    this.switchedAt = this.now();
    return true;
  }

  /** Back to the primary group, rebalanced, nothing burned. */
  reset(): void {
    this.groupIndex = 0;
    this.burned.clear();
    this.member = this.pick(this.groups[0]);
  }

  private alive(): string[] {
    return this.groups[this.groupIndex].filter((p) => !this.burned.has(p));
  }

  private pick(members: readonly string[]): string {
    return members[Math.min(members.length - 1, Math.floor(this.random() * members.length))];
  }
}

/** A 32-bit score of (proxy, key): FNV-1a over both, then murmur3's finalizer so close keys spread. */
export function rendezvousScore(proxy: string, key: string): number {
  let h = 0x811c9dc5;
  const s = `${proxy}\n${key}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
