// One attempt of a content object through the native fetcher (native-fetch.ts): the same request as
// transfer.ts would send (proxy or DIRECT, no-cache, user agent, inactivity timeout, raw cap), the same
// verification as body-sinks.ts's objectSink (hash over the raw body first, then the size cap, the inflate,
// the exact size), and the same classified errors, so the policy wrappers cannot tell the two apart.
// The body never enters JavaScript: the addon writes the plain bytes to the sink's file, and the file is
// taken only when everything checked out; otherwise the sink's abort() removes it.
// Content objects only (sinks with a file target): mutable files (.cvmfspublished, refuseStale, max-age)
// stay on transfer.ts.
import type { IncomingHttpHeaders } from 'node:http';
import { constants as osConstants } from 'node:os';
import { GridboxError, q } from '../errors.js';
import { formatObjectId } from '../hash/object-id.js';
import { objectFailure } from './body-sinks.js';
import { DIRECT } from './chains.js';
import { TIMEOUT_CODE } from './http-request.js';
import type { NativeFetcher, NativeFetchResult } from './native-fetch.js';
import { cacheHeaders, downloadError, statusError, transportError, type AttemptRequest, type DownloadErrorFields, type FileTarget } from './transfer.js';

/** curl codes of a connection that never got to send the request (CURLE_COULDNT_RESOLVE_PROXY/_HOST, _CONNECT). */
const CONNECT_CODES = new Set([5, 6, 7]);

/** One attempt; the caller uses it only once the fetcher `isReady` (libcurl loaded). */
export async function transferNative<T>(fetcher: NativeFetcher, req: AttemptRequest<T>, target: FileTarget<T>): Promise<T> {
  const viaProxy = req.proxy !== DIRECT;
  const headers = Object.entries(cacheHeaders(req)).map(([name, value]) => `${name}: ${value}`);
  const base: DownloadErrorFields = { url: req.url, proxy: req.proxy, failure: viaProxy ? 'proxy' : 'host', transfer: true };
  try {
    const r = await fetcher.fetch({
      url: req.url, proxy: viaProxy ? req.proxy : '', userAgent: req.userAgent, headers, timeoutMs: req.timeoutMs, maxRawBytes: req.maxBytes,
      algorithm: target.id.algorithm, compressed: target.compression === 'zlib', expectedSize: target.expectedSize,
      maxOutBytes: target.maxOutBytes, outPath: target.path(),
    });
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
  // A fetcher asked only once ready ends a transfer this way only when it is closed under it.
  if (r.closed || r.unavailable) {
    const why = r.closed ? 'the client is closing' : `the native fetcher cannot load libcurl (${r.curlMessage})`;
    throw new GridboxError('DOWNLOAD_HOST', `Download of ${q(req.url)} cancelled: ${why}`, { ...base, transfer: false });
  }
  if (r.writeErrno !== 0) {
    const objectId = formatObjectId(target.id);
    // The cache's disk refused the bytes: no other host or proxy can fix that (as the JavaScript path's writer).
    const code = r.writeErrno === osConstants.errno.ENOSPC ? 'CACHE_FULL' : 'CACHE_IO';
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
  const { id, label, expectedSize } = target;
  if (r.hex !== id.hex) throw objectFailure.hashMismatch(id, label, r.hex);
  if (r.overflow) throw objectFailure.sizeExceeded(id, label, expectedSize ?? target.maxOutBytes);
  if (r.inflateError || !r.inflateEnded) throw objectFailure.inflateFailed(id, label, r.inflateError ? r.inflateMessage : 'stream did not end');
  if (expectedSize !== undefined && r.outBytes !== expectedSize) throw objectFailure.sizeMismatch(id, label, expectedSize, r.outBytes);
}
