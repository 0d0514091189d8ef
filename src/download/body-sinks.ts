// Body sinks: what one attempt does with the bytes as they arrive. objectSink hashes the raw
// (compressed) bytes and inflates on the fly (spec §1.3, §7.5); fileSink only collects.
// Nothing a sink returns has failed verification: finish() throws instead.
import { createInflate, type Inflate } from 'node:zlib';
import { GridboxError, q } from '../errors.js';
import { createContentHash, formatObjectId, type ObjectId } from '../hash/object-id.js';
import type { BodySink } from './transfer.js';

export type Compression = 'zlib' | 'none';

export function fileSink(): BodySink<Buffer> {
  let parts: Buffer[] = [];
  return {
    write(chunk) { parts.push(chunk); },
    async finish() { return Buffer.concat(parts); },
    abort() { parts = []; },
  };
}

/**
 * Verifies an object while it streams in: the digest over the raw body must equal `id`, and the
 * decompressed length must equal `expectedSize` when given (output past it is not kept, so a
 * decompression bomb cannot grow memory). `maxOutputBytes` caps output when the size is unknown.
 */
export function objectSink(id: ObjectId, label: string, compression: Compression, expectedSize: number | undefined, maxOutputBytes: number): BodySink<Buffer> {
  const hash = createContentHash(id.algorithm);
  const limit = expectedSize ?? maxOutputBytes;
  const out: Buffer[] = [];
  let outBytes = 0;
  let overflow = false;
  let inflateError: Error | undefined;
  let inflate: Inflate | undefined;
  if (compression === 'zlib') {
    inflate = createInflate();
    inflate.on('data', (c: Buffer) => {
      if (overflow) return;
      outBytes += c.length;
      if (outBytes > limit) { overflow = true; out.length = 0; inflate?.destroy(); return; }
      out.push(c);
    });
    inflate.on('error', (e) => { inflateError ??= e; });
  }
  const drained = (): Promise<void> => new Promise((resolve) => {
    if (inflate === undefined || inflate.destroyed || inflate.writableFinished) return resolve();
    inflate.once('end', resolve);
    inflate.once('close', resolve);
    inflate.once('error', () => resolve());
  });
  return {
    write(chunk) {
      hash.update(chunk);
      if (inflate === undefined) {
        outBytes += chunk.length;
        if (outBytes > limit) { overflow = true; out.length = 0; } else if (!overflow) out.push(chunk);
      } else if (!overflow && !inflate.destroyed) {
        inflate.write(chunk);
      }
    },
    async finish() {
      if (inflate !== undefined && !inflate.destroyed) {
        const done = drained();
        inflate.end();
        await done;
      }
      const got = hash.digest('hex');
      // The hash decides first: a corrupt body is a hash mismatch, whatever the inflater made of it.
      if (got !== id.hex) {
        throw new GridboxError('STORE_HASH_MISMATCH', `Cannot verify object ${q(label)}: content hash is ${q(got)}`, { objectId: formatObjectId(id) });
      }
      if (overflow) {
        throw new GridboxError('STORE_SIZE_MISMATCH', `Cannot verify object ${q(label)}: decompressed size exceeds ${limit} bytes`, { objectId: formatObjectId(id) });
      }
      if (inflateError !== undefined || (inflate !== undefined && !inflate.writableFinished)) {
        throw new GridboxError('COMPRESSION_BAD', `Cannot inflate object ${q(label)}: ${inflateError?.message ?? 'stream did not end'}`, { objectId: formatObjectId(id), cause: inflateError });
      }
      if (expectedSize !== undefined && outBytes !== expectedSize) {
        throw new GridboxError('STORE_SIZE_MISMATCH', `Cannot verify object ${q(label)}: expected ${expectedSize} bytes, got ${outBytes}`, { objectId: formatObjectId(id) });
      }
      return Buffer.concat(out, outBytes);
    },
    abort() {
      out.length = 0;
      inflate?.destroy();
    },
  };
}
