// Client for the OCI distribution API (pull side only): ping, Bearer/Basic auth from challenges with a
// token cache, manifests (HEAD for change detection, GET verified against the digest), index platform
// selection, paginated tag lists and blobs verified while streaming. Redirects never carry
// Authorization to another host; 5xx/429/network errors are retried with backoff. No pushing, no disk.
// Bytes travel over download/http-request.ts (Node's http/https, keep-alive; no WebAssembly parser, so
// a sync fits under `ulimit -v`).
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { GridboxError, q } from '../errors.js';
import { createAgents, discard, httpRequest, type HttpAgents } from '../download/http-request.js';
import { type Digest, digestAlgorithm, digestOf, parseDigest, verifyDigestStream } from './digest.js';
import {
  type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest, type Platform, type RuntimeSettings,
  MANIFEST_ACCEPT, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, hostPlatform, parseConfig, parseManifest, runtimeSettings, selectPlatform,
} from './image.js';
import { DOCKER_HUB, type ImageReference, formatReference, manifestReferenceOf } from './reference.js';

export interface RegistryCredentials { username: string; password: string }
/** Credentials for a registry host ("docker.io", "host:port"), if any. */
export type CredentialLookup = (registry: string) => RegistryCredentials | undefined;

export interface RegistryClientOptions {
  credentials?: CredentialLookup;
  /** Platform chosen from indexes (default: the host's, linux/amd64 on x86-64). */
  platform?: Platform;
  /** Attempts after the first for network errors, 5xx and 429 (default 3). */
  retries?: number;
  /** First backoff delay, doubled per attempt, with jitter (default 250 ms). */
  backoffMs?: number;
  /** A 429 asking to wait longer than this fails at once with OCI_RATE_LIMITED (default 60 s). */
  maxRetryAfterMs?: number;
  /** Pull-through mirrors: registry host → base URL ("http://127.0.0.1:5001"); tried first, upstream on failure. */
  mirrors?: Record<string, string>;
  /** Hosts spoken to over plain HTTP; default: localhost and 127.0.0.0/8 (as Docker treats them). */
  plainHttp?: (host: string) => boolean;
  /** Per-request inactivity timeout: connect, headers, and each gap in a body (default 30 s). */
  timeoutMs?: number;
}

/** Requests sent, for tests and progress: by HTTP method, plus token fetches (not in byMethod). */
export interface RequestCounters {
  byMethod: Record<string, number>;
  tokens: number;
}

export interface ManifestHead { digest: Digest; mediaType: string; size: number }

export interface FetchedManifest {
  digest: Digest;
  mediaType: string;
  bytes: Buffer;
  document: ImageManifest | ImageIndex;
}

/** An image resolved to one platform: plain data, loaded once. */
export interface ResolvedImage {
  reference: ImageReference;
  /** Digest the tag pointed at (an index digest for multi-arch tags); what HEAD returns next time. */
  digest: Digest;
  /** Digest of the platform manifest (same as `digest` for single-arch tags). */
  manifestDigest: Digest;
  manifest: ImageManifest;
  configDigest: Digest;
  config: ImageConfig;
  settings: RuntimeSettings;
  platform?: Platform;
}

const MAX_ERROR_BODY_BYTES = 8192;
const MAX_REDIRECTS = 5;
const TOKEN_MIN_LIFETIME_S = 60;

interface Challenge { scheme: 'bearer' | 'basic'; realm?: string; service?: string; scope?: string }
interface Sent { status: number; headers: IncomingHttpHeaders; body: IncomingMessage; url: string }
interface Call { registry: string; method: 'GET' | 'HEAD'; path: string; scope?: string; headers?: Record<string, string>; what: string }

export class RegistryClient {
  readonly counters: RequestCounters = { byMethod: {}, tokens: 0 };
  private readonly opts: RegistryClientOptions;
  private readonly challenges = new Map<string, Challenge>();
  private readonly tokens = new Map<string, { token: string; expires: number }>();
  /** Keep-alive pools; idle sockets are unref'd and time out, so an unclosed client never holds a process. */
  private readonly agents: HttpAgents = createAgents();

