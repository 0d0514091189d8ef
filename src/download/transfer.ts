// One HTTP GET attempt with undici: through a forward proxy (absolute-form request target, no
// CONNECT tunnel) or DIRECT; status and transport errors classified as host or proxy failures
// (spec §1.4, §7.2). Knows nothing of retries or failover: those are the wrappers in policies.ts.
import { createReadStream } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Agent, type Dispatcher } from 'undici';
import { GridboxError, q, type ErrorCode } from '../errors.js';
import { DIRECT } from './chains.js';

/** Who is to blame for a failure, which decides the failover step (spec §7.2). */
export type FailureKind = 'host' | 'proxy';

/** Receives the raw body of one attempt; `finish` verifies and yields the result. */
export interface BodySink<T> {
  write(chunk: Buffer): void | Promise<void>;
  finish(): Promise<T>;
  /** Drops whatever was received (the attempt failed). */
  abort(): void;
}

export interface AttemptRequest<T> {
  url: string;
  /** A proxy URL, or DIRECT. */
  proxy: string;
  noCache: boolean;
  timeoutMs: number;
  /** Cap on raw body bytes. */
  maxBytes: number;
  sink: BodySink<T>;
  userAgent: string;
  /** Called with every raw byte count received, for counters. */
  onBytes?: (n: number) => void;
}

/** Fields every download error carries so policies can classify it without string matching. */
export interface DownloadErrorFields {
  url: string;
  proxy: string;
  failure: FailureKind;
  /** A transport-level failure (timeout, refused, short read): the same path may be retried. */
  transfer: boolean;
  status?: number;
}

export function downloadError(code: ErrorCode, message: string, f: DownloadErrorFields, cause?: unknown): GridboxError {
  return new GridboxError(code, message, { ...f, cause });
}

/** The dispatchers one downloader uses: keep-alive agents with the proxy and direct connect timeouts. */
export class Dispatchers {
  readonly viaProxy: Agent;
  readonly direct: Agent;
  constructor(proxyTimeoutMs: number, directTimeoutMs: number) {
    this.viaProxy = new Agent({ connect: { timeout: proxyTimeoutMs }, keepAliveTimeout: 30_000 });
    this.direct = new Agent({ connect: { timeout: directTimeoutMs }, keepAliveTimeout: 30_000 });
  }
  async close(): Promise<void> {
    await Promise.all([this.viaProxy.close(), this.direct.close()]);
  }
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

/** Runs one attempt; resolves with the sink's result or rejects with a classified GridboxError. */
export async function transfer<T>(d: Dispatchers, req: AttemptRequest<T>): Promise<T> {
  const target = new URL(req.url);
  if (target.protocol === 'file:') return transferFile(target, req);
  const viaProxy = req.proxy !== DIRECT;
  const headers: Record<string, string> = { 'user-agent': req.userAgent, connection: 'keep-alive' };
  if (req.noCache) { headers['cache-control'] = 'no-cache'; headers.pragma = 'no-cache'; }
  const opts: Dispatcher.RequestOptions = viaProxy
    ? { origin: new URL(req.proxy).origin, path: target.href, method: 'GET', headers: { ...headers, host: target.host } }
    : { origin: target.origin, path: target.pathname + target.search, method: 'GET', headers };
  const base: DownloadErrorFields = { url: req.url, proxy: req.proxy, failure: viaProxy ? 'proxy' : 'host', transfer: true };
  let res: Dispatcher.ResponseData;
  try {
    res = await (viaProxy ? d.viaProxy : d.direct).request({ ...opts, headersTimeout: req.timeoutMs, bodyTimeout: req.timeoutMs });
  } catch (e) {
    req.sink.abort();
    throw transportError(e, base, 'connect to');
  }
  try {
    if (res.statusCode < 200 || res.statusCode > 299) throw statusError(res, base, viaProxy);
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > req.maxBytes) {
      throw downloadError('DOWNLOAD_TOO_LARGE', `Cannot download ${q(req.url)}: declared ${declared} bytes, more than the cap of ${req.maxBytes}`,
        { ...base, transfer: false });
    }
    let received = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      received += chunk.length;
      req.onBytes?.(chunk.length);
      if (received > req.maxBytes) {
        throw downloadError('DOWNLOAD_TOO_LARGE', `Cannot download ${q(req.url)}: more than the cap of ${req.maxBytes} bytes`, { ...base, transfer: false });
      }
      await req.sink.write(chunk);
    }
  } catch (e) {
    // Destroying an undici body emits an AbortError; nobody else listens, so swallow it here.
    res.body.on('error', () => undefined);
    res.body.destroy();
    req.sink.abort();
    if (e instanceof GridboxError) throw e;
    throw transportError(e, base, 'read from');
  }
  return req.sink.finish();
}

