// The composition of the download layers for one repository: host and proxy chains, the policy
// wrappers, and the verifying body sinks. Returns only verified content, streamed into an output the
// caller gives (a cache temp file) or collected in memory; never caches itself (cache/ does).
// Option names follow client/ClientSettings so a mount can pass its settings straight through.
import { GridboxError } from '../errors.js';
import { formatObjectId, objectPath, type ObjectId, type ObjectSuffix } from '../hash/object-id.js';
import { fileSink, MemoryOutput, objectSink, type Compression, type ObjectOutput } from './body-sinks.js';
import { HostChain, ProxyChain, DIRECT } from './chains.js';
import { newCounters, withBadDataRetry, withHostFailover, withProxyFailover, withRetry, type DownloadCounters, type RequestContext, type Step } from './policies.js';
import { createAgents, discard, httpRequest, type HttpAgents } from './http-request.js';
import { measureHosts, orderByRtt, type HostProbe } from './host-order.js';
import { NativeFetcher } from './native-fetch.js';
import { transfer, type BodySink } from './transfer.js';
import { transferNative } from './transfer-native.js';

export interface DownloaderOptions {
  /** Base URLs, already template-expanded (see parseServerUrls), e.g. "http://127.0.0.1:8000/cvmfs/repo.example.org". */
  serverUrls: string[];
  /** Failover groups of load-balanced proxy URLs or DIRECT (see parseProxyList). Default [[DIRECT]]. */
  proxyGroups?: string[][];
  /** CVMFS_TIMEOUT: connect, headers and between-chunks timeout through a proxy. Default 5 s. */
  timeoutMs?: number;
  /** CVMFS_TIMEOUT_DIRECT. Default 10 s. */
  timeoutDirectMs?: number;
  /** CVMFS_MAX_RETRIES. Default 1. */
  maxRetries?: number;
  backoffInitMs?: number;
  backoffMaxMs?: number;
  proxyResetAfterMs?: number;
  hostResetAfterMs?: number;
  /**
   * 'rtt' (CVMFS_USE_GEOAPI=yes): before the first download, and again after a host failover or once
   * `reprobeAfterMs` passed, time a HEAD of .cvmfspublished on every host (through the current proxy,
   * with no-cache so the host's own round trip counts and a dead host shows) and fail over fastest
   * first. Default 'configured': the CVMFS_SERVER_URL order.
   */
  hostOrder?: 'configured' | 'rtt';
  /** Re-measure the host order this often (ms). Default hostResetAfterMs (30 min). */
  reprobeAfterMs?: number;
  /** CVMFS_PROXY_SHARD: each URL goes to one proxy of the group, chosen by rendezvous hashing. */
  proxyShard?: boolean;
  /**
   * Oldest copy of a non-content-addressed file (.cvmfspublished, .cvmfswhitelist) a proxy may answer
   * with, sent as Cache-Control: max-age. Without it a proxy keeps a manifest as long as the server's
   * max-age (61 s), which delays a new revision beyond a shorter TTL.
   */
  fileMaxAgeS?: number;
  /** Cap for fetchFile (manifest, whitelist). Default MAX_FILE_BYTES. */
  maxFileBytes?: number;
  /** Cap on an object whose size is unknown (catalogs, certificates). Default MAX_OBJECT_BYTES. */
  maxObjectBytes?: number;
  userAgent?: string;
  /**
   * Content objects over plain http go through the native fetcher (native-fetch.ts: libcurl, hash, inflate and
   * the cache file on a C thread) when its addon is built, it has loaded libcurl, and the output is a file
   * (the cache's writer). Its thread starts with the downloader, so that libcurl loads while the manifest and
   * root catalog come through Node's http. Default false: only clients that read many objects (a mount) want
   * the thread; GRIDBOX_NATIVE_FETCH=0 turns it off for them too.
   */
  nativeFetch?: boolean;
  /** Test seams. */
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface FetchObjectOptions {
  /** How the object is stored; meta-objects (C, H, X, M) are always zlib (spec §1.3). Default zlib. */
  compression?: Compression;
  /** Decompressed size that must come out, when the catalog knows it (files, chunks). */
  expectedSize?: number;
}

export interface DownloaderStatus {
  host: string;
  proxy: string;
  counters: DownloadCounters;
  /** The hosts in failover order. */
  hosts: string[];
  /** The last round-trip measurement, fastest first (hostOrder 'rtt' only). */
  probes?: HostProbe[];
  /** Host orderings measured so far. */
  probeRounds: number;
}

export const MAX_FILE_BYTES = 4 * 1024 * 1024;
/** Cap on the decompressed size of an object whose size nobody declared (catalogs, certificates). */
export const MAX_OBJECT_BYTES = 2 * 1024 * 1024 * 1024 - 1;

/** Room zlib may need above the input size for incompressible data (stored blocks), generously rounded. */
function rawCapFor(size: number): number {
  return size + Math.ceil(size / 1000) + 1024;
}

export class Downloader {
  readonly hosts: HostChain;
  readonly proxies: ProxyChain;
  private readonly counters = newCounters();
  private readonly hostErrors = new Map<string, number>();
  private readonly agents: HttpAgents;
  /** The policy stack; one for every result type (the sink decides the type per request). */
  private readonly step: Step<unknown>;
  private probes?: HostProbe[];
  private probeRounds = 0;
  private probing?: Promise<void>;
  private probedAt = 0;
  private failoversAtProbe = 0;
  /** null when off, not built or closed. */
  private native: NativeFetcher | null;

