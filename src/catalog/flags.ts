// The catalog `flags` bit field (cvmfs-format.md §4.4): encode from a CatalogEntry, decode to plain data.
// The entry type itself comes from `mode`; flags only refine it (nested, chunked, hash algorithm, …).
import type { EntryType } from '../fstree/entry.js';
import { HASH_ALGORITHM_CODE, hashAlgorithmFromCode, type HashAlgorithm } from '../hash/object-id.js';
import type { Compression } from './types.js';

export const FLAG_DIR = 1;
export const FLAG_DIR_NESTED_MOUNTPOINT = 2;
export const FLAG_FILE = 4;
export const FLAG_LINK = 8;
export const FLAG_FILE_SPECIAL = 16;
export const FLAG_DIR_NESTED_ROOT = 32;
export const FLAG_FILE_CHUNK = 64;
export const FLAG_FILE_EXTERNAL = 128;
export const FLAG_POS_HASH = 8;
export const FLAG_HASH_MASK = 0x700;
export const FLAG_POS_COMPRESSION = 11;
export const FLAG_COMPRESSION_MASK = 0x3800;
export const FLAG_DIR_BIND_MOUNTPOINT = 0x4000;
export const FLAG_HIDDEN = 0x8000;
export const FLAG_DIRECT_IO = 0x10000;

const COMPRESSION_CODE: Record<Compression, number> = { zlib: 0, none: 1 };

export interface FlagInput {
  type: EntryType;
  /** Hash algorithm of the content hash or of the chunks; absent when the entry has no hash. */
  algorithm?: HashAlgorithm;
  compression?: Compression;
  chunked?: boolean;
  external?: boolean;
  directIo?: boolean;
  hidden?: boolean;
  nestedMountpoint?: boolean;
  nestedRoot?: boolean;
  bindMountpoint?: boolean;
}

export interface DecodedFlags {
  dir: boolean;
  file: boolean;
  link: boolean;
  special: boolean;
  nestedMountpoint: boolean;
  nestedRoot: boolean;
  bindMountpoint: boolean;
  chunked: boolean;
  external: boolean;
  directIo: boolean;
  hidden: boolean;
  /** Always present: CVMFS reads bits 8–10 as algorithm − 1, so an unset field means SHA-1. */
  algorithm: HashAlgorithm;
  compression: Compression;
}

/** Flags as the stock server's `CreateDatabaseFlags` computes them. */
export function encodeFlags(f: FlagInput): number {
  let flags = 0;
  // Only one of the transition bits, in the server's order of precedence.
  if (f.nestedRoot) flags |= FLAG_DIR_NESTED_ROOT;
  else if (f.nestedMountpoint) flags |= FLAG_DIR_NESTED_MOUNTPOINT;
  else if (f.bindMountpoint) flags |= FLAG_DIR_BIND_MOUNTPOINT;

  if (f.type === 'dir') flags |= FLAG_DIR;
  else if (f.type === 'symlink') flags |= FLAG_FILE | FLAG_LINK;
  else if (f.type !== 'file') flags |= FLAG_FILE | FLAG_FILE_SPECIAL;
  else {
    flags |= FLAG_FILE | (COMPRESSION_CODE[f.compression ?? 'zlib'] << FLAG_POS_COMPRESSION);
    if (f.chunked) flags |= FLAG_FILE_CHUNK;
    if (f.external) flags |= FLAG_FILE_EXTERNAL;
    if (f.directIo) flags |= FLAG_DIRECT_IO;
  }
  if (f.algorithm !== undefined) flags |= (HASH_ALGORITHM_CODE[f.algorithm] - 1) << FLAG_POS_HASH;
  if (f.hidden) flags |= FLAG_HIDDEN;
  return flags;
}

export function decodeFlags(flags: number): DecodedFlags {
  const compressionCode = (flags & FLAG_COMPRESSION_MASK) >> FLAG_POS_COMPRESSION;
  return {
    dir: (flags & FLAG_DIR) !== 0,
    file: (flags & FLAG_FILE) !== 0,
    link: (flags & FLAG_LINK) !== 0,
    special: (flags & FLAG_FILE_SPECIAL) !== 0,
    nestedMountpoint: (flags & FLAG_DIR_NESTED_MOUNTPOINT) !== 0,
    nestedRoot: (flags & FLAG_DIR_NESTED_ROOT) !== 0,
    bindMountpoint: (flags & FLAG_DIR_BIND_MOUNTPOINT) !== 0,
    chunked: (flags & FLAG_FILE_CHUNK) !== 0,
    external: (flags & FLAG_FILE_EXTERNAL) !== 0,
    directIo: (flags & FLAG_DIRECT_IO) !== 0,
    hidden: (flags & FLAG_HIDDEN) !== 0,
    algorithm: hashAlgorithmFromCode(((flags & FLAG_HASH_MASK) >> FLAG_POS_HASH) + 1),
    compression: compressionCode === 1 ? 'none' : 'zlib',
  };
}
