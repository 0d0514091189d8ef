// Where every file's bytes become objects, for every front end (directory, tar, changesets): small
// contents go to the worker pool in batches (many files per message, by a hash of their size so that
// duplicates meet in one worker); large ones are read here as a stream, cut by the xor32 chunker as the
// bytes pass, and only their pieces (≤ the max chunk size) go to the workers. Memory is bounded by
// constants, never by a file's size: MAX_PIECES_IN_FLIGHT pieces, MAX_STREAMS open streams, and
// `maxHeldBytes` of in-memory contents handed over. Not the transaction (transaction.ts) and no I/O
// of objects here (the workers write through the store).
import { open, type FileHandle } from 'node:fs/promises';
import { GridboxError, q } from '../errors.js';
import { isAllZero, Xor32Chunker } from '../hash/chunker.js';
import type { RepoSettings } from './repo-layout.js';
import type { ContentSource, FileContent } from './tree.js';
import { type BatchOutcome, type IngestResult, type IngestTask, type WorkerPool } from './worker-pool.js';

/** A worker message carries up to this many files or bytes (a larger file goes alone). */
export const BATCH_FILES = 64;
export const BATCH_BYTES = 4 << 20;
/** Contents from this size up (or larger than a chunk) are streamed and cut here, not read whole by a worker. */
export const STREAM_MIN_BYTES = 4 << 20;
/** Pieces of streamed files read and not yet stored, over all streams (each ≤ the max chunk size). */
export const MAX_PIECES_IN_FLIGHT = 4;
/** Streamed files read at once (each holds one read buffer of max chunk + READ_BYTES). */
export const MAX_STREAMS = 2;
/** Bytes asked of the file system per read while streaming. */
const READ_BYTES = 1 << 20;

/** What a content became: its objects, and the bytes actually read (a walked file may have changed since). */
export interface StoredContent {
  content: FileContent;
  size: number;
}

export interface IngestStats {
  objectsWritten: number;
  bytesWritten: number;
  /** Most pieces of streamed files that were in flight at once (≤ MAX_PIECES_IN_FLIGHT). */
  peakPiecesInFlight: number;
  /** Files streamed in pieces. */
  streamedFiles: number;
}

interface Waiting {
  task: IngestTask;
  resolve(c: StoredContent): void;
  reject(e: unknown): void;
}

/** Spreads sizes evenly over workers (an integer hash finalizer). */
export function mixSize(size: number): number {
  let x = size | 0;
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  return (x ^ (x >>> 16)) >>> 0;
}

export function contentOf(r: IngestResult, settings: RepoSettings): FileContent {
  return {
    compression: settings.compression,
    ...(r.hex !== undefined ? { id: { algorithm: settings.hashAlgorithm, hex: r.hex } } : {}),
    ...(r.chunks !== undefined ? { chunks: r.chunks.map((c) => ({ offset: c.offset, size: c.size, id: { algorithm: settings.hashAlgorithm, hex: c.hex } })) } : {}),
  };
}

/** Counting semaphore whose waiters are served in order. */
class Slots {
  private used = 0;
  peak = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}
  async take(): Promise<void> {
    if (this.used >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    else this.used++;
    this.peak = Math.max(this.peak, this.used);
  }
  give(): void {
    const next = this.waiting.shift();
    if (next !== undefined) next(); // the slot passes on
    else this.used--;
  }
}

/** Reads into `buf` at `off` up to `len` bytes; 0 = end of the content. */
type Fill = (buf: Buffer, off: number, len: number) => Promise<number>;

export class ContentIngest {
  readonly stats: IngestStats = { objectsWritten: 0, bytesWritten: 0, peakPiecesInFlight: 0, streamedFiles: 0 };
  private held = 0;
  private wake: (() => void)[] = [];
  private open: { files: Waiting[]; bytes: number; held: number }[] | undefined;
  private readonly chunk: { min: number; avg: number; max: number };
  private readonly pieces = new Slots(MAX_PIECES_IN_FLIGHT);
  private readonly streams = new Slots(MAX_STREAMS);
  /** Piece buffers (max chunk size each) back from the workers, for the next pieces: at most MAX_PIECES_IN_FLIGHT exist. */
  private readonly freeBuffers: ArrayBuffer[] = [];
  private readonly freeReadBuffers: Buffer[] = [];
  /** Pieces that are all zero (holes), by suffix and length: stored once, named many times. */
  private readonly zeroPieces = new Map<string, Promise<IngestResult>>();