  constructor(options: RegistryClientOptions = {}) {
    this.opts = options;
  }

  /** Closes idle connections (optional: they close by themselves after a few seconds). */
  close(): void {
    this.agents.close();
  }

  /** GET /v2/: resolves when the registry answers (authenticating if it challenges). */
  async ping(registry: string): Promise<void> {
    const r = await this.send({ registry, method: 'GET', path: '/v2/', what: `ping of ${registry}` });
    await discard(r.body);
  }

  /** HEAD of a manifest: the digest a tag points at, without a GET (Docker Hub counts no pull). */
  async headManifest(ref: ImageReference): Promise<ManifestHead> {
    const what = `manifest of ${q(formatReference(ref))}`;
    const r = await this.send({ registry: ref.registry, method: 'HEAD', path: `/v2/${ref.repository}/manifests/${manifestReferenceOf(ref)}`, scope: pullScope(ref.repository), headers: { accept: MANIFEST_ACCEPT.join(', ') }, what });
    await discard(r.body);
    const header = one(r.headers['docker-content-digest']);
    if (!header) {
      // Registries that omit the header on HEAD: fall back to a verified GET.
      const m = await this.getManifest(ref);
      return { digest: m.digest, mediaType: m.mediaType, size: m.bytes.length };
    }
    return { digest: parseDigest(header), mediaType: (one(r.headers['content-type']) ?? '').split(';')[0], size: Number(one(r.headers['content-length']) ?? -1) };
  }

  /** GET of a manifest or index, verified against the requested digest or Docker-Content-Digest. */
  async getManifest(ref: ImageReference): Promise<FetchedManifest> {
    const what = `manifest of ${q(formatReference(ref))}`;
    const r = await this.send({ registry: ref.registry, method: 'GET', path: `/v2/${ref.repository}/manifests/${manifestReferenceOf(ref)}`, scope: pullScope(ref.repository), headers: { accept: MANIFEST_ACCEPT.join(', ') }, what });
    const bytes = await readLimited(r.body, MAX_MANIFEST_BYTES, what);
    const header = one(r.headers['docker-content-digest']);
    const expected = ref.digest ?? (header ? parseDigest(header) : undefined);
    const digest = digestOf(bytes, expected ? digestAlgorithm(expected) : 'sha256');
    if (expected && digest !== expected) {
      throw new GridboxError('OCI_DIGEST_MISMATCH', `Cannot verify ${what}: expected digest ${expected}, got ${digest}`, { url: r.url });
    }
    const contentType = one(r.headers['content-type']);
    const document = parseManifest(bytes, contentType, what);
    return { digest, mediaType: document.mediaType, bytes, document };
  }

  /** Manifest (through an index for this client's platform, or `platform`) plus config: all a sync needs. */
  async resolveImage(ref: ImageReference, platform?: Platform): Promise<ResolvedImage> {
    const top = await this.getManifest(ref);
    let manifest = top.document;
    let manifestDigest = top.digest;
    let chosen: Platform | undefined;
    if (manifest.kind === 'index') {
      const d = selectPlatform(manifest, platform ?? this.opts.platform ?? hostPlatform());
      chosen = d.platform;
      const child = await this.getManifest({ registry: ref.registry, repository: ref.repository, digest: d.digest });
      if (child.document.kind !== 'manifest') throw new GridboxError('OCI_UNSUPPORTED', `Cannot use ${q(formatReference(ref))}: index entry ${d.digest} is itself an index`);
      manifest = child.document;
      manifestDigest = child.digest;
    }
    const configBytes = await this.fetchBlob(ref.registry, ref.repository, manifest.config, MAX_CONFIG_BYTES);
    const config = parseConfig(configBytes);
    const out: ResolvedImage = { reference: ref, digest: top.digest, manifestDigest, manifest, configDigest: manifest.config.digest, config, settings: runtimeSettings(config) };
    if (chosen) out.platform = chosen;
    return out;
  }

