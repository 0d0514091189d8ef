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
 */
export class HostChain {
  private index = 0;
  private switchedAt = 0;

  constructor(readonly hosts: readonly string[], private readonly resetAfterMs = 1_800_000, private readonly now = Date.now) {
    if (hosts.length === 0) throw new GridboxError('CONFIG_INVALID', 'Host chain is empty');
  }

  current(): string {
    if (this.index !== 0 && this.resetAfterMs > 0 && this.now() - this.switchedAt >= this.resetAfterMs) this.index = 0;
    return this.hosts[this.index];
  }

  /** Returns true when this call switched the global host. */
  fail(host: string): boolean {
    if (host !== this.hosts[this.index]) return false;
    this.index = (this.index + 1) % this.hosts.length;
    this.switchedAt = this.now();
    return true;
  }
}

/**
 * Failover groups of load-balanced proxies. A member is picked at random inside the current
 * group; a failed member is burned; a fully burned group hands over to the next group.
 */
export class ProxyChain {
  private groupIndex = 0;
  private member: string;
  private burned = new Set<string>();
  private switchedAt = 0;
  readonly size: number;

  constructor(readonly groups: readonly (readonly string[])[], private readonly resetAfterMs = 300_000,
    private readonly random = Math.random, private readonly now = Date.now) {
    if (groups.length === 0 || groups.some((g) => g.length === 0)) throw new GridboxError('CONFIG_INVALID', 'Proxy chain is empty');
    this.size = groups.reduce((n, g) => n + g.length, 0);
    this.member = this.pick(groups[0]);
  }

  current(): string {
    if (this.groupIndex !== 0 && this.resetAfterMs > 0 && this.now() - this.switchedAt >= this.resetAfterMs) this.reset();
    return this.member;
  }

  /** Burns `proxy` if it is still current and moves to another member or group; true when it switched. */
  fail(proxy: string): boolean {
    if (proxy !== this.member) return false;
    this.burned.add(proxy);
    const left = this.groups[this.groupIndex].filter((p) => !this.burned.has(p));
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

  private pick(members: readonly string[]): string {
    return members[Math.min(members.length - 1, Math.floor(this.random() * members.length))];
  }
}
