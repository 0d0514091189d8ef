// Path hashing of catalog rows (cvmfs-format.md §4.3): MD5 of the repository-absolute path, split into two
// little-endian signed 64-bit halves, kept as BigInt so no precision is lost. Not a general path normaliser.
import { hash } from 'node:crypto';

export type Md5Path = readonly [bigint, bigint];

/** The parent hash of the repository root entry: a null MD5. */
export const NULL_MD5PATH: Md5Path = [0n, 0n];

/** `[md5path_1, md5path_2]` of a repository-absolute path ("" for the root, "/a/b" below it). */
export function md5path(path: string): Md5Path {
  // One-shot crypto.hash (no Hash object per call): every lookup and listing of the client hashes a path.
  const d = hash('md5', path, 'buffer');
  return [d.readBigInt64LE(0), d.readBigInt64LE(8)];
}

/** Parent of a repository-absolute path: "/a/b" → "/a", "/a" → "", "" → "". */
export function catalogParentPath(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '' : path.slice(0, i);
}

/** Normalise a path given by a caller to the hashed form: "/" and "" → "", trailing slashes dropped, leading slash added. */
export function normalizeCatalogPath(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  if (trimmed === '') return '';
  return trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}
