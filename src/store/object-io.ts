// Reading and writing content objects the CVMFS way: compress, hash the *stored* bytes, put; and on the
// way back, verify the hash of the stored bytes before any byte is inflated or returned. Spec: §1.2, §1.3.
// Not a cache and not a downloader; those call verifyObjectBytes / decodeObjectBytes on bytes they got.
import { GridboxError, q } from '../errors.js';
import { compressZlibAsync, inflateZlib, type CompressionAlgorithm } from '../compress/zlib.js';
import { createContentHash, formatObjectId, hashBytes, objectIdFromDigest, objectKey, type HashAlgorithm, type ObjectId, type ObjectSuffix } from '../hash/object-id.js';
import type { ObjectStore } from './object-store.js';

/** Meta-objects are zlib-compressed whatever the repository setting (§1.3). */
const ALWAYS_ZLIB = new Set<ObjectSuffix>(['C', 'H', 'X', 'M', 'L']);

export interface WriteObjectOptions {
  algorithm: HashAlgorithm;
  suffix?: ObjectSuffix;
  compression: CompressionAlgorithm;
}

export interface WrittenObject {
  id: ObjectId;
  /** objectKey(id, suffix): what the store files it under. */
  key: string;
  /** Bytes as stored (compressed size for zlib). */
  storedSize: number;
}

export interface ReadObjectOptions {
  compression: CompressionAlgorithm;
  /** Decompressed size the catalog promises; a different size is STORE_SIZE_MISMATCH. */
  expectedSize?: number;
  /** Inflate cap when no expectedSize is given. */
  maxBytes?: number;
}

/** Compress (unless 'none'), hash the stored bytes, put. Storing an object that exists is a cheap no-op. */
export async function writeObject(store: ObjectStore, content: Uint8Array, opts: WriteObjectOptions): Promise<WrittenObject> {
  const suffix = opts.suffix ?? '';
  if (opts.compression === 'none' && ALWAYS_ZLIB.has(suffix)) {
    throw new GridboxError('USAGE', `Cannot store a ${q(suffix)} object uncompressed: catalogs, history, certificate and meta-info are always zlib`);
  }
  const stored = opts.compression === 'zlib' ? await compressZlibAsync(content) : Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  const id = hashBytes(opts.algorithm, stored);
  const key = objectKey(id, suffix);
  await store.put(key, stored);
  return { id, key, storedSize: stored.length };
}

/** Throws STORE_HASH_MISMATCH (naming the object key) unless `bytes` hash to `id`. */
export function verifyObjectBytes(bytes: Uint8Array, id: ObjectId, suffix: ObjectSuffix = ''): void {
  const actual = hashBytes(id.algorithm, bytes);
  if (actual.hex !== id.hex) {
    const key = objectKey(id, suffix);
    throw new GridboxError('STORE_HASH_MISMATCH', `Cannot verify object ${q(key)}: its ${bytes.length} stored bytes hash to ${q(formatObjectId(actual))}`, { objectId: key });
  }
}

/** Incremental form of verifyObjectBytes for bytes that arrive in pieces (HTTP bodies). */
export interface ObjectVerifier {
  update(chunk: Uint8Array): void;
  /** Throws STORE_HASH_MISMATCH when the bytes seen do not hash to the id; returns their count. */
  finish(): number;
}

export function createObjectVerifier(id: ObjectId, suffix: ObjectSuffix = ''): ObjectVerifier {
  const hash = createContentHash(id.algorithm);
  let count = 0;
  return {
    update(chunk) {
      hash.update(chunk);
      count += chunk.length;
    },
    finish() {
      const actual = objectIdFromDigest(id.algorithm, hash.digest());
      if (actual.hex !== id.hex) {
        const key = objectKey(id, suffix);
        throw new GridboxError('STORE_HASH_MISMATCH', `Cannot verify object ${q(key)}: its ${count} stored bytes hash to ${q(formatObjectId(actual))}`, { objectId: key });
      }
      return count;
    },
  };
}

/** Turn verified stored bytes into content: inflate (capped) and check the size. Call only after verifying. */
export function decodeObjectBytes(stored: Buffer, key: string, opts: ReadObjectOptions): Buffer {
  let content: Buffer;
  if (opts.compression === 'zlib') {
    // One byte past the expected size is enough to tell "too long" from "exact".
    const maxBytes = opts.expectedSize !== undefined ? opts.expectedSize + 1 : opts.maxBytes;
    try {
      content = inflateZlib(stored, { maxBytes, label: key });
    } catch (e) {
      if (opts.expectedSize !== undefined && e instanceof GridboxError && e.code === 'COMPRESSION_BAD' && /exceeds the limit/.test(e.message)) {
        throw new GridboxError('STORE_SIZE_MISMATCH', `Cannot read object ${q(key)}: expected ${opts.expectedSize} bytes, it inflates to more`, { objectId: key, cause: e });
      }
      throw e;
    }
  } else {
    content = stored;
    if (opts.maxBytes !== undefined && content.length > opts.maxBytes) {
      throw new GridboxError('STORE_SIZE_MISMATCH', `Cannot read object ${q(key)}: ${content.length} bytes exceed the limit of ${opts.maxBytes}`, { objectId: key });
    }
  }
  if (opts.expectedSize !== undefined && content.length !== opts.expectedSize) {
    throw new GridboxError('STORE_SIZE_MISMATCH', `Cannot read object ${q(key)}: expected ${opts.expectedSize} bytes, got ${content.length}`, { objectId: key });
  }
  return content;
}

/** Get, verify the stored bytes' hash, then inflate and size-check. Nothing unverified is returned. */
export async function readObject(store: ObjectStore, id: ObjectId, suffix: ObjectSuffix, opts: ReadObjectOptions): Promise<Buffer> {
  const key = objectKey(id, suffix);
  const stored = await store.get(key);
  verifyObjectBytes(stored, id, suffix);
  return decodeObjectBytes(stored, key, opts);
}