  /** Every tag of a repository, following Link pagination, sorted (registries return filesystem order). */
  async listTags(registry: string, repository: string): Promise<string[]> {
    const tags: string[] = [];
    let path = `/v2/${repository}/tags/list?n=1000`;
    for (let page = 0; page < 10_000; page++) {
      const r = await this.send({ registry, method: 'GET', path, scope: pullScope(repository), what: `tag list of ${q(`${registry}/${repository}`)}` });
      const body = JSON.parse((await readLimited(r.body, 16 * 2 ** 20, 'tag list')).toString()) as { tags?: string[] | null };
      tags.push(...(body.tags ?? []));
      const next = nextLink(one(r.headers.link));
      if (!next) break;
      const u = new URL(next, 'http://x');
      path = u.pathname + u.search;
    }
    return [...new Set(tags)].sort();
  }

  /** Streams a blob, verified against its digest and size as it passes (the last chunk only once verified). */
  async *openBlob(registry: string, repository: string, d: Pick<Descriptor, 'digest' | 'size'>): AsyncGenerator<Buffer> {
    const what = `blob ${d.digest} of ${q(`${registry}/${repository}`)}`;
    const r = await this.send({ registry, method: 'GET', path: `/v2/${repository}/blobs/${d.digest}`, scope: pullScope(repository), what });
    try {
      yield* verifyDigestStream(r.body, d.digest, { size: d.size, label: what });
    } finally {
      if (!r.body.destroyed) r.body.destroy();
    }
  }

  async fetchBlob(registry: string, repository: string, d: Pick<Descriptor, 'digest' | 'size'>, maxBytes: number): Promise<Buffer> {
    if (d.size > maxBytes) throw new GridboxError('OCI_REGISTRY', `Refusing blob ${d.digest}: declared size ${d.size} exceeds ${maxBytes} bytes`);
    const parts: Buffer[] = [];
    for await (const c of this.openBlob(registry, repository, d)) parts.push(c);
    return Buffer.concat(parts);
  }

  private baseUrl(registry: string): string {
    const host = registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
    const plain = this.opts.plainHttp ?? ((h: string) => /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(h));
    return `${plain(host) ? 'http' : 'https'}://${host}`;
  }

  /** One logical request: mirror first (if any), then the registry; auth, redirects and retries inside. */
  private async send(call: Call): Promise<Sent> {
    const mirror = this.opts.mirrors?.[call.registry];
    if (mirror) {
      try {
        const r = await this.sendTo(mirror.replace(/\/+$/, ''), call);
        if (r.status < 400) return r;
        await discard(r.body);
      } catch { /* mirror down or refusing: the registry itself is the fallback */ }
    }
    const r = await this.sendTo(this.baseUrl(call.registry), call);
    if (r.status >= 400) throw await statusError(r, call.what);
    return r;
  }

  private async sendTo(base: string, call: Call): Promise<Sent> {
    const retries = this.opts.retries ?? 3;
    for (let attempt = 0; ; attempt++) {
      let r: Sent;
      try {
        r = await this.authorised(base, call);
      } catch (e) {
        if (e instanceof GridboxError || attempt >= retries) {
          if (e instanceof GridboxError) throw e;
          throw new GridboxError('OCI_REGISTRY', `Cannot fetch ${call.what} from ${base}: ${(e as Error).message}`, { cause: e, url: base + call.path });
        }
        await sleep(this.backoff(attempt));
        continue;
      }
      if ((r.status === 429 || r.status >= 500) && attempt < retries) {
        let wait = this.backoff(attempt);
        if (r.status === 429) {
          const ra = retryAfterMs(one(r.headers['retry-after']));
          const max = this.opts.maxRetryAfterMs ?? 60_000;
          if (ra !== undefined && ra > max) { throw await statusError(r, call.what); }
          if (ra !== undefined) wait = ra;
        }
        await discard(r.body);
        await sleep(wait);
        continue;
      }
      return r;
    }
  }