  /** `pool` is created on first use; `maxHeldBytes` bounds in-memory contents handed over and not yet stored (one always fits). */
  constructor(private readonly pool: () => WorkerPool, private readonly settings: RepoSettings, private readonly maxHeldBytes = 64 << 20) {
    this.chunk = { min: settings.chunkMin, avg: settings.chunkAvg, max: settings.chunkMax };
  }

  /**
   * Hands over one content of `size` bytes (a walked file's size may be stale; a range or stream must
   * give exactly `size`). Resolves when the caller may go on — at once for files, once a stream has been
   * read, when there is room for in-memory bytes — with the promise of what it became.
   */
  async put(source: ContentSource, size: number): Promise<{ stored: Promise<StoredContent> }> {
    const streamed = size >= STREAM_MIN_BYTES || size > this.chunk.max;
    if (source.kind === 'bytes') return this.putBytes(source.bytes);
    if (source.kind === 'stream') {
      if (!streamed) {
        // Small: gather it (≤ STREAM_MIN_BYTES) and batch it like any other small content.
        const parts: Uint8Array[] = [];
        let got = 0;
        for await (const c of source.stream) { parts.push(c); got += c.length; }
        if (got !== size) throw new GridboxError('PUBLISH_SOURCE', `Cannot ingest ${q(source.label)}: expected ${size} bytes, the stream gave ${got}`, { path: source.label });
        return this.putBytes(parts.length === 1 ? parts[0] : Buffer.concat(parts, got));
      }
      // A stream must be read before its source can go on (the next tar entry): wait for that.
      await this.streams.take();
      let stored!: Promise<StoredContent>;
      await new Promise<void>((consumed) => {
        stored = this.streamContent(streamFill(source.stream), source.label, size, true, consumed).finally(() => this.streams.give());
      });
      stored.catch(() => undefined); // the caller awaits it
      return { stored };
    }
    return { stored: this.putFile(source, size) };
  }

  /**
   * `put` for a file (whole, or a range): what it becomes, without waiting for anything first (the
   * streaming publisher hands over a million files, one promise each and no other hop).
   */
  putFile(source: { path: string; offset?: number }, size: number): Promise<StoredContent> {
    const streamed = size >= STREAM_MIN_BYTES || size > this.chunk.max;
    const ranged = source.offset !== undefined;
    if (!streamed) {
      const task: IngestTask = { sourcePath: source.path, ...(ranged ? { offset: source.offset, length: size } : {}), ...this.taskSettings() };
      return this.enqueue(task, size);
    }
    // Opened and read one at a time per stream slot; the caller goes on at once (no bytes are held yet).
    const stored = (async (): Promise<StoredContent> => {
      await this.streams.take();
      let fh: FileHandle | undefined;
      try {
        fh = await open(source.path, 'r').catch((e: unknown) => { throw sourceError(source.path, e); });
        const h = fh;
        let pos = source.offset ?? 0;
        const end = ranged ? pos + size : Infinity;
        const fill: Fill = async (buf, off, len) => {
          const want = Math.min(len, end - pos);
          if (want <= 0) return 0;
          const { bytesRead } = await h.read(buf, off, want, pos).catch((e: unknown) => { throw sourceError(source.path, e); });
          if (bytesRead === 0 && ranged) throw new GridboxError('PUBLISH_SOURCE', `Cannot ingest ${q(source.path)}: it ends ${end - pos} bytes before the ${size} bytes expected at offset ${source.offset}`, { path: source.path });
          pos += bytesRead;
          return bytesRead;
        };
        return await this.streamContent(fill, source.path, size, ranged, () => undefined);
      } finally {
        await fh?.close().catch(() => undefined);
        this.streams.give();
      }
    })();
    stored.catch(() => undefined);
    return stored;
  }

  /** In-memory bytes (of their exact length): `put` for callers that hold small contents. */
  async storeBytes(bytes: Uint8Array): Promise<{ stored: Promise<FileContent> }> {
    const { stored } = await this.putBytes(bytes);
    const content = stored.then((r) => r.content);
    content.catch(() => undefined);
    return { stored: content };
  }

