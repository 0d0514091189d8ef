// zlib (RFC 1950, deflate level 6 as stock CVMFS writes it) for repository objects: one-shot compress,
// capped one-shot inflate, and a capped streaming inflate. Spec: cvmfs-format.md §1.3.
// Not for gzip or raw deflate, and no hashing here (store/object-io.ts hashes the stored bytes).
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { constants, createInflate, deflate, deflateSync, inflateSync } from 'node:zlib';
import { GridboxError, q } from '../errors.js';

export type CompressionAlgorithm = 'zlib' | 'none';

/** Integer values CVMFS stores in catalog flags (zlib::Algorithms). */
export const COMPRESSION_CODE: Record<CompressionAlgorithm, number> = { zlib: 0, none: 1 };

/** Default inflate cap when the caller knows no size: larger than any object CVMFS writes (chunks ≤ 16 MiB, catalogs rarely > 1 GiB). */
export const DEFAULT_MAX_INFLATED_BYTES = 2 ** 31 - 1;

const ZLIB_LEVEL = 6;
const deflateAsync = promisify(deflate);

export function parseCompressionAlgorithm(name: string): CompressionAlgorithm {
  if (name === 'zlib' || name === 'default') return 'zlib';
  if (name === 'none') return 'none';
  throw new GridboxError('USAGE', `Unknown compression algorithm ${q(name)}: expected zlib or none`);
}

/** zlib-compress one object synchronously (header 78 9c). */
export function compressZlib(data: Uint8Array): Buffer {
  return deflateSync(data, { level: ZLIB_LEVEL });
}

/** zlib-compress on the libuv thread pool, so several objects compress on several cores. */
export async function compressZlibAsync(data: Uint8Array): Promise<Buffer> {
  return deflateAsync(data, { level: ZLIB_LEVEL });
}

export interface InflateOptions {
  /** Refuse output larger than this (bomb protection). */
  maxBytes?: number;
  /** Object key or name used in error messages. */
  label?: string;
}

/** Translate a zlib failure into our codes: a stream that simply ends early is STORE_TRUNCATED. */
function inflateError(e: unknown, label: string, maxBytes: number): GridboxError {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
    return new GridboxError('COMPRESSION_BAD', `Cannot inflate ${q(label)}: output exceeds the limit of ${maxBytes} bytes`, { cause: e, objectId: label });
  }
  if (err?.code === 'Z_BUF_ERROR' || /unexpected end of file/i.test(String(err?.message))) {
    return new GridboxError('STORE_TRUNCATED', `Cannot inflate ${q(label)}: the zlib stream ends early (truncated object)`, { cause: e, objectId: label });
  }
  return new GridboxError('COMPRESSION_BAD', `Cannot inflate ${q(label)}: not a valid zlib stream (${err?.message ?? String(e)})`, { cause: e, objectId: label });
}

/** Inflate a whole zlib object, refusing more than `maxBytes` of output. */
export function inflateZlib(data: Uint8Array, opts: InflateOptions = {}): Buffer {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_INFLATED_BYTES;
  const label = opts.label ?? 'object';
  try {
    // finishFlush=Z_SYNC_FLUSH would accept truncated input silently; the default Z_FINISH reports it.
    return inflateSync(data, { maxOutputLength: Math.max(1, maxBytes) });
  } catch (e) {
    throw inflateError(e, label, maxBytes);
  }
}

/**
 * Inflate a stream of compressed chunks as they arrive, yielding output chunks; stops with
 * COMPRESSION_BAD as soon as output passes `maxBytes`, before the rest is inflated.
 */
export async function* inflateZlibStream(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: InflateOptions = {}): AsyncGenerator<Buffer> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_INFLATED_BYTES;
  const label = opts.label ?? 'object';
  const input = Readable.from(source, { objectMode: false });
  const inflater = createInflate({ finishFlush: constants.Z_FINISH });
  input.on('error', (e) => inflater.destroy(e));
  input.pipe(inflater);
  let total = 0;
  try {
    for await (const chunk of inflater as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) throw new GridboxError('COMPRESSION_BAD', `Cannot inflate ${q(label)}: output exceeds the limit of ${maxBytes} bytes`, { objectId: label });
      yield chunk;
    }
  } catch (e) {
    if (e instanceof GridboxError) throw e;
    if ((e as NodeJS.ErrnoException)?.code?.startsWith?.('Z_') || /zlib|unexpected end|incorrect header|invalid/i.test(String((e as Error)?.message))) throw inflateError(e, label, maxBytes);
    throw e;
  } finally {
    input.destroy();
    inflater.destroy();
  }
}
