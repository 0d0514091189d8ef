// CernVM-FS content object ids: algorithm + 20-byte digest, and the suffix that types the object path.
// Spec: cvmfs-format.md §1.2. OCI digests are a different type (oci/), never mixed with these.
import { createHash, type Hash } from 'node:crypto';
import { GridboxError, q } from '../errors.js';

export type HashAlgorithm = 'sha1' | 'rmd160' | 'shake128';

/** Object type tags appended to the path (not part of the hash). */
export type ObjectSuffix = '' | 'C' | 'H' | 'X' | 'P' | 'M' | 'L';

/** Integer values CVMFS stores in catalog flags (shash::Algorithms). */
export const HASH_ALGORITHM_CODE: Record<HashAlgorithm, number> = { sha1: 1, rmd160: 2, shake128: 3 };

const ALGO_ID: Record<HashAlgorithm, string> = { sha1: '', rmd160: '-rmd160', shake128: '-shake128' };

export const DIGEST_BYTES = 20;

/** A content hash as CVMFS prints it, e.g. "e8ec…6b78" or "aa1d…d28e-rmd160". Immutable plain data. */
export interface ObjectId {
  readonly algorithm: HashAlgorithm;
  /** 40 lowercase hex characters. */
  readonly hex: string;
}

/** HASH_ALGORITHM_CODE inverted, indexed by code: every catalog row decodes one (no entries array per row). */
const ALGORITHM_BY_CODE: readonly (HashAlgorithm | undefined)[] = (() => {
  const byCode: (HashAlgorithm | undefined)[] = [];
  for (const [name, c] of Object.entries(HASH_ALGORITHM_CODE)) byCode[c] = name as HashAlgorithm;
  return byCode;
})();

export function hashAlgorithmFromCode(code: number): HashAlgorithm {
  const name = Number.isInteger(code) && code >= 0 ? ALGORITHM_BY_CODE[code] : undefined;
  if (name !== undefined) return name;
  throw new GridboxError('HASH_BAD_ID', `Unknown hash algorithm code ${code}`);
}

export function parseHashAlgorithm(name: string): HashAlgorithm {
  if (name === 'sha1' || name === 'rmd160' || name === 'shake128') return name;
  throw new GridboxError('USAGE', `Unknown hash algorithm ${q(name)}: expected sha1, rmd160 or shake128`);
}

/** Textual form: hex plus algorithm id ("" for sha1). */
export function formatObjectId(id: ObjectId): string {
  return id.hex + ALGO_ID[id.algorithm];
}

/** Parse the textual form; the algorithm follows from the length, as CVMFS's MkFromHexPtr does. */
export function parseObjectId(text: string): ObjectId {
  const m = /^([0-9a-f]{40})(-rmd160|-shake128)?$/.exec(text);
  if (!m) throw new GridboxError('HASH_BAD_ID', `Not a content hash: ${q(text)}`);
  const algorithm: HashAlgorithm = m[2] === '-rmd160' ? 'rmd160' : m[2] === '-shake128' ? 'shake128' : 'sha1';
  return { algorithm, hex: m[1] };
}

/** Path below the repository's data/ directory: "ab/cdef…[-algo][suffix]". */
export function objectPath(id: ObjectId, suffix: ObjectSuffix = ''): string {
  const t = formatObjectId(id);
  return `${t.slice(0, 2)}/${t.slice(2)}${suffix}`;
}

/** The key a store or cache files an object under: textual form plus suffix. */
export function objectKey(id: ObjectId, suffix: ObjectSuffix = ''): string {
  return formatObjectId(id) + suffix;
}

export function parseObjectKey(key: string): { id: ObjectId; suffix: ObjectSuffix } {
  const m = /^([0-9a-f]{40}(?:-rmd160|-shake128)?)([CHXPML]?)$/.exec(key);
  if (!m) throw new GridboxError('HASH_BAD_ID', `Not an object key: ${q(key)}`);
  return { id: parseObjectId(m[1]), suffix: m[2] as ObjectSuffix };
}

export function objectIdFromDigest(algorithm: HashAlgorithm, digest: Uint8Array): ObjectId {
  if (digest.length !== DIGEST_BYTES) throw new GridboxError('HASH_BAD_ID', `Digest has ${digest.length} bytes, expected 20`);
  return { algorithm, hex: Buffer.from(digest).toString('hex') };
}

export function objectIdToDigest(id: ObjectId): Buffer {
  return Buffer.from(id.hex, 'hex');
}

export function sameObjectId(a: ObjectId, b: ObjectId): boolean {
  return a.algorithm === b.algorithm && a.hex === b.hex;
}

/** A streaming hasher for one algorithm; SHAKE-128 is squeezed to 160 bits. */
export function createContentHash(algorithm: HashAlgorithm): Hash {
  if (algorithm === 'shake128') return createHash('shake128', { outputLength: DIGEST_BYTES });
  return createHash(algorithm === 'sha1' ? 'sha1' : 'ripemd160');
}

export function hashBytes(algorithm: HashAlgorithm, data: Uint8Array): ObjectId {
  return objectIdFromDigest(algorithm, createContentHash(algorithm).update(data).digest());
}

/** Null hash: CVMFS stores directories and symlinks with no content hash. */
export const NULL_HEX = '0'.repeat(40);
