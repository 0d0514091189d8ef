// The entry model shared by the directory walker, the tar reader, the OCI flattener, the publisher
// and the filesystem view. Plain data; paths are repository-relative, "/"-separated, without a leading
// slash ("" is the root). Contents travel separately (see ContentSource), never inside an entry.

export type EntryType = 'dir' | 'file' | 'symlink' | 'fifo' | 'socket' | 'chardev' | 'blockdev';

export interface Entry {
  /** Relative path, "" for the root, no leading or trailing slash, no "." or ".." parts. */
  path: string;
  type: EntryType;
  /** Permission bits including setuid/setgid/sticky (07777), without the type bits. */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes for files, target length for symlinks, 4096 for directories (CVMFS convention). */
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Nanosecond part of mtime, 0..999999999. */
  mtimeNs: number;
  /** Symlink target, verbatim. */
  target?: string;
  /** Device number for chardev/blockdev, as (major << 8 | minor) for small numbers or Linux dev_t encoding. */
  rdev?: number;
  /** Extended attributes, name → value. */
  xattrs?: Record<string, Buffer>;
  /** Entries sharing a key are hard links to one inode (files only; CVMFS cannot hardlink across directories). */
  hardlinkKey?: string;
}

export const S_IFMT = 0o170000;
export const TYPE_BITS: Record<EntryType, number> = {
  dir: 0o040000,
  file: 0o100000,
  symlink: 0o120000,
  fifo: 0o010000,
  socket: 0o140000,
  chardev: 0o020000,
  blockdev: 0o060000,
};

export function typeFromMode(mode: number): EntryType {
  switch (mode & S_IFMT) {
    case 0o040000: return 'dir';
    case 0o100000: return 'file';
    case 0o120000: return 'symlink';
    case 0o010000: return 'fifo';
    case 0o140000: return 'socket';
    case 0o020000: return 'chardev';
    case 0o060000: return 'blockdev';
    default: throw new Error(`Unknown file type in mode ${mode.toString(8)}`);
  }
}

/** Full st_mode: type bits | permission bits. */
export function fullMode(e: Pick<Entry, 'type' | 'mode'>): number {
  return TYPE_BITS[e.type] | (e.mode & 0o7777);
}

export function parentPath(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function joinPath(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/**
 * Normalise a path from outside (tar header, CLI flag) to the entry form, or return null when it
 * escapes the root ("..") or is empty after normalisation. Leading "/" and "./" are dropped.
 */
export function normalizeRelPath(raw: string): string | null {
  const parts: string[] = [];
  for (const p of raw.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') return null;
    parts.push(p);
  }
  return parts.join('/');
}
