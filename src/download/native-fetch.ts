// The gridbox-object-fetch addon (native/object-fetch): one C thread that downloads content objects over
// plain HTTP with libcurl, hashing, inflating and writing each into a temp file as it arrives. This module
// only loads it and turns its callback into promises; transfer-native.ts classifies the results the way
// transfer.ts classifies Node's. Optional: without the addon (not built) or with GRIDBOX_NATIVE_FETCH=0,
// every object goes through the JavaScript path.
import { createRequire } from 'node:module';
import type { HashAlgorithm } from '../hash/object-id.js';

/** What the addon reports for one transfer (numbers for flags: N-API objects stay flat). */
export interface NativeFetchResult {
  /** curl's CURLcode: 0 when the transfer itself completed. */
  curlCode: number;
  curlMessage: string;
  /** The HTTP status, 0 when no response arrived. */
  status: number;
  wireBytes: number;
  outBytes: number;
  /** The digest of the raw body received. */
  hex: string;
  timedOut: number;
  tooLarge: number;
  overflow: number;
  inflateError: number;
  inflateMessage: string;
  inflateEnded: number;
  /** errno of a failed open/write/close of the output file, 0 when none. */
  writeErrno: number;
  /** The fetcher was closed before the transfer ended. */
  closed: number;
  /** libcurl could not be loaded (curlMessage says why): nothing was sent. */
  unavailable: number;
  squidError: string;
  proxyStatus: string;
}

export interface NativeFetchJob {
  url: string;
  /** A proxy URL, or '' for a direct connection. */
  proxy: string;
  userAgent: string;
  /** Extra request headers, "Name: value". */
  headers: string[];
  timeoutMs: number;
  maxRawBytes: number;
  algorithm: HashAlgorithm;
  compressed: boolean;
  /** Decompressed size that must come out; undefined when unknown. */
  expectedSize: number | undefined;
  maxOutBytes: number;
  /** Created (truncated) and written by the addon; the caller renames or removes it. */
  outPath: string;
}

interface Addon {
  /** onDone(0, null) once libcurl is loaded (or failed to), onDone(id, result) for each transfer. */
  createFetcher(onDone: (id: number, r: NativeFetchResult | null) => void): object;
  /** 1 ready, 0 loading libcurl, -1 unavailable or closed. */
  state(h: object): number;
  fetch(h: object, id: number, url: string, proxy: string, userAgent: string, headers: string[], timeoutMs: number, maxRaw: number,
    algorithm: string, compressed: boolean, expectedSize: number, maxOut: number, outPath: string): void;
  ref(h: object, on: boolean): void;
  close(h: object): void;
}

let addon: Addon | null | undefined;

function loadAddon(): Addon | undefined {
  if (addon === undefined) {
    try {
      addon = process.env.GRIDBOX_NATIVE_FETCH === '0' ? null : createRequire(import.meta.url)('gridbox-object-fetch') as Addon;
    } catch {
      addon = null;
    }
  }
  return addon ?? undefined;
}

/**
 * One worker thread and its connections; results come back on Node's thread. The thread first loads libcurl
 * (15-30 ms and ~30 libraries, off Node's thread); `ready` tells when, and callers use the JavaScript path
 * until then rather than wait.
 */
export class NativeFetcher {
  private readonly pending = new Map<number, (r: NativeFetchResult) => void>();
  private nextId = 1;
  private closed = false;
  private readonly handle: object;
  /** True once transfers start at once (libcurl loaded). */
  isReady = false;
  private loaded = false;
  /** Someone awaits `ready`: the thread keeps the process alive until loading ended. */
  private heldForReady = false;
  private refed = false;
  private readonly whenLoaded: Promise<boolean>;

  private constructor(private readonly a: Addon) {
    let loaded!: (ok: boolean) => void;
    this.whenLoaded = new Promise((resolve) => { loaded = resolve; });
    this.handle = a.createFetcher((id, r) => {
      if (r === null) {
        this.loaded = true;
        this.isReady = !this.closed && this.a.state(this.handle) === 1;
        this.updateRef();
        loaded(this.isReady);
        return;
      }
      const done = this.pending.get(id);
      this.pending.delete(id);
      this.updateRef();
      done?.(r);
    });
  }

  /**
   * Resolves when loading libcurl ended: true when the fetcher can be used. Meanwhile the thread keeps the process
   * alive (it does not otherwise while idle), so that an await here cannot outlive the event loop.
   */
  get ready(): Promise<boolean> {
    this.heldForReady = true;
    this.updateRef();
    return this.whenLoaded;
  }

  /** A fetcher, or undefined when the addon is not built or is turned off. */
  static create(): NativeFetcher | undefined {
    const a = loadAddon();
    return a === undefined ? undefined : new NativeFetcher(a);
  }

  fetch(j: NativeFetchJob): Promise<NativeFetchResult> {
    if (this.closed) return Promise.reject(new Error('the native fetcher is closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, resolve);
      this.updateRef();
      try {
        this.a.fetch(this.handle, id, j.url, j.proxy, j.userAgent, j.headers, j.timeoutMs, j.maxRawBytes, j.algorithm, j.compressed,
          j.expectedSize ?? -1, j.maxOutBytes, j.outPath);
      } catch (e) {
        this.pending.delete(id);
        this.updateRef();
        reject(e);
      }
    });
  }

  /**
   * Idle, the thread must not keep the process alive: it does while transfers are in flight, and while someone
   * awaits `ready` before libcurl finished loading.
   */
  private updateRef(): void {
    if (this.closed) return;
    const want = this.pending.size > 0 || (this.heldForReady && !this.loaded);
    if (want !== this.refed) { this.refed = want; this.a.ref(this.handle, want); }
  }

  /** Stops the thread; transfers in flight end with `closed` set. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.isReady = false;
    this.a.close(this.handle);
  }
}
