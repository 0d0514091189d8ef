// Body sinks: what one attempt does with the bytes as they arrive. objectSink hashes the raw
// (compressed) bytes and inflates on the fly into an ObjectOutput (memory, or a cache temp file), with
// backpressure all the way, so memory stays bounded whatever the object's size (spec §1.3, §7.5);
// fileSink only collects (manifests, whitelists: small and capped).
// Nothing a sink returns has failed verification: finish() aborts the output and throws instead.
import { constants as bufferConstants } from 'node:buffer';
import { createInflate, inflateSync, type Inflate } from 'node:zlib';
import { GridboxError, q } from '../errors.js';
import { createContentHash, formatObjectId, type ObjectId } from '../hash/object-id.js';
import type { BodySink, FileTarget } from './transfer.js';

export type Compression = 'zlib' | 'none';

/**
 * Where an object's content goes while it streams in. Nothing written is trusted until the sink's
 * finish() resolves with the output; the caller then commits it (e.g. renames a temp file into the cache).
 */
export interface ObjectOutput {
  /** Receives the decompressed bytes in order; a returned promise holds the stream back until it settles. */
  write(chunk: Buffer): void | Promise<void>;
  /** Drops what was written (the attempt failed or did not verify); the output is not used again. */
  abort(): void;
  /**
   * Offered by outputs that are files (the cache's writer): instead of write() calls, the whole content may be
   * written by someone else into `path` (the native fetcher), and adopt() then takes it as the output's
   * content. Called at most once, before any write; abort() still drops it.
   */
  fileTarget?(): { path: string; adopt(size: number): void };
}

/** Inflater output piece size: fewer, larger writes than zlib's 16 KiB default. */
const INFLATE_CHUNK_BYTES = 64 * 1024;

/**
 * Compressed bodies up to this size are held whole and inflated in one synchronous call once their hash has
 * checked out, instead of through a zlib stream: most objects of an image start are a few KiB, and a stream
 * per object (its setup, a threadpool hop per write, events) cost more than the inflating itself. Bounded:
 * this much per download in flight; a larger body switches to the stream at the piece that passes it.
 */
export const SMALL_BODY_BYTES = 64 * 1024;

/**
 * The errors of an object that did not verify, one wording for every download path (objectSink here,
 * transfer-native.ts for the native fetcher); each path checks in the same order: hash, cap, inflate, size.
 */
export const objectFailure = {
  hashMismatch: (id: ObjectId, label: string, got: string): GridboxError =>
    new GridboxError('STORE_HASH_MISMATCH', `Cannot verify object ${q(label)}: content hash is ${q(got)}`, { objectId: formatObjectId(id) }),
  sizeExceeded: (id: ObjectId, label: string, limit: number): GridboxError =>
    new GridboxError('STORE_SIZE_MISMATCH', `Cannot verify object ${q(label)}: decompressed size exceeds ${limit} bytes`, { objectId: formatObjectId(id) }),
  inflateFailed: (id: ObjectId, label: string, why: string, cause?: unknown): GridboxError =>
    new GridboxError('COMPRESSION_BAD', `Cannot inflate object ${q(label)}: ${why}`, { objectId: formatObjectId(id), cause }),
  sizeMismatch: (id: ObjectId, label: string, expected: number, got: number): GridboxError =>
    new GridboxError('STORE_SIZE_MISMATCH', `Cannot verify object ${q(label)}: expected ${expected} bytes, got ${got}`, { objectId: formatObjectId(id) }),
};

/** An ObjectOutput in memory, for small objects (certificates) and callers that want a Buffer. */
export class MemoryOutput implements ObjectOutput {
  private parts: Buffer[] = [];
  private n = 0;
  write(chunk: Buffer): void { this.parts.push(chunk); this.n += chunk.length; }
  abort(): void { this.parts = []; this.n = 0; }
  bytes(): Buffer { return Buffer.concat(this.parts, this.n); }
}

export function fileSink(): BodySink<Buffer> {
  const out = new MemoryOutput();
  return {
    write(chunk) { out.write(chunk); },
    async finish() { return out.bytes(); },
    abort() { out.abort(); },
  };
}

/** Resolves when a writable may take more (drain), or can take nothing more (error, close, finished). */
function writable(s: Inflate): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => { s.off('drain', done); s.off('close', done); s.off('error', done); resolve(); };
    s.once('drain', done);
    s.once('close', done);
    s.once('error', done);
  });
}

/**
 * Verifies an object while it streams in: the digest over the raw body must equal `id`, and the
 * decompressed length must equal `expectedSize` when given (output past it is not written, so a
 * decompression bomb cannot fill a disk or memory). `maxOutputBytes` caps output when the size is unknown.
 */