  /** Sends the partly filled batches. */
  flush(): void {
    this.open?.forEach((_, shard) => this.flushShard(shard));
  }

  private taskSettings(): Pick<IngestTask, 'algorithm' | 'compression' | 'chunk'> {
    return { algorithm: this.settings.hashAlgorithm, compression: this.settings.compression, chunk: this.chunk };
  }

  private async putBytes(bytes: Uint8Array): Promise<{ stored: Promise<StoredContent> }> {
    while (this.held > 0 && this.held + bytes.length > this.maxHeldBytes) {
      this.flush();
      await new Promise<void>((r) => this.wake.push(r));
    }
    this.held += bytes.length;
    const stored = this.enqueue({ bytes, ...this.taskSettings() }, bytes.length, true);
    return { stored };
  }

  private enqueue(task: IngestTask, size: number, held = false): Promise<StoredContent> {
    const p = new Promise<StoredContent>((resolve, reject) => {
      const w: Waiting = { task, resolve, reject };
      if (size >= BATCH_BYTES) { this.send([w], size, held ? size : 0); return; }
      const pool = this.pool();
      this.open ??= Array.from({ length: pool.size }, () => ({ files: [], bytes: 0, held: 0 }));
      // A hash of the size, not the size: binaries' sizes are mostly even, and size % 2 put 312 MB on
      // one worker and 191 MB on the other in the bench tree (hashed: 249 / 255 MB).
      const shard = mixSize(size) % this.open.length;
      const b = this.open[shard];
      if (b.files.length >= BATCH_FILES || b.bytes + size > BATCH_BYTES) this.flushShard(shard);
      b.files.push(w);
      b.bytes += size;
      if (held) b.held += size;
    });
    p.catch(() => undefined); // the caller awaits it
    return p;
  }

  private flushShard(shard: number): void {
    const b = this.open![shard];
    if (b.files.length === 0) return;
    this.send(b.files, b.bytes, b.held, shard);
    b.files = [];
    b.bytes = 0;
    b.held = 0;
  }

  private send(files: Waiting[], bytes: number, held: number, shard?: number): void {
    const settle = (): void => {
      if (held === 0) return;
      this.held -= held;
      for (const w of this.wake.splice(0)) w();
    };
    this.pool().runBatch(files.map((f) => f.task), bytes, shard).then((outcomes: BatchOutcome[]) => {
      settle();
      files.forEach((f, i) => {
        const r = outcomes[i];
        if (r instanceof Error) { f.reject(r); return; }
        this.count(r);
        f.resolve({ content: contentOf(r, this.settings), size: r.size });
      });
    }, (e: unknown) => {
      settle();
      for (const f of files) f.reject(e);
    });
  }

  private count(r: IngestResult): void {
    this.stats.objectsWritten += r.objectsWritten;
    this.stats.bytesWritten += r.bytesWritten;
  }

