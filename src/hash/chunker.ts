// The xor32 content-defined chunker of CernVM-FS (cvmfs-format.md §5), streaming: feed buffers of any
// size, get absolute cut offsets back; nothing is buffered. Deciding whether a file is chunked at all
// (size > min, sole piece → plain file) is the publisher's job.
import { GridboxError } from '../errors.js';

export interface ChunkSizes {
  minBytes: number;
  avgBytes: number;
  maxBytes: number;
}

export const DEFAULT_CHUNK_SIZES: Readonly<ChunkSizes> = { minBytes: 4 << 20, avgBytes: 8 << 20, maxBytes: 16 << 20 };

/** The rolling window: after 32 updates every older byte has shifted out of the 32-bit value. */
const WINDOW_BYTES = 32;
/**
 * Largest accepted maximum chunk size: a chunk is the unit a publisher holds in memory (several in
 * flight) and a client fetches whole, so this bounds both (stock CVMFS defaults to 16 MiB).
 */
export const MAX_CHUNK_MAX_BYTES = 64 << 20;
const MID = 0x7fffffff;

export function validateChunkSizes(s: ChunkSizes): void {
  const ints = [s.minBytes, s.avgBytes, s.maxBytes].every((v) => Number.isSafeInteger(v));
  if (!ints || s.minBytes < WINDOW_BYTES || !(s.minBytes < s.avgBytes && s.avgBytes < s.maxBytes)) {
    throw new GridboxError('USAGE', `Invalid chunk sizes min=${s.minBytes} avg=${s.avgBytes} max=${s.maxBytes}: need integers with 32 <= min < avg < max`);
  }
  if (s.maxBytes > MAX_CHUNK_MAX_BYTES) {
    throw new GridboxError('USAGE', `Invalid chunk sizes min=${s.minBytes} avg=${s.avgBytes} max=${s.maxBytes}: max may be at most ${MAX_CHUNK_MAX_BYTES} bytes (64 MiB)`);
  }
}

/**
 * One file's chunker. `push` returns the offsets (from the start of the file) where a new chunk begins;
 * the byte at a cut offset belongs to the next chunk. Chunks are [0, c1), [c1, c2), …, [cn, fileSize).
 */
export class Xor32Chunker {
  readonly sizes: Readonly<ChunkSizes>;
  /** Rolling checksum as int32 (its bits are the uint32 value). */
  private x = 0;
  /** Bytes fed so far. */
  private pos = 0;
  /** Offset where the current chunk starts. */
  private start = 0;
  /** A candidate is x with (x - lo) mod 2^32 < width, i.e. |x - 0x7FFFFFFF| < threshold. */
  private readonly lo: number;
  private readonly width: number;

  constructor(sizes: ChunkSizes = DEFAULT_CHUNK_SIZES) {
    validateChunkSizes(sizes);
    this.sizes = { ...sizes };
    // Integer division as upstream does it: floor(0xFFFFFFFF / avg); avg 8 MiB gives 511.
    const threshold = Math.floor(0xffffffff / sizes.avgBytes);
    this.lo = MID - threshold + 1;
    this.width = 2 * threshold - 1;
  }

  /** Bytes fed so far (the file size once all data is pushed). */
  get offset(): number {
    return this.pos;
  }

  /** Feeds the next bytes of the file; returns the cut offsets found, ascending. */
  push(buf: Uint8Array): number[] {
    const cuts: number[] = [];
    const len = buf.length;
    const { minBytes, maxBytes } = this.sizes;
    const lo = this.lo;
    const width = this.width;
    const pos = this.pos;
    let x = this.x;
    let start = this.start;
    let i = 0;
    while (i < len) {
      // Bytes more than a window before start+min can never influence a candidate: skip them.
      const primeAt = start + minBytes - WINDOW_BYTES - pos;
      if (i < primeAt) {
        x = 0;
        if (primeAt >= len) { i = len; break; }
        i = primeAt;
      }
      const checkAt = start + minBytes - pos;
      const primeEnd = checkAt < len ? checkAt : len;
      while (i < primeEnd) { x = (x << 1) ^ buf[i]; i++; }
      if (i >= len) break;
      // Candidates are positions start+min … start+max-1; the first one ends the chunk before it.
      const hardAt = start + maxBytes - pos;
      const end = hardAt < len ? hardAt : len;
      let found = false;
      while (i < end) {
        x = (x << 1) ^ buf[i];
        if (((x - lo) >>> 0) < width) { found = true; break; }
        i++;
      }
      if (!found) {
        if (i >= len) break;
        // A byte exists at start+max: no candidate in range, cut hard here.
        x = (x << 1) ^ buf[i];
      }
      start = pos + i;
      cuts.push(start);
      i++;
    }
    this.x = x;
    this.start = start;
    this.pos = pos + len;
    return cuts;
  }

  /**
   * Same cuts as `push` of `n` zero bytes, without touching them: once 32 zeros have shifted in, the
   * checksum is 0, which is never a candidate (it is 2^31 away from the target), so the only cuts left
   * are the hard ones every `max` bytes. Lets sparse files' holes pass at memory speed.
   */
  pushZeros(n: number): number[] {
    const head = Math.min(n, WINDOW_BYTES);
    const cuts = this.push(ZEROS.subarray(0, head));
    if (head === n) return cuts;
    // Here x is 0: 32 zeros shifted in (or it was reset while skipping), and stays 0 over more zeros.
    const end = this.pos + (n - head);
    let start = this.start;
    // A hard cut happens at start+max once that byte exists (an index below `end`).
    while (start + this.sizes.maxBytes < end) {
      start += this.sizes.maxBytes;
      cuts.push(start);
    }
    this.x = 0;
    this.start = start;
    this.pos = end;
    return cuts;
  }
}

const ZEROS = new Uint8Array(WINDOW_BYTES);
/** True when every byte of `buf` is 0 (memcmp-speed, for hole detection). */
export function isAllZero(buf: Uint8Array): boolean {
  const BLOCK = ZERO_BLOCK.length;
  let i = 0;
  for (; i + BLOCK <= buf.length; i += BLOCK) if (Buffer.compare(buf.subarray(i, i + BLOCK), ZERO_BLOCK) !== 0) return false;
  return Buffer.compare(buf.subarray(i), ZERO_BLOCK.subarray(0, buf.length - i)) === 0;
}
const ZERO_BLOCK = new Uint8Array(64 << 10);

/** Cut offsets of a whole in-memory buffer (tests, small files). */
export function chunkOffsets(data: Uint8Array, sizes: ChunkSizes = DEFAULT_CHUNK_SIZES): number[] {
  return new Xor32Chunker(sizes).push(data);
}

/** The rolling checksum after each byte, as uint32 — for conformance checks of the update rule. */
export function xor32RunningValues(data: Iterable<number>): number[] {
  let x = 0;
  const out: number[] = [];
  for (const b of data) {
    x = (x << 1) ^ b;
    out.push(x >>> 0);
  }
  return out;
}
