// One HTTP/1.1 request on Node's own http/https modules: keep-alive agents, a socket-inactivity timeout
// (connect, waiting for headers, stalls between body chunks), and a forward proxy spoken to with the
// absolute URI as request target (no CONNECT tunnel: CVMFS_HTTP_PROXY semantics, spec §7.2).
// Deliberately not undici/fetch: their llhttp parser is a WebAssembly instance, and V8 reserves ~10 GiB of
// address space (guard regions) per WebAssembly memory, which fails under `ulimit -v` (issue 8).
// No retries, redirects or status handling here: callers decide (download/transfer.ts, oci/registry-client.ts).
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type https from 'node:https';
import { createRequire } from 'node:module';
import { tlsTrustOptions } from '../plumbing/extra-ca.js';

// node:https (and tls with it) is loaded on the first https request: repositories on plain http, the usual
// stratum 1 and squid case, never pay for it in a mount daemon's or a runtime's start.
const requireBuiltin = createRequire(import.meta.url);
let httpsModule: typeof https | undefined;
const httpsLib = (): typeof https => (httpsModule ??= requireBuiltin('node:https') as typeof https);

/** Keep-alive connection pools for one client; close() drops idle sockets. */
export interface HttpAgents {
  readonly http: http.Agent;
  readonly https: https.Agent;
  close(): void;
}

/** Idle keep-alive sockets are closed after this long (undici's default was 4 s; origins keep 5-60 s). */
export const IDLE_SOCKET_MS = 4_000;

export function createAgents(): HttpAgents {
  // `timeout` applies to sockets in the pool: an idle one is destroyed after IDLE_SOCKET_MS. Pooled
  // sockets are unref'd by Node, so they never keep a process alive.
  const o = { keepAlive: true, timeout: IDLE_SOCKET_MS, scheduling: 'lifo' as const };
  const plain = new http.Agent(o);
  let secure: https.Agent | undefined;
  return {
    http: plain,
    get https() { return (secure ??= new (httpsLib().Agent)({ ...o, ...tlsTrustOptions() })); },
    close: () => { plain.destroy(); secure?.destroy(); },
  };
}

export interface HttpRequestOptions {
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  /** A forward proxy URL ("http://host:3128"); the request line then carries the absolute URI. */
  proxy?: string;
  /** Socket inactivity limit in ms: connect, headers, and each gap between body chunks. */
  timeoutMs: number;
  agents: HttpAgents;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body as a readable stream; iterate it (with backpressure) or discard() it. */
  body: IncomingMessage;
}

/** Error code of a request that hit `timeoutMs` (the same code the kernel uses for connect timeouts). */
export const TIMEOUT_CODE = 'ETIMEDOUT';

/** Sends one request; resolves once the status line and headers arrived. Rejects with Node's socket errors or ETIMEDOUT. */
export function httpRequest(url: string | URL, o: HttpRequestOptions): Promise<HttpResponse> {
  const target = typeof url === 'string' ? new URL(url) : url;
  const via = o.proxy !== undefined ? new URL(o.proxy) : target;
  const secure = via.protocol === 'https:';
  if (!secure && via.protocol !== 'http:') return Promise.reject(new Error(`unsupported URL scheme ${via.protocol} in ${via.href}`));
  const headers: Record<string, string> = { ...o.headers };
  if (o.proxy !== undefined) headers.host = target.host;
  return new Promise((resolve, reject) => {
    const req = (secure ? httpsLib() : http).request({
      protocol: via.protocol,
      hostname: via.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: via.port === '' ? (secure ? 443 : 80) : Number(via.port),
      method: o.method ?? 'GET',
      path: o.proxy !== undefined ? target.href : target.pathname + target.search,
      headers,
      agent: secure ? o.agents.https : o.agents.http,
    });
    let res: IncomingMessage | undefined;
    req.setTimeout(o.timeoutMs, () => {
      const e = Object.assign(new Error(`no data for ${o.timeoutMs} ms`), { code: TIMEOUT_CODE });
      // A body being read sees the timeout itself, not the "aborted" that destroying the socket would give it.
      if (res !== undefined && !res.complete) res.destroy(e);
      req.destroy(e);
    });
    req.on('error', reject);
    req.once('response', (r) => {
      res = r;
      // Readers see body errors through their iterator; this keeps an unread body's error from being uncaught.
      r.on('error', () => undefined);
      resolve({ status: r.statusCode ?? 0, headers: r.headers, body: r });
    });
    req.end();
  });
}

/**
 * Consumes a body nobody needs (a redirect, an error, HEAD) so its keep-alive socket can be reused; a body
 * longer than `maxBytes` is not worth reading: the socket is destroyed instead.
 */
export async function discard(body: IncomingMessage, maxBytes = 64 * 1024): Promise<void> {
  if (body.complete || body.destroyed) return;
  let n = 0;
  try {
    for await (const c of body as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > maxBytes) { body.destroy(); return; }
    }
  } catch { /* the connection is gone: nothing left to reuse */ }
}
