// Layer decompression for tar streams: gzip (node:zlib), zstd (fzstd, streaming) or plain, chosen by
// magic bytes rather than by the declared media type (registries and tools mislabel layers).
// Expansion is capped so a decompression bomb fails with TAR_LIMIT; truncation fails with TAR_INVALID.
// Not a tar parser and no hashing: the caller verifies the compressed digest (oci/digest.ts).
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Decompress } from 'fzstd';
import { GridboxError } from '../errors.js';

export type LayerCompression = 'gzip' | 'zstd' | 'none';

export interface DecompressOptions {
  /** Hard cap on decompressed bytes (default 64 GiB). */
  maxBytes?: number;
  /** Cap on decompressed/compressed ratio, checked once output passes `ratioFloorBytes` (default 2000). */
  maxRatio?: number;
  /** Below this many output bytes the ratio is not checked (default 256 MiB), so small sparse files pass. */
  ratioFloorBytes?: number;
  /** Layer name for messages (e.g. the digest). */
  label?: string;
}

export const DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 2 ** 30;
export const DEFAULT_MAX_RATIO = 2000;
export const DEFAULT_RATIO_FLOOR_BYTES = 256 * 2 ** 20;

/** Detects the compression from the first bytes: 1f 8b = gzip, 28 b5 2f fd = zstd, anything else plain. */
export function detectCompression(head: Uint8Array): LayerCompression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

/**
 * Decompresses `source` (gzip, zstd or plain, detected) as a byte stream. The result is a Node
 * Readable; errors (TAR_INVALID for corrupt/truncated input, TAR_LIMIT past a cap) surface on it.
 */
export function decompressLayer(source: AsyncIterable<Uint8Array>, options: DecompressOptions = {}): Readable {
  return Readable.from(decompressChunks(source, options), { objectMode: false });
}

async function* decompressChunks(source: AsyncIterable<Uint8Array>, options: DecompressOptions): AsyncGenerator<Buffer> {
  const label = options.label ?? 'layer';
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_DECOMPRESSED_BYTES;
  const maxRatio = options.maxRatio ?? DEFAULT_MAX_RATIO;
  const ratioFloor = options.ratioFloorBytes ?? DEFAULT_RATIO_FLOOR_BYTES;
  let inBytes = 0;
  let outBytes = 0;
  const it = source[Symbol.asyncIterator]();
  const pending: Buffer[] = [];
  let headLength = 0;
  while (headLength < 4) {
    const r = await it.next();
    if (r.done) break;
    const b = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    pending.push(b);
    headLength += b.length;
  }
  const kind = detectCompression(Buffer.concat(pending));
  const input = (async function* (): AsyncGenerator<Buffer> {
    for (const b of pending) { inBytes += b.length; yield b; }
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      inBytes += r.value.byteLength;
      yield Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    }
  })();
  const check = (n: number): void => {
    outBytes += n;
    if (outBytes > maxBytes) {
      throw new GridboxError('TAR_LIMIT', `Cannot decompress ${label}: output exceeds ${maxBytes} bytes`, { limit: maxBytes });
    }
    if (kind !== 'none' && outBytes > ratioFloor && outBytes > maxRatio * Math.max(inBytes, 1)) {
      throw new GridboxError('TAR_LIMIT', `Cannot decompress ${label}: expansion ratio above ${maxRatio} (${outBytes} bytes from ${inBytes}), a decompression bomb?`, { limit: maxRatio });
    }
  };
  if (kind === 'none') {
    for await (const b of input) { check(b.length); yield b; }
    return;
  }
  if (kind === 'gzip') {
    const gunzip = Readable.from(input).pipe(createGunzip());
    try {
      for await (const b of gunzip as AsyncIterable<Buffer>) { check(b.length); yield b; }
    } catch (e) {
      if (e instanceof GridboxError) throw e;
      throw new GridboxError('TAR_INVALID', `Cannot decompress gzip ${label}: ${(e as Error).message}`, { cause: e });
    } finally {
      gunzip.destroy();
    }
    return;
  }
  // zstd: fzstd decodes synchronously per pushed chunk; collect what each push produced.
  const out: Uint8Array[] = [];
  const z = new Decompress((chunk) => { out.push(chunk); });
  const push = (chunk: Uint8Array, final: boolean): void => {
    try {
      z.push(chunk, final);
    } catch (e) {
      throw new GridboxError('TAR_INVALID', `Cannot decompress zstd ${label}: ${(e as Error).message}`, { cause: e });
    }
  };
  for await (const b of input) {
    push(b, false);
    for (const c of out.splice(0)) { check(c.byteLength); yield Buffer.from(c.buffer, c.byteOffset, c.byteLength); }
  }
  push(new Uint8Array(0), true);
  for (const c of out.splice(0)) { check(c.byteLength); yield Buffer.from(c.buffer, c.byteOffset, c.byteLength); }
}
