// One HTTP GET attempt (http-request.ts: Node's http, no WebAssembly): through a forward proxy
// (absolute-form request target, no CONNECT tunnel) or DIRECT; status and transport errors classified as
// host or proxy failures (spec §1.4, §7.2). Knows nothing of retries or failover: those are the wrappers
// in policies.ts. The body goes to the sink chunk by chunk, awaiting each write (backpressure).
import { createReadStream } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { fileURLToPath } from 'node:url';
import { GridboxError, q, type ErrorCode } from '../errors.js';
import type { ObjectId } from '../hash/object-id.js';
import type { Compression } from './body-sinks.js';
import { DIRECT } from './chains.js';
import { httpRequest, TIMEOUT_CODE, type HttpAgents, type HttpResponse } from './http-request.js';

/** Who is to blame for a failure, which decides the failover step (spec §7.2). */
export type FailureKind = 'host' | 'proxy';

/** Receives the raw body of one attempt; `finish` verifies and yields the result. */
export interface BodySink<T> {
  write(chunk: Buffer): void | Promise<void>;
  finish(): Promise<T>;
  /** Drops whatever was received (the attempt failed). */
  abort(): void;
  /**
   * Present when the result may instead arrive whole, as a file someone else downloaded, verified as it came
   * and wrote (transfer-native.ts); then neither write() nor finish() is called, and abort() drops the file.
   */
  readonly file?: FileTarget<T>;
}

/** What a download straight into a file must know and check, and how the sink takes the verified file. */
export interface FileTarget<T> {
  readonly id: ObjectId;
  readonly label: string;
  readonly compression: Compression;
  /** The decompressed size that must come out, when known. */
  readonly expectedSize: number | undefined;
  /** Cap on the decompressed size when it is not known. */
  readonly maxOutBytes: number;
  /** Where this attempt's file goes (created by the downloader). */
  path(): string;
  /** The file verified and holds `size` plain bytes: the sink's result. */
  adopt(size: number): T;
}

export interface AttemptRequest<T> {
  url: string;
  /** A proxy URL, or DIRECT. */
  proxy: string;
  noCache: boolean;
  /** Ask caches on the way for a copy no older than this (Cache-Control: max-age); ignored with noCache. */
  maxAgeS?: number;
  /**
   * A proxy's stale copy it could not revalidate (Warning 111/112) is a host failure: for a mutable file
   * (the manifest) it means the host is down and the copy may hide a newer revision on another host.
   */
  refuseStale?: boolean;
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

const TIMEOUT_CODES = new Set([TIMEOUT_CODE, 'ESOCKETTIMEDOUT']);

/** What an attempt asks of caches on the way: a fresh copy (no-cache), or one no older than maxAgeS. Both transfer paths send these. */
export function cacheHeaders(req: Pick<AttemptRequest<unknown>, 'noCache' | 'maxAgeS'>): Record<string, string> {
  if (req.noCache) return { 'cache-control': 'no-cache', pragma: 'no-cache' };
  return req.maxAgeS === undefined ? {} : { 'cache-control': `max-age=${Math.floor(req.maxAgeS)}` };
}

/** Runs one attempt; resolves with the sink's result or rejects with a classified GridboxError. */
export async function transfer<T>(agents: HttpAgents, req: AttemptRequest<T>): Promise<T> {
  const target = new URL(req.url);
  if (target.protocol === 'file:') return transferFile(target, req);
  const viaProxy = req.proxy !== DIRECT;
  const headers: Record<string, string> = { 'user-agent': req.userAgent, connection: 'keep-alive', ...cacheHeaders(req) };
  const base: DownloadErrorFields = { url: req.url, proxy: req.proxy, failure: viaProxy ? 'proxy' : 'host', transfer: true };
  let res: HttpResponse;
  try {
    res = await httpRequest(target, { headers, agents, timeoutMs: req.timeoutMs, proxy: viaProxy ? req.proxy : undefined });
  } catch (e) {
    req.sink.abort();
    throw transportError(e, base, 'connect to');
  }
  try {
    if (res.status < 200 || res.status > 299) throw statusError(res.status, res.headers, base, viaProxy);
    const warning = String(res.headers.warning ?? '');
    if (req.refuseStale && viaProxy && /(^|,)\s*11[12]\s/.test(warning)) {
      throw downloadError('DOWNLOAD_HOST', `Cannot download ${q(req.url)} via proxy ${q(req.proxy)}: the proxy could not reach the host and answered with a stale copy (Warning: ${warning})`,
        { ...base, failure: 'host', transfer: false, status: res.status });
    }
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
    // A half-read body leaves the connection in an unknown state: it is closed, never reused.
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

export function transportError(e: unknown, base: DownloadErrorFields, action: string): GridboxError {
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

export function statusError(s: number, h: IncomingHttpHeaders, base: DownloadErrorFields, viaProxy: boolean): GridboxError {
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