  /**
   * Reads a content through `fill`, cuts it as it passes and sends each piece to a worker once its end
   * is known; `consumed` is called when the last byte was read. One read buffer (max chunk + one read)
   * per stream; a piece is copied out of it only when it goes to a worker, and a hole-only piece seen
   * before is not sent at all.
   */
  private async streamContent(fill: Fill, label: string, size: number, exact: boolean, consumed: () => void): Promise<StoredContent> {
    this.stats.streamedFiles++;
    const chunker = new Xor32Chunker({ minBytes: this.chunk.min, avgBytes: this.chunk.avg, maxBytes: this.chunk.max });
    // One read buffer per stream slot, reused: at most MAX_STREAMS exist.
    const buf = this.freeReadBuffers.pop() ?? Buffer.allocUnsafeSlow(this.chunk.max + READ_BYTES);
    const sent: { offset: number; size: number; result: Promise<IngestResult> }[] = [];
    let failed: unknown;
    let have = 0;
    let pieceStart = 0;
    let pieceZero = true;
    let total = 0;
    const emit = async (len: number, zero: boolean, suffix: '' | 'P'): Promise<void> => {
      const zeroKey = `${suffix}:${len}`;
      const known = zero ? this.zeroPieces.get(zeroKey) : undefined;
      if (known !== undefined) {
        // Objects written are counted once, by the piece that stored them.
        sent.push({ offset: pieceStart, size: len, result: known.then((r) => ({ ...r, objectsWritten: 0, bytesWritten: 0 })) });
        return;
      }
      await this.pieces.take();
      this.stats.peakPiecesInFlight = Math.max(this.stats.peakPiecesInFlight, this.pieces.peak);
      const bytes = Buffer.from(this.freeBuffers.pop() ?? new ArrayBuffer(this.chunk.max), 0, len);
      buf.copy(bytes, 0, 0, len);
      // Equal pieces (a file twice, a repeated block) go to one worker, whose memory of contents stores them once.
      const result = this.pool().runBatch([{ bytes, piece: suffix, transfer: true, ...this.taskSettings() }], len, pieceShard(bytes)).then(([r]) => {
        if (r instanceof Error) throw r;
        if (r.returned !== undefined && r.returned.byteLength === this.chunk.max) this.freeBuffers.push(r.returned);
        delete r.returned;
        this.count(r);
        return r;
      }).finally(() => this.pieces.give());
      result.catch((e: unknown) => { failed ??= e; });
      if (zero) this.zeroPieces.set(zeroKey, result);
      sent.push({ offset: pieceStart, size: len, result });
    };
    try {
      for (;;) {
        if (failed !== undefined) throw failed;
        const n = await fill(buf, have, Math.min(READ_BYTES, buf.length - have));
        if (n === 0) break;
        const block = buf.subarray(have, have + n);
        const zero = isAllZero(block);
        const cuts = zero ? chunker.pushZeros(n) : chunker.push(block);
        have += n;
        total += n;
        for (const cut of cuts) {
          const len = cut - pieceStart;
          await emit(len, pieceZero && zero, 'P');
          buf.copyWithin(0, len, have);
          have -= len;
          pieceStart = cut;
          // What is left of the buffer came from this block.
          pieceZero = zero;
        }
        if (cuts.length === 0) pieceZero &&= zero;
      }
      consumed();
      if (exact && total !== size) throw new GridboxError('PUBLISH_SOURCE', `Cannot ingest ${q(label)}: expected ${size} bytes, the source gave ${total}`, { path: label });
      // The tail: a sole piece is a plain file object (spec §5.3), else the last chunk.
      const sole = sent.length === 0;
      if (have > 0 || sole) await emit(have, pieceZero, sole ? '' : 'P');
      const results = await Promise.all(sent.map((s) => s.result));
      const r: IngestResult = sole
        ? { size: total, hex: results[0].hex, objectsWritten: 0, bytesWritten: 0 }
        : { size: total, chunks: sent.map((s, i) => ({ offset: s.offset, size: s.size, hex: results[i].hex! })), objectsWritten: 0, bytesWritten: 0 };
      return { content: contentOf(r, this.settings), size: total };
    } catch (e) {
      consumed();
      await Promise.allSettled(sent.map((s) => s.result));
      throw e;
    } finally {
      this.freeReadBuffers.push(buf);
    }
  }
}

/** A cheap function of a piece's length and 64 sampled bytes: equal pieces get equal shards. */
export function pieceShard(bytes: Uint8Array): number {
  let h = mixSize(bytes.length);
  const last = bytes.length - 1;
  for (let k = 0; k < 64 && last >= 0; k++) h = Math.imul(h ^ bytes[Math.floor((k * last) / 63)], 0x9e3779b1) >>> 0;
  return mixSize(h);
}

function sourceError(path: string, e: unknown): GridboxError {
  return e instanceof GridboxError ? e : new GridboxError('PUBLISH_SOURCE', `Cannot read ${q(path)} from the publish source: ${(e as Error)?.message ?? e}`, { path, cause: e });
}

/** A Fill over an async iterable of byte blocks (a tar entry's content): copies into the read buffer. */
function streamFill(stream: AsyncIterable<Uint8Array>): Fill {
  const it = stream[Symbol.asyncIterator]();
  let left: Uint8Array | undefined;
  let done = false;
  return async (buf, off, len) => {
    let n = 0;
    while (n < len) {
      if (left === undefined || left.length === 0) {
        // Return what we have rather than wait: the chunker wants blocks, not exact sizes.
        if (done || n > 0) break;
        const r = await it.next();
        if (r.done) { done = true; break; }
        left = r.value;
        continue;
      }
      const take = Math.min(left.length, len - n);
      buf.set(left.subarray(0, take), off + n);
      left = left.subarray(take);
      n += take;
    }
    return n;
  };
}