export function objectSink<O extends ObjectOutput>(id: ObjectId, label: string, compression: Compression, expectedSize: number | undefined,
  maxOutputBytes: number, out: O): BodySink<O> {
  const hash = createContentHash(id.algorithm);
  const limit = expectedSize ?? maxOutputBytes;
  let outBytes = 0;
  let overflow = false;
  let failed: unknown; // the output refused a write (e.g. the cache disk is full)
  let inflateError: Error | undefined;
  let inflate: Inflate | undefined;
  let pending: Promise<void> | undefined;
  let aborted = false;
  const fail = (e: unknown): void => { failed ??= e; inflate?.destroy(); };
  /** Hands one decompressed piece on, unless it goes past the limit. */
  const emit = (c: Buffer): void | Promise<void> => {
    if (overflow || failed !== undefined) return;
    outBytes += c.length;
    if (outBytes > limit) { overflow = true; inflate?.destroy(); return; }
    return out.write(c);
  };
  /** A zlib body's raw pieces while it is still small (undefined once streaming, or when not compressed). */
  let held: Buffer[] | undefined = compression === 'zlib' ? [] : undefined;
  let heldBytes = 0;
  const startInflate = (): Inflate => {
    const z = createInflate({ chunkSize: INFLATE_CHUNK_BYTES });
    inflate = z;
    z.on('data', (c: Buffer) => {
      let r: void | Promise<void>;
      try { r = emit(c); } catch (e) { fail(e); return; }
      if (r instanceof Promise) {
        // An asynchronous output: hold the inflater (and through it the socket) until the write is done.
        z.pause();
        pending = r.then(() => { pending = undefined; z.resume(); }, (e: unknown) => { pending = undefined; fail(e); });
      }
    });
    z.on('error', (e) => { inflateError ??= e; });
    return z;
  };
  /** The small-body path: called only after the hash matched, so a corrupt body is never inflated. */
  const inflateHeld = async (parts: Buffer[]): Promise<void> => {
    const raw = parts.length === 1 ? parts[0] : Buffer.concat(parts, heldBytes);
    let plain: Buffer;
    try {
      // One byte past the limit is enough to tell an overflow; a bomb stops there instead of filling memory.
      plain = inflateSync(raw, { maxOutputLength: Math.min(limit + 1, bufferConstants.MAX_LENGTH) });
    } catch (e) {
      if ((e as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') overflow = true;
      else inflateError = e as Error;
      return;
    }
    for (let at = 0; at < plain.length && !overflow && failed === undefined; at += INFLATE_CHUNK_BYTES) {
      const r = emit(plain.subarray(at, at + INFLATE_CHUNK_BYTES));
      if (r instanceof Promise) await r.catch(fail);
    }
  };
  const ended = (): Promise<void> => new Promise((resolve) => {
    const z = inflate;
    if (z === undefined || z.destroyed || z.readableEnded) return resolve();
    z.once('end', resolve);
    z.once('close', resolve);
    z.once('error', () => resolve());
  });
  const abort = (): void => {
    if (aborted) return;
    aborted = true;
    inflate?.destroy();
    out.abort();
  };
  let file: FileTarget<O> | undefined;
  if (out.fileTarget !== undefined) {
    let taken: { path: string; adopt(size: number): void } | undefined;
    file = {
      id, label, compression, expectedSize, maxOutBytes: maxOutputBytes,
      path: () => (taken ??= out.fileTarget!()).path,
      adopt: (size) => { taken!.adopt(size); return out; },
    };
  }
  return {
    file,
    async write(chunk) {
      hash.update(chunk);
      if (held !== undefined) {
        held.push(chunk);
        heldBytes += chunk.length;
        if (heldBytes <= SMALL_BODY_BYTES) return;
        // Too large to hold: from here on it streams, starting with what was held.
        const parts = held;
        held = undefined;
        const z = startInflate();
        for (const p of parts) {
          if (overflow || failed !== undefined || z.destroyed) return;
          if (!z.write(p)) await writable(z);
        }
        return;
      }
      if (inflate === undefined) {
        const r = emit(chunk);
        if (r instanceof Promise) await r.catch(fail);
        return;
      }
      if (overflow || failed !== undefined || inflate.destroyed) return; // keep hashing: the hash decides what went wrong
      if (!inflate.write(chunk)) await writable(inflate);
    },
    async finish() {
      try {
        if (inflate !== undefined && !inflate.destroyed) {
          const done = ended();
          inflate.end();
          await done;
        }
        while (pending !== undefined) await pending;
        const got = hash.digest('hex');
        // The hash decides first: a corrupt body is a hash mismatch, whatever the inflater made of it.
        if (got !== id.hex) {
          throw objectFailure.hashMismatch(id, label, got);
        }
        if (held !== undefined) {
          const parts = held;
          held = undefined;
          await inflateHeld(parts);
        }
        if (overflow) {
          throw objectFailure.sizeExceeded(id, label, limit);
        }
        if (failed !== undefined) throw failed;
        if (inflateError !== undefined || (inflate !== undefined && !inflate.readableEnded)) {
          throw objectFailure.inflateFailed(id, label, inflateError?.message ?? 'stream did not end', inflateError);
        }
        if (expectedSize !== undefined && outBytes !== expectedSize) {
          throw objectFailure.sizeMismatch(id, label, expectedSize, outBytes);
        }
        return out;
      } catch (e) {
        abort();
        throw e;
      }
    },
    abort,
  };
}