  constructor(private readonly o: DownloaderOptions) {
    this.hosts = new HostChain(o.serverUrls, o.hostResetAfterMs ?? 1_800_000);
    this.proxies = new ProxyChain(o.proxyGroups ?? [[DIRECT]], o.proxyResetAfterMs ?? 300_000, o.random, Date.now, o.proxyShard ?? false);
    const timeoutMs = o.timeoutMs ?? 5000;
    const timeoutDirectMs = o.timeoutDirectMs ?? 10_000;
    this.agents = createAgents();
    // Used once libcurl is loaded (isReady); until then, and for good when it cannot be, the Node path serves.
    this.native = o.nativeFetch === true ? NativeFetcher.create() ?? null : null;
    const userAgent = o.userAgent ?? 'cvmfs gridbox 0.1';
    const attempt: Step<unknown> = async (ctx) => {
      const url = `${ctx.host}/${ctx.path}`;
      this.counters.requests++;
      const sink = ctx.makeSink();
      try {
        const req = {
          url, proxy: ctx.proxy, noCache: ctx.noCache, maxAgeS: ctx.maxAgeS, refuseStale: ctx.refuseStale, userAgent, sink,
          timeoutMs: ctx.proxy === DIRECT ? timeoutDirectMs : timeoutMs,
          maxBytes: ctx.maxBytes,
          onBytes: (n: number) => { this.counters.bytes += n; },
        };
        const native = sink.file !== undefined && this.native?.isReady === true && url.startsWith('http:') ? this.native : undefined;
        if (native !== undefined) this.counters.nativeRequests++;
        const r = native !== undefined ? await transferNative(native, req, sink.file!) : await transfer(this.agents, req);
        ctx.attempts.push({ url, proxy: ctx.proxy, noCache: ctx.noCache, outcome: 'OK' });
        return r;
      } catch (e) {
        ctx.attempts.push({ url, proxy: ctx.proxy, noCache: ctx.noCache, outcome: e instanceof GridboxError ? e.code : 'ERROR', message: (e as Error).message });
        this.hostErrors.set(ctx.host, (this.hostErrors.get(ctx.host) ?? 0) + 1);
        throw e;
      }
    };
    const retry = withRetry(attempt, { maxRetries: o.maxRetries ?? 1, backoffInitMs: o.backoffInitMs ?? 2000, backoffMaxMs: o.backoffMaxMs ?? 10_000,
      counters: this.counters, sleep: o.sleep, random: o.random });
    this.step = withHostFailover(withProxyFailover(withBadDataRetry(retry, this.counters), this.proxies, this.counters), this.hosts, this.counters);
  }

  /**
   * Downloads `data/<id path><suffix>` into memory, hashing the raw body and inflating it as it arrives;
   * returns the decompressed bytes only after the hash (and expectedSize) matched. For small objects:
   * large ones go through fetchObjectTo.
   */
  async fetchObject(id: ObjectId, suffix: ObjectSuffix = '', opts: FetchObjectOptions = {}): Promise<Buffer> {
    return (await this.fetchObjectTo(id, suffix, opts, () => new MemoryOutput())).bytes();
  }

  /**
   * Downloads `data/<id path><suffix>`, streaming the decompressed content into a fresh output from
   * `open()` per attempt, and resolves with the output of the attempt that verified (hash over the raw
   * body, then size); outputs of failed attempts are aborted. Failures are retried and failed over; the
   * caller sees a verified output or DOWNLOAD_ALL_FAILED listing every attempt.
   */
  async fetchObjectTo<O extends ObjectOutput>(id: ObjectId, suffix: ObjectSuffix, opts: FetchObjectOptions, open: () => O): Promise<O> {
    const compression = opts.compression ?? 'zlib';
    const label = formatObjectId(id) + suffix;
    const maxOut = this.o.maxObjectBytes ?? MAX_OBJECT_BYTES;
    const maxRaw = opts.expectedSize !== undefined ? rawCapFor(opts.expectedSize) : maxOut;
    return this.run(`data/${objectPath(id, suffix)}`, maxRaw, () => objectSink(id, label, compression, opts.expectedSize, maxOut, open()));
  }