/** file:// hosts (spec §7.1: "handy for tests"): no proxy, a missing file is a host failure like a 404. */
async function transferFile<T>(target: URL, req: AttemptRequest<T>): Promise<T> {
  const base: DownloadErrorFields = { url: req.url, proxy: DIRECT, failure: 'host', transfer: false };
  let received = 0;
  try {
    for await (const chunk of createReadStream(fileURLToPath(target)) as AsyncIterable<Buffer>) {
      received += chunk.length;
      req.onBytes?.(chunk.length);
      if (received > req.maxBytes) {
        throw downloadError('DOWNLOAD_TOO_LARGE', `Cannot read ${q(req.url)}: more than the cap of ${req.maxBytes} bytes`, base);
      }
      await req.sink.write(chunk);
    }
  } catch (e) {
    req.sink.abort();
    if (e instanceof GridboxError) throw e;
    throw downloadError('DOWNLOAD_HOST', `Cannot read ${q(req.url)}: ${(e as Error).message}`, base, e);
  }
  return req.sink.finish();
}

function transportError(e: unknown, base: DownloadErrorFields, action: string): GridboxError {
  const code = (e as { code?: string }).code ?? '';
  const via = base.proxy === DIRECT ? '' : ` via proxy ${q(base.proxy)}`;
  if (TIMEOUT_CODES.has(code)) {
    return downloadError('DOWNLOAD_TIMEOUT', `Timed out trying to ${action} ${q(base.url)}${via}`, base, e);
  }
  // Refused/reset/unreachable: with a proxy we cannot tell whether the proxy or the origin is gone,
  // and CVMFS blames the proxy (spec §7.2: connection failures are proxy errors when a proxy is used).
  const c: ErrorCode = base.proxy === DIRECT ? 'DOWNLOAD_HOST' : action === 'connect to' ? 'DOWNLOAD_PROXY_CONNECT' : 'DOWNLOAD_PROXY';
  return downloadError(c, `Cannot ${action} ${q(base.url)}${via}: ${(e as Error).message ?? String(e)}`, base, e);
}

function statusError(res: Dispatcher.ResponseData, base: DownloadErrorFields, viaProxy: boolean): GridboxError {
  const s = res.statusCode;
  const h = res.headers;
  // spec §1.4: 3xx (redirects are not followed), 400, 404, 429 and 5xx blame the host; any other
  // status blames the proxy when there is one. X-Squid-Error or Proxy-Status "error=" turn it into a proxy error.
  let failure: FailureKind = (s >= 300 && s < 400) || s === 400 || s === 404 || s === 429 || s >= 500 || !viaProxy ? 'host' : 'proxy';
  const squidError = h['x-squid-error'];
  const proxyStatus = String(h['proxy-status'] ?? '');
  if (viaProxy && (squidError !== undefined || /error=/.test(proxyStatus))) failure = 'proxy';
  const via = viaProxy ? ` via proxy ${q(base.proxy)}` : '';
  const why = squidError !== undefined ? ` (X-Squid-Error: ${String(squidError)})` : '';
  return downloadError(failure === 'proxy' ? 'DOWNLOAD_PROXY' : 'DOWNLOAD_HOST',
    `Cannot download ${q(base.url)}${via}: HTTP ${s}${why}`, { ...base, failure, transfer: false, status: s });
}
