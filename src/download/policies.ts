// Retry and failover as small wrappers around one attempt (spec §7.2). Each takes the next step
// and returns a step; downloader.ts stacks them: hosts → proxies → bad-data → retry → transfer.
// A step mutates only its request's context (host, proxy, noCache), never another request's.
import { GridboxError, isGridboxError, q } from '../errors.js';
import { DIRECT, type HostChain, type ProxyChain } from './chains.js';
import type { BodySink, FailureKind } from './transfer.js';

export interface AttemptRecord {
  url: string;
  proxy: string;
  noCache: boolean;
  /** Error code, or "OK". */
  outcome: string;
  message?: string;
}

export interface RequestContext<T> {
  /** Path below the host base URL, e.g. "data/ab/cdef…C" or ".cvmfspublished". */
  readonly path: string;
  /** Cap on raw body bytes of each attempt. */
  readonly maxBytes: number;
  /** Oldest copy a proxy may answer with, in seconds (non-content-addressed files only). */
  readonly maxAgeS?: number;
  /** A mutable file: a proxy's copy it failed to revalidate counts as a host failure (transfer.ts). */
  readonly refuseStale?: boolean;
  host: string;
  proxy: string;
  noCache: boolean;
  retries: number;
  readonly attempts: AttemptRecord[];
  readonly makeSink: () => BodySink<T>;
}

export type Step<T> = (ctx: RequestContext<T>) => Promise<T>;

export interface DownloadCounters {
  /** HTTP attempts made. */
  requests: number;
  /** Of those, attempts made by the native fetcher (libcurl on its own thread). */
  nativeRequests: number;
  /** Raw body bytes received, verified or not. */
  bytes: number;
  /** Requests that ended with verified bytes. */
  fetched: number;
  retries: number;
  noCacheRetries: number;
  hashMismatches: number;
  proxyFailovers: number;
  hostFailovers: number;
}

export function newCounters(): DownloadCounters {
  return { requests: 0, nativeRequests: 0, bytes: 0, fetched: 0, retries: 0, noCacheRetries: 0, hashMismatches: 0, proxyFailovers: 0, hostFailovers: 0 };
}

const BAD_DATA = new Set(['STORE_HASH_MISMATCH', 'STORE_SIZE_MISMATCH', 'COMPRESSION_BAD', 'DOWNLOAD_TOO_LARGE']);

export function isBadData(e: unknown): boolean {
  return e instanceof GridboxError && BAD_DATA.has(e.code);
}

/** Whom a failure blames; undefined for failures no other source can fix. */
export function failureOf(e: unknown, proxy: string): FailureKind | undefined {
  if (!(e instanceof GridboxError)) return undefined;
  if (isBadData(e)) return proxy === DIRECT ? 'host' : 'proxy';
  const f = e.fields.failure;
  return f === 'host' || f === 'proxy' ? f : undefined;
}

/** Same-path retry of transport failures, with CVMFS's backoff: random in [0, init], then doubling, capped. */
export function withRetry<T>(next: Step<T>, o: { maxRetries: number; backoffInitMs: number; backoffMaxMs: number; counters: DownloadCounters;
  sleep?: (ms: number) => Promise<void>; random?: () => number }): Step<T> {
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const random = o.random ?? Math.random;
  return async (ctx) => {
    let delay = 0;
    for (;;) {
      try {
        return await next(ctx);
      } catch (e) {
        const transfer = isGridboxError(e) && e.fields.transfer === true;
        if (!transfer || ctx.noCache || ctx.retries >= o.maxRetries) throw e;
        ctx.retries++;
        o.counters.retries++;
        delay = delay === 0 ? random() * o.backoffInitMs : Math.min(delay * 2, o.backoffMaxMs);
        await sleep(delay);
      }
    }
  };
}

/** Bad data (hash, size, inflate, cap) is retried once with no-cache, so a proxy must refetch from the origin. */
export function withBadDataRetry<T>(next: Step<T>, counters: DownloadCounters): Step<T> {
  return async (ctx) => {
    try {
      return await next(ctx);
    } catch (e) {
      if (isBadData(e) && isGridboxError(e, 'STORE_HASH_MISMATCH')) counters.hashMismatches++;
      if (!isBadData(e) || ctx.noCache) throw e;
      ctx.noCache = true;
      counters.noCacheRetries++;
      try {
        return await next(ctx);
      } catch (e2) {
        if (isGridboxError(e2, 'STORE_HASH_MISMATCH')) counters.hashMismatches++;
        throw e2;
      }
    }
  };
}

/** Proxy failures burn the proxy and move on; once every proxy was used, the failure becomes a host failure. */
export function withProxyFailover<T>(next: Step<T>, proxies: ProxyChain, counters: DownloadCounters): Step<T> {
  return async (ctx) => {
    let used = 0;
    for (;;) {
      ctx.proxy = proxies.current(ctx.path);
      try {
        return await next(ctx);
      } catch (e) {
        if (failureOf(e, ctx.proxy) !== 'proxy') throw e;
        used++;
        if (proxies.fail(ctx.proxy)) counters.proxyFailovers++;
        if (used >= proxies.size) {
          // spec §7.2 kFailHostAfterProxy: every proxy failed for this request, so blame the host.
          proxies.reset();
          throw new GridboxError('DOWNLOAD_HOST', `Cannot download ${q(ctx.path)} from ${q(ctx.host)} through any of ${proxies.size} proxies`,
            { cause: e, url: ctx.host, failure: 'host', transfer: false });
        }
      }
    }
  };
}

/** Host failures move to the next host, round-robin, at most once per host; then DOWNLOAD_ALL_FAILED. */
export function withHostFailover<T>(next: Step<T>, hosts: HostChain, counters: DownloadCounters): Step<T> {
  return async (ctx) => {
    let last: unknown;
    for (let i = 0; i < hosts.hosts.length; i++) {
      ctx.host = hosts.current();
      try {
        return await next(ctx);
      } catch (e) {
        if (failureOf(e, ctx.proxy) !== 'host') throw e;
        last = e;
        if (hosts.fail(ctx.host)) counters.hostFailovers++;
      }
    }
    const list = ctx.attempts.map((a) => `${a.url}${a.proxy === DIRECT ? '' : ` via ${a.proxy}`}${a.noCache ? ' (no-cache)' : ''}: ${a.outcome}`).join('; ');
    throw new GridboxError('DOWNLOAD_ALL_FAILED', `Cannot download ${q(ctx.path)}: every host and proxy failed after ${ctx.attempts.length} attempts [${list}]`,
      { cause: last, attempts: ctx.attempts.slice() });
  };
}