  /** Downloads a non-content-addressed file (".cvmfspublished", ".cvmfswhitelist"), size-capped, unverified. */
  async fetchFile(relPath: string, opts: { maxBytes?: number } = {}): Promise<Buffer> {
    const max = opts.maxBytes ?? this.o.maxFileBytes ?? MAX_FILE_BYTES;
    return this.run(relPath.replace(/^\/+/, ''), max, fileSink, { maxAgeS: this.o.fileMaxAgeS, refuseStale: true });
  }

  /**
   * Measures every host (see DownloaderOptions.hostOrder) and installs the fastest-first order, whatever
   * hostOrder says (`cvmfs_talk host probe`). Concurrent callers share one measurement.
   */
  probeHosts(): Promise<HostProbe[]> {
    this.probing ??= (async () => {
      const failovers = this.counters.hostFailovers;
      try {
        const probes = await measureHosts(this.hosts.configured, (h) => this.probeOne(h));
        this.hosts.reorder(orderByRtt(probes));
        this.probes = orderByRtt(probes).map((h) => probes.find((p) => p.host === h) as HostProbe);
        this.probeRounds++;
      } finally {
        this.probedAt = Date.now();
        this.failoversAtProbe = failovers;
        this.probing = undefined;
      }
    })();
    return this.probing.then(() => this.probes ?? []);
  }

  /** Failed attempts per host base URL so far (metrics: per-host errors). */
  hostErrorCounts(): Record<string, number> {
    return Object.fromEntries(this.hostErrors);
  }

  status(): DownloaderStatus {
    return { host: this.hosts.current(), proxy: this.proxies.current(), counters: { ...this.counters }, hosts: [...this.hosts.hosts],
      probes: this.probes?.map((p) => ({ ...p })), probeRounds: this.probeRounds };
  }

  async close(): Promise<void> {
    this.agents.close();
    this.native?.close();
    this.native = null;
  }

  /** Resolves once the native fetcher finished loading: true when content objects go through it from now on. */
  async nativeReady(): Promise<boolean> {
    return this.native === null ? false : this.native.ready;
  }

  /** One timed HEAD of the host's manifest through the proxy now in use; rejects unless it answers 2xx. */
  private async probeOne(host: string): Promise<number> {
    const url = new URL(`${host}/.cvmfspublished`);
    if (url.protocol === 'file:') return 0;
    const proxy = this.proxies.current();
    const direct = proxy === DIRECT;
    const started = performance.now();
    const res = await httpRequest(url, {
      method: 'HEAD', agents: this.agents, proxy: direct ? undefined : proxy,
      timeoutMs: direct ? this.o.timeoutDirectMs ?? 10_000 : this.o.timeoutMs ?? 5000,
      headers: { 'user-agent': this.o.userAgent ?? 'cvmfs gridbox 0.1', 'cache-control': 'no-cache', pragma: 'no-cache' },
    });
    const ms = performance.now() - started;
    await discard(res.body);
    if (res.status < 200 || res.status > 299) throw new Error(`HTTP ${res.status}${res.headers['x-squid-error'] ? ` (${String(res.headers['x-squid-error'])})` : ''}`);
    return ms;
  }

  /** hostOrder 'rtt': the first request waits for a measurement; later ones start a new one in the background when due. */
  private async ordered(): Promise<void> {
    if (this.o.hostOrder !== 'rtt') return;
    if (this.probedAt === 0) {
      await this.probeHosts().catch(() => undefined);
      return;
    }
    const due = Date.now() - this.probedAt >= (this.o.reprobeAfterMs ?? this.o.hostResetAfterMs ?? 1_800_000);
    if (this.probing === undefined && (due || this.counters.hostFailovers > this.failoversAtProbe)) void this.probeHosts().catch(() => undefined);
  }

  private async run<T>(path: string, maxBytes: number, makeSink: () => BodySink<T>, file: { maxAgeS?: number; refuseStale?: boolean } = {}): Promise<T> {
    await this.ordered();
    const ctx: RequestContext<T> = { path, maxBytes, ...file, host: '', proxy: DIRECT, noCache: false, retries: 0, attempts: [], makeSink };
    const r = await this.step(ctx as RequestContext<unknown>) as T;
    this.counters.fetched++;
    return r;
  }
}