  private backoff(attempt: number): number {
    const base = (this.opts.backoffMs ?? 250) * 2 ** attempt;
    return base / 2 + Math.random() * base / 2;
  }

  /** Sends with the credentials known for this host; on a 401 challenge, authenticates and resends once. */
  private async authorised(base: string, call: Call): Promise<Sent> {
    const host = new URL(base).host;
    let auth = await this.authHeader(host, call, this.challenges.get(host));
    let r = await this.follow(base + call.path, call, auth);
    if (r.status !== 401) return r;
    const challenge = parseChallenge(one(r.headers['www-authenticate']));
    await discard(r.body);
    if (!challenge) throw new GridboxError('OCI_AUTH', `Cannot fetch ${call.what}: 401 without a usable WWW-Authenticate challenge`, { url: base + call.path });
    this.challenges.set(host, challenge);
    auth = await this.authHeader(host, call, challenge, true);
    r = await this.follow(base + call.path, call, auth);
    if (r.status === 401) {
      await discard(r.body);
      throw new GridboxError('OCI_AUTH', `Cannot fetch ${call.what}: registry ${host} refused our ${challenge.scheme === 'bearer' ? 'token' : 'credentials'}`, { url: base + call.path });
    }
    return r;
  }

  private async authHeader(host: string, call: Call, c: Challenge | undefined, fresh = false): Promise<string | undefined> {
    const creds = this.opts.credentials?.(call.registry);
    if (!c) return undefined;
    if (c.scheme === 'basic') return creds ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}` : undefined;
    if (!c.realm) return undefined;
    const scope = call.scope ?? c.scope;
    const key = `${c.realm}|${c.service ?? ''}|${scope ?? ''}|${creds?.username ?? ''}`;
    const cached = this.tokens.get(key);
    if (cached && !fresh && cached.expires > Date.now()) return `Bearer ${cached.token}`;
    const u = new URL(c.realm);
    if (c.service) u.searchParams.set('service', c.service);
    if (scope) for (const s of scope.split(' ')) u.searchParams.append('scope', s);
    const headers: Record<string, string> = {};
    if (creds) headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    this.counters.tokens++;
    let res: { status: number; body: IncomingMessage };
    try {
      res = await httpRequest(u, { method: 'GET', headers, agents: this.agents, timeoutMs: this.opts.timeoutMs ?? 30_000 });
    } catch (e) {
      throw new GridboxError('OCI_AUTH', `Cannot get a token for ${host} from ${u.origin}${u.pathname}: ${(e as Error).message}`, { cause: e });
    }
    const body = await readLimited(res.body, 1 << 20, 'token response');
    if (res.status !== 200) throw new GridboxError('OCI_AUTH', `Cannot get a token for ${host} from ${u.origin}${u.pathname}: HTTP ${res.status}`);
    let doc: { token?: string; access_token?: string; expires_in?: number; issued_at?: string };
    try { doc = JSON.parse(body.toString()); } catch (e) { throw new GridboxError('OCI_AUTH', `Cannot parse the token from ${u.origin}${u.pathname}`, { cause: e }); }
    const token = doc.token ?? doc.access_token;
    if (!token) throw new GridboxError('OCI_AUTH', `Token response from ${u.origin}${u.pathname} has no token`);
    // Distribution's token spec: expires_in defaults to 60 s and is never less; refresh 10 s early.
    const lifetime = Math.max(doc.expires_in ?? TOKEN_MIN_LIFETIME_S, TOKEN_MIN_LIFETIME_S);
    const issued = doc.issued_at ? Date.parse(doc.issued_at) : NaN;
    const start = Number.isFinite(issued) && issued <= Date.now() ? issued : Date.now();
    this.tokens.set(key, { token, expires: start + lifetime * 1000 - 10_000 });
    return `Bearer ${token}`;
  }

  /** One HTTP exchange following redirects; Authorization is dropped as soon as the host changes. */
  private async follow(url: string, call: Call, auth: string | undefined): Promise<Sent> {
    const origin = new URL(url).host;
    let current = url;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const headers: Record<string, string> = { 'user-agent': 'gridbox', ...call.headers };
      if (auth && new URL(current).host === origin) headers.authorization = auth;
      this.counters.byMethod[call.method] = (this.counters.byMethod[call.method] ?? 0) + 1;
      const res = await httpRequest(current, { method: call.method, headers, agents: this.agents, timeoutMs: this.opts.timeoutMs ?? 30_000 });
      const location = one(res.headers.location);
      if ([301, 302, 303, 307, 308].includes(res.status) && location) {
        await discard(res.body);
        current = new URL(location, current).toString();
        continue;
      }
      return { status: res.status, headers: res.headers, body: res.body, url: current };
    }
    throw new GridboxError('OCI_REGISTRY', `Cannot fetch ${call.what}: more than ${MAX_REDIRECTS} redirects from ${url}`, { url });
  }
}

/** Credentials from a docker config.json ({"auths": {"host": {"auth": base64("u:p")} | {username, password}}}). */
export function parseDockerConfig(text: string): CredentialLookup {
  let doc: { auths?: Record<string, { auth?: string; username?: string; password?: string }> };
  try { doc = JSON.parse(text); } catch (e) { throw new GridboxError('CONFIG_INVALID', 'Cannot parse docker auth config: not JSON', { cause: e }); }
  const map = new Map<string, RegistryCredentials>();
  for (const [key, v] of Object.entries(doc.auths ?? {})) {
    let host = key.replace(/^https?:\/\//, '').replace(/\/.*$/, '').toLowerCase();
    if (host === 'index.docker.io' || host === 'registry-1.docker.io' || host === 'registry.hub.docker.com') host = DOCKER_HUB;
    if (v.username !== undefined && v.password !== undefined) { map.set(host, { username: v.username, password: v.password }); continue; }
    if (v.auth) {
      const plain = Buffer.from(v.auth, 'base64').toString();
      const i = plain.indexOf(':');
      if (i > 0) map.set(host, { username: plain.slice(0, i), password: plain.slice(i + 1) });
    }
  }
  return (registry) => map.get(registry.toLowerCase());
}

/** Parses `Bearer realm="…",service="…",scope="a b"` or `Basic realm="…"`; commas inside quotes are kept. */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/.exec(header);
  if (!m) return undefined;
  const scheme = m[1].toLowerCase();
  if (scheme !== 'bearer' && scheme !== 'basic') return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2].matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  return { scheme, realm: params.realm, service: params.service, scope: params.scope };
}

function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function nextLink(link: string | undefined): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(',')) {
    const m = /<([^>]*)>\s*;\s*rel="?next"?/.exec(part);
    if (m) return m[1];
  }
  return undefined;
}

function retryAfterMs(v: string | undefined): number | undefined {
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isFinite(t) ? Math.max(0, t - Date.now()) : undefined;
}

async function readLimited(body: AsyncIterable<Uint8Array> & { destroy?: () => void }, max: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += c.byteLength;
    if (n > max) { body.destroy?.(); throw new GridboxError('OCI_REGISTRY', `Cannot read ${what}: more than ${max} bytes`); }
    parts.push(Buffer.from(c));
  }
  return Buffer.concat(parts);
}

async function statusError(r: Sent, what: string): Promise<GridboxError> {
  let detail = '';
  try {
    const text = (await readLimited(r.body, MAX_ERROR_BODY_BYTES, 'error body').catch(() => Buffer.alloc(0))).toString();
    const doc = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    if (doc.errors?.[0]) detail = `: ${doc.errors[0].code ?? ''} ${doc.errors[0].message ?? ''}`.trimEnd();
  } catch { /* not a registry error document */ }
  const code = r.status === 404 ? 'OCI_NOT_FOUND' : r.status === 429 ? 'OCI_RATE_LIMITED' : r.status === 401 || r.status === 403 ? 'OCI_AUTH' : 'OCI_REGISTRY';
  return new GridboxError(code, `Cannot fetch ${what}: HTTP ${r.status}${detail}`, { url: r.url, status: r.status });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
