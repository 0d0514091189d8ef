// Test helper: writes raw content-addressed objects (zlib-compressed, named by the hash of the
// compressed bytes) into a srv/<fqrn>/data/XX/ tree, so download and cache tests need no publisher.
// Not a publisher: no catalogs, manifest or signatures.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { hashBytes, objectPath, type HashAlgorithm, type ObjectId, type ObjectSuffix } from '../hash/object-id.js';

export interface RawObject {
  id: ObjectId;
  suffix: ObjectSuffix;
  /** Decompressed content. */
  content: Buffer;
  /** Bytes as stored and served. */
  stored: Buffer;
  /** Path below srv/<fqrn>/. */
  relPath: string;
}

export function makeRawObject(content: Buffer, suffix: ObjectSuffix = '', algorithm: HashAlgorithm = 'sha1', compress = true): RawObject {
  const stored = compress ? deflateSync(content) : content;
  const id = hashBytes(algorithm, stored);
  return { id, suffix, content, stored, relPath: `data/${objectPath(id, suffix)}` };
}

/** Writes each object under srvDir/<fqrn>/ and returns them. */
export async function writeRawObjects(srvDir: string, fqrn: string, objects: RawObject[]): Promise<RawObject[]> {
  for (const o of objects) {
    const file = join(srvDir, fqrn, o.relPath);
    await mkdir(join(file, '..'), { recursive: true });
    await writeFile(file, o.stored);
  }
  return objects;
}

/** Deterministic pseudo-random bytes (poorly compressible), so tests need no fixture files. */
export function pseudoRandomBytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; b[i] = x & 0xff; }
  return b;
}
