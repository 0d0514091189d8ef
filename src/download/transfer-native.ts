// One attempt of a content object through the native fetcher (native-fetch.ts): the same request as
// transfer.ts would send (proxy or DIRECT, no-cache, user agent, inactivity timeout, raw cap), the same
// verification as body-sinks.ts's objectSink (hash over the raw body first, then the size cap, the inflate,
// the exact size), and the same classified errors, so the policy wrappers cannot tell the two apart.
// The body never enters JavaScript: the addon writes the plain bytes to the sink's file, and the file is
// taken only when everything checked out; otherwise the sink's abort() removes it.
// Content objects only (sinks with a file target): mutable files (.cvmfspublished, refuseStale, max-age)
// stay on transfer.ts.
import type { IncomingHttpHeaders } from 'node:http';
import { GridboxError, q } from '../errors.js';
import { formatObjectId } from '../hash/object-id.js';
import { DIRECT } from './chains.js';
import { TIMEOUT_CODE } from './http-request.js';
import type { NativeFetcher, NativeFetchResult } from './native-fetch.js';
import { downloadError, statusError, transportError, type AttemptRequest, type DownloadErrorFields, type FileTarget } from './transfer.js';

/** The addon could not load libcurl: this attempt did nothing, and the caller should use transfer.ts. */
export const NATIVE_UNAVAILABLE = Symbol('native fetch unavailable');

/** curl codes of a connection that never got to send the request (CURLE_COULDNT_RESOLVE_PROXY/_HOST, _CONNECT). */
const CONNECT_CODES = new Set([5, 6, 7]);

export async function transferNative<T>(fetcher: NativeFetcher, req: AttemptRequest<T>, target: FileTarget<T>): Promise<T | typeof NATIVE_UNAVAILABLE> {
  const viaProxy = req.proxy !== DIRECT;
  const headers: string[] = [];
  if (req.noCache) headers.push('Cache-Control: no-cache', 'Pragma: no-cache');
  else if (req.maxAgeS !== undefined) headers.push(`Cache-Control: max-age=${Math.floor(req.maxAgeS)}`);
  const base: DownloadErrorFields = { url: req.url, proxy: req.proxy, failure: viaProxy ? 'proxy' : 'host', transfer: true };
  try {
    const r = await fetcher.fetch({
      url: req.url, proxy: viaProxy ? req.proxy : '', userAgent: req.userAgent, headers, timeoutMs: req.timeoutMs, maxRawBytes: req.maxBytes,
      algorithm: target.id.algorithm, compressed: target.compression === 'zlib', expectedSize: target.expectedSize,
      maxOutBytes: target.maxOutBytes, outPath: target.path(),
    });
    if (r.unavailable) {
      req.sink.abort();
      return NATIVE_UNAVAILABLE;
    }
    if (r.wireBytes > 0) req.onBytes?.(r.wireBytes);
    check(r, req, target, base, viaProxy);
    return target.adopt(r.outBytes);
  } catch (e) {
    req.sink.abort();
    throw e;
  }
}

/** Throws the error transfer.ts and objectSink would have thrown for the same outcome. */
function check<T>(r: NativeFetchResult, req: AttemptRequest<T>, target: FileTarget<T>, base: DownloadErrorFields, viaProxy: boolean): void {
  const objectId = formatObjectId(target.id);
  if (r.closed) throw new GridboxError('DOWNLOAD_HOST', `Download of ${q(req.url)} cancelled: the client is closing`, { ...base, transfer: false });
  if (r.writeErrno !== 0) {
    // The cache's disk refused the bytes: no other host or proxy can fix that (as the JavaScript path's writer).
    const code = r.writeErrno === 28 /* ENOSPC */ ? 'CACHE_FULL' : 'CACHE_IO';
    throw new GridboxError(code, `Cannot store object ${q(objectId)} in the cache (errno ${r.writeErrno})`, { objectId });
  }
  if (r.status !== 0 && (r.status < 200 || r.status > 299)) {
    const h: IncomingHttpHeaders = {};
    if (r.squidError !== '') h['x-squid-error'] = r.squidError;
    if (r.proxyStatus !== '') h['proxy-status'] = r.proxyStatus;
    throw statusError(r.status, h, base, viaProxy);
  }
  if (r.tooLarge) {
    throw downloadError('DOWNLOAD_TOO_LARGE', `Cannot download ${q(req.url)}: more than the cap of ${req.maxBytes} bytes`, { ...base, transfer: false });
  }
  if (r.timedOut || r.curlCode !== 0) {
    const e = Object.assign(new Error(r.timedOut ? `no data for ${req.timeoutMs} ms` : r.curlMessage), { code: r.timedOut ? TIMEOUT_CODE : `CURLE_${r.curlCode}` });
    throw transportError(e, base, r.status === 0 || CONNECT_CODES.has(r.curlCode) ? 'connect to' : 'read from');
  }
  // The hash decides first: a corrupt body is a hash mismatch, whatever the inflater made of it.
  if (r.hex !== target.id.hex) {
    throw new GridboxError('STORE_HASH_MISMATCH', `Cannot verify object ${q(target.label)}: content hash is ${q(r.hex)}`, { objectId });
  }
  const limit = target.expectedSize ?? target.maxOutBytes;
  if (r.overflow) {
    throw new GridboxError('STORE_SIZE_MISMATCH', `Cannot verify object ${q(target.label)}: decompressed size exceeds ${limit} bytes`, { objectId });
  }
  if (r.inflateError || !r.inflateEnded) {
    throw new GridboxError('COMPRESSION_BAD', `Cannot inflate object ${q(target.label)}: ${r.inflateError ? r.inflateMessage : 'stream did not end'}`, { objectId });
  }
  if (target.expectedSize !== undefined && r.outBytes !== target.expectedSize) {
    throw new GridboxError('STORE_SIZE_MISMATCH', `Cannot verify object ${q(target.label)}: expected ${target.expectedSize} bytes, got ${r.outBytes}`, { objectId });
  }
}
