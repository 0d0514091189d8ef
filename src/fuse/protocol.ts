// The Linux FUSE wire protocol (include/uapi/linux/fuse.h): opcodes, flags and little-endian codecs for
// the structs a read-only filesystem needs. Pure data in, bytes out; no I/O, no policy, nothing of CVMFS.
// Offsets are checked against the uapi header (fuse_attr 88 B, entry_out 128 B, attr_out 104 B, ...).

/** Protocol version we speak; 7.31 has MAX_PAGES, CACHE_SYMLINKS, NO_OPENDIR_SUPPORT, map_alignment. */
export const FUSE_KERNEL_VERSION = 7;
export const FUSE_KERNEL_MINOR_VERSION = 31;
export const FUSE_ROOT_ID = 1;
/** The kernel refuses reads into buffers smaller than this. */
export const FUSE_MIN_READ_BUFFER = 8192;

export const Opcode = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9,
  UNLINK: 10, RMDIR: 11, RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17,
  RELEASE: 18, FSYNC: 20, SETXATTR: 21, GETXATTR: 22, LISTXATTR: 23, REMOVEXATTR: 24, FLUSH: 25,
  INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, FSYNCDIR: 30, GETLK: 31, SETLK: 32,
  SETLKW: 33, ACCESS: 34, CREATE: 35, INTERRUPT: 36, BMAP: 37, DESTROY: 38, IOCTL: 39, POLL: 40,
  NOTIFY_REPLY: 41, BATCH_FORGET: 42, FALLOCATE: 43, READDIRPLUS: 44, RENAME2: 45, LSEEK: 46,
  COPY_FILE_RANGE: 47, SETUPMAPPING: 48, REMOVEMAPPING: 49, SYNCFS: 50, TMPFILE: 51, STATX: 52,
} as const;

/** fuse_init_in/out.flags (the low 32 bits; flags2 is only read by the kernel for minor >= 36). */
export const InitFlag = {
  ASYNC_READ: 1 << 0, POSIX_LOCKS: 1 << 1, FILE_OPS: 1 << 2, ATOMIC_O_TRUNC: 1 << 3,
  EXPORT_SUPPORT: 1 << 4, BIG_WRITES: 1 << 5, DONT_MASK: 1 << 6, SPLICE_WRITE: 1 << 7,
  SPLICE_MOVE: 1 << 8, SPLICE_READ: 1 << 9, FLOCK_LOCKS: 1 << 10, HAS_IOCTL_DIR: 1 << 11,
  AUTO_INVAL_DATA: 1 << 12, DO_READDIRPLUS: 1 << 13, READDIRPLUS_AUTO: 1 << 14, ASYNC_DIO: 1 << 15,
  WRITEBACK_CACHE: 1 << 16, NO_OPEN_SUPPORT: 1 << 17, PARALLEL_DIROPS: 1 << 18,
  HANDLE_KILLPRIV: 1 << 19, POSIX_ACL: 1 << 20, ABORT_ERROR: 1 << 21, MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23, NO_OPENDIR_SUPPORT: 1 << 24, EXPLICIT_INVAL_DATA: 1 << 25,
  /** flags2 (the high 32 bits) is valid in both directions. */
  INIT_EXT: 1 << 30,
} as const;

/** fuse_init_in/out.flags2: bit N here is bit 32+N of the 64-bit flags. */
export const InitFlag2 = {
  /** FUSE_PASSTHROUGH (bit 37): OPEN replies may name a backing file (kernel >= 6.9). */
  PASSTHROUGH: 1 << 5,
} as const;

/** fuse_open_out.open_flags. */
export const OpenFlag = {
  DIRECT_IO: 1 << 0, KEEP_CACHE: 1 << 1, NONSEEKABLE: 1 << 2, CACHE_DIR: 1 << 3, STREAM: 1 << 4,
  NOFLUSH: 1 << 5,
  /** Reads and mmap go straight to the backing file named by backing_id. */
  PASSTHROUGH: 1 << 7,
} as const;

export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
export const OPEN_OUT_SIZE = 16;
export const STATFS_OUT_SIZE = 80;
export const INIT_OUT_SIZE = 64;
/** init_out size the kernel expects from servers that answer with minor < 23. */
export const INIT_OUT_COMPAT_22_SIZE = 24;
const DIRENT_HEADER_SIZE = 24;
export const DIRENTPLUS_HEADER_SIZE = ENTRY_OUT_SIZE + DIRENT_HEADER_SIZE;

const TWO_32 = 0x1_0000_0000;

/** u64 as a JS number; node ids, offsets and sizes stay far below 2^53 in practice. */
export function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off) + buf.readUInt32LE(off + 4) * TWO_32;
}

export function writeU64(buf: Buffer, off: number, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`u64 field out of range: ${n}`);
  buf.writeUInt32LE(n % TWO_32, off);
  buf.writeUInt32LE(Math.floor(n / TWO_32), off + 4);
}

/** fuse_in_header: every request starts with it; `unique` is kept as the raw 8 bytes for the reply. */
export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
}

export function decodeInHeader(buf: Buffer): InHeader {
  if (buf.length < IN_HEADER_SIZE) throw new RangeError(`FUSE request of ${buf.length} bytes is shorter than its header`);
  return {
    len: buf.readUInt32LE(0),
    opcode: buf.readUInt32LE(4),
    unique: buf.readBigUInt64LE(8),
    nodeid: readU64(buf, 16),
    uid: buf.readUInt32LE(24),
    gid: buf.readUInt32LE(28),
    pid: buf.readUInt32LE(32),
  };
}

/** fuse_out_header; `error` is 0 or a negative errno, `unique` copied from the request. */
export function encodeOutHeader(payloadLength: number, error: number, unique: bigint): Buffer {
  const b = Buffer.allocUnsafe(OUT_HEADER_SIZE);
  b.writeUInt32LE(OUT_HEADER_SIZE + payloadLength, 0);
  b.writeInt32LE(error, 4);
  b.writeBigUInt64LE(unique, 8);
  return b;
}

/** Attributes of one inode, as stat(2) will show them. Times are seconds since the epoch (fractions kept to ns). */
export interface Attr {
  ino: number;
  size: number;
  /** 512-byte blocks; defaults to ceil(size / 512). */
  blocks?: number;
  atime: number;
  mtime: number;
  ctime: number;
  /** Full st_mode including the file type bits (S_IFREG | 0o644, ...). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev?: number;
  /** Preferred I/O size reported as st_blksize; 0 lets the kernel choose (the page size). */
  blksize?: number;
}

function splitTime(t: number): [number, number] {
  const s = Math.floor(t);
  return [Math.max(0, s), Math.max(0, Math.min(999_999_999, Math.round((t - s) * 1e9)))];
}

export function encodeAttr(buf: Buffer, off: number, a: Attr): void {
  writeU64(buf, off, a.ino);
  writeU64(buf, off + 8, a.size);
  writeU64(buf, off + 16, a.blocks ?? Math.ceil(a.size / 512));
  const [as, ans] = splitTime(a.atime), [ms, mns] = splitTime(a.mtime), [cs, cns] = splitTime(a.ctime);
  writeU64(buf, off + 24, as);
  writeU64(buf, off + 32, ms);
  writeU64(buf, off + 40, cs);
  buf.writeUInt32LE(ans, off + 48);
  buf.writeUInt32LE(mns, off + 52);
  buf.writeUInt32LE(cns, off + 56);
  buf.writeUInt32LE(a.mode >>> 0, off + 60);
  buf.writeUInt32LE(a.nlink >>> 0, off + 64);
  buf.writeUInt32LE(a.uid >>> 0, off + 68);
  buf.writeUInt32LE(a.gid >>> 0, off + 72);
  buf.writeUInt32LE((a.rdev ?? 0) >>> 0, off + 76);
  buf.writeUInt32LE((a.blksize ?? 0) >>> 0, off + 80);
  buf.writeUInt32LE(0, off + 84); // flags (FUSE_ATTR_SUBMOUNT/DAX): never set here
}

export function decodeAttr(buf: Buffer, off: number): Attr {
  return {
    ino: readU64(buf, off), size: readU64(buf, off + 8), blocks: readU64(buf, off + 16),
    atime: readU64(buf, off + 24) + buf.readUInt32LE(off + 48) / 1e9,
    mtime: readU64(buf, off + 32) + buf.readUInt32LE(off + 52) / 1e9,
    ctime: readU64(buf, off + 40) + buf.readUInt32LE(off + 56) / 1e9,
    mode: buf.readUInt32LE(off + 60), nlink: buf.readUInt32LE(off + 64), uid: buf.readUInt32LE(off + 68),
    gid: buf.readUInt32LE(off + 72), rdev: buf.readUInt32LE(off + 76), blksize: buf.readUInt32LE(off + 80),
  };
}

/**
 * The answer to LOOKUP (and each READDIRPLUS entry). `entryTtl` is how long (seconds) the kernel may
 * keep the name → nodeid binding without asking again; `attrTtl` how long it may trust `attr`.
 * nodeid 0 with a positive entryTtl is a cached negative answer ("no such name", like ENOENT but remembered).
 */
export interface EntryOut {
  nodeid: number;
  /** nodeid + generation must never name two different inodes during the life of the mount. */
  generation?: number;
  entryTtl: number;
  attrTtl: number;
  attr: Attr;
}

function writeTtl(buf: Buffer, secOff: number, nsecOff: number, ttl: number): void {
  const t = Number.isFinite(ttl) && ttl > 0 ? Math.min(ttl, 2 ** 52) : 0;
  const [s, ns] = splitTime(t);
  writeU64(buf, secOff, s);
  buf.writeUInt32LE(ns, nsecOff);
}

export function encodeEntryOutInto(buf: Buffer, off: number, e: EntryOut): void {
  writeU64(buf, off, e.nodeid);
  writeU64(buf, off + 8, e.generation ?? 0);
  writeTtl(buf, off + 16, off + 32, e.entryTtl);
  writeTtl(buf, off + 24, off + 36, e.attrTtl);
  encodeAttr(buf, off + 40, e.attr);
}

export function encodeEntryOut(e: EntryOut): Buffer {
  const b = Buffer.alloc(ENTRY_OUT_SIZE);
  encodeEntryOutInto(b, 0, e);
  return b;
}

/** The answer to GETATTR: `attrTtl` seconds of validity. */
export interface AttrOut {
  attrTtl: number;
  attr: Attr;
}

export function encodeAttrOut(a: AttrOut): Buffer {
  const b = Buffer.alloc(ATTR_OUT_SIZE);
  writeTtl(b, 0, 8, a.attrTtl);
  encodeAttr(b, 16, a.attr);
  return b;
}

/** The answer to OPEN/OPENDIR. */
export interface OpenOut {
  /** Handle passed back in READ/RELEASE (READDIR/RELEASEDIR); 0 if the filesystem keeps no state. */
  fh: number;
  /** Keep the page cache of this inode across opens (FOPEN_KEEP_CACHE): right for immutable content. */
  keepCache?: boolean;
  /** Bypass the page cache (FOPEN_DIRECT_IO). */
  directIo?: boolean;
  /** Directories only: let the kernel cache the listing (FOPEN_CACHE_DIR). */
  cacheDir?: boolean;
  /** FUSE passthrough: the kernel serves reads from this registered backing file (FOPEN_PASSTHROUGH). */
  backingId?: number;
}

export function encodeOpenOut(o: OpenOut): Buffer {
  const b = Buffer.alloc(OPEN_OUT_SIZE);
  writeU64(b, 0, o.fh);
  const pt = o.backingId !== undefined && o.backingId > 0;
  const flags = (o.keepCache ? OpenFlag.KEEP_CACHE : 0) | (o.directIo ? OpenFlag.DIRECT_IO : 0) | (o.cacheDir ? OpenFlag.CACHE_DIR : 0) |
    (pt ? OpenFlag.PASSTHROUGH : 0);
  b.writeUInt32LE(flags, 8);
  if (pt) b.writeInt32LE(o.backingId!, 12);
  return b;
}

/** statfs(2) numbers; blocks are in units of `frsize` (falls back to `bsize`). */
export interface Statfs {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  namelen: number;
  frsize?: number;
}

export function encodeStatfs(s: Statfs): Buffer {
  const b = Buffer.alloc(STATFS_OUT_SIZE);
  writeU64(b, 0, s.blocks);
  writeU64(b, 8, s.bfree);
  writeU64(b, 16, s.bavail);
  writeU64(b, 24, s.files);
  writeU64(b, 32, s.ffree);
  b.writeUInt32LE(s.bsize, 40);
  b.writeUInt32LE(s.namelen, 44);
  b.writeUInt32LE(s.frsize ?? s.bsize, 48);
  return b;
}

/** fuse_init_in as offered by the kernel. */
export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  /** High flag bits; 0 (or absent) unless the kernel set INIT_EXT (minor >= 36). */
  flags2?: number;
}

export function decodeInitIn(buf: Buffer, off: number): InitIn {
  const flags = buf.readUInt32LE(off + 12);
  const flags2 = flags & InitFlag.INIT_EXT && buf.length >= off + 20 ? buf.readUInt32LE(off + 16) : 0;
  return { major: buf.readUInt32LE(off), minor: buf.readUInt32LE(off + 4), maxReadahead: buf.readUInt32LE(off + 8), flags, flags2 };
}

/** What the filesystem wants from INIT; everything is capped by what the kernel offers. */
export interface InitWants {
  /** Flags wanted; only those the kernel offered are granted. */
  flags: number;
  maxReadahead: number;
  /** Largest READ in pages of 4 KiB (needs MAX_PAGES); 256 = 1 MiB. */
  maxPages: number;
  maxBackground: number;
  congestionThreshold: number;
  /** Largest WRITE; a read-only filesystem keeps this small so requests fit one 64 KiB read. */
  maxWrite: number;
  /** High flags wanted (InitFlag2), granted only as offered; non-zero needs INIT_EXT, which this sets. */
  flags2?: number;
  /** Filesystem stacking depth of backing files (passthrough; 1 = backing files on a plain filesystem). */
  maxStackDepth?: number;
  /** Timestamp granularity in ns. */
  timeGran: number;
}

/** The agreed parameters, also handed to FuseOps.init. */
export interface InitOut {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  timeGran: number;
  maxPages: number;
  /** Granted high flags (InitFlag2); with any set, flags carries INIT_EXT. */
  flags2?: number;
  /** Sent with PASSTHROUGH: how deep backing files may stack (the kernel ignores PASSTHROUGH with 0). */
  maxStackDepth?: number;
}

/** Flag negotiation: grant the intersection, answer the older minor of the two, never exceed the offered readahead. */
export function negotiateInit(offered: InitIn, wants: InitWants): InitOut {
  const minor = Math.min(offered.minor, FUSE_KERNEL_MINOR_VERSION);
  let flags = (offered.flags & wants.flags) >>> 0;
  if (minor < 28) flags &= ~InitFlag.MAX_PAGES;
  const flags2 = offered.flags & InitFlag.INIT_EXT ? ((offered.flags2 ?? 0) & (wants.flags2 ?? 0)) >>> 0 : 0;
  flags = (flags2 !== 0 ? flags | InitFlag.INIT_EXT : flags & ~InitFlag.INIT_EXT) >>> 0;
  return {
    major: FUSE_KERNEL_VERSION,
    minor,
    maxReadahead: Math.min(offered.maxReadahead, wants.maxReadahead),
    flags: flags >>> 0,
    maxBackground: Math.min(wants.maxBackground, 0xffff),
    congestionThreshold: Math.min(wants.congestionThreshold, 0xffff),
    maxWrite: wants.maxWrite,
    timeGran: wants.timeGran,
    maxPages: flags & InitFlag.MAX_PAGES ? Math.max(1, Math.min(wants.maxPages, 0xffff)) : 0,
    flags2,
    maxStackDepth: flags2 & InitFlag2.PASSTHROUGH ? Math.max(1, wants.maxStackDepth ?? 1) : 0,
  };
}

export function encodeInitOut(o: InitOut): Buffer {
  const b = Buffer.alloc(o.minor < 23 ? INIT_OUT_COMPAT_22_SIZE : INIT_OUT_SIZE);
  b.writeUInt32LE(o.major, 0);
  b.writeUInt32LE(o.minor, 4);
  b.writeUInt32LE(o.maxReadahead, 8);
  b.writeUInt32LE(o.flags >>> 0, 12);
  b.writeUInt16LE(o.maxBackground, 16);
  b.writeUInt16LE(o.congestionThreshold, 18);
  b.writeUInt32LE(o.maxWrite, 20);
  if (b.length >= INIT_OUT_SIZE) {
    b.writeUInt32LE(o.timeGran, 24);
    b.writeUInt16LE(o.maxPages, 28);
    b.writeUInt32LE((o.flags2 ?? 0) >>> 0, 32);
    b.writeUInt32LE(o.maxStackDepth ?? 0, 36);
  }
  return b;
}

/** d_type values for directory entries (DT_*), derived from st_mode. */
export function direntType(mode: number): number {
  return (mode & 0o170000) >>> 12;
}

/** One directory entry. `off` is the cookie the kernel sends back to continue after this entry. */
export interface DirEntry {
  name: string;
  ino: number;
  /** st_mode or just its type bits (S_IFDIR, S_IFREG, S_IFLNK, ...). */
  mode: number;
  off: number;
}

const align8 = (n: number): number => (n + 7) & ~7;

export function direntSize(nameBytes: number): number {
  return align8(DIRENT_HEADER_SIZE + nameBytes);
}

export function direntPlusSize(nameBytes: number): number {
  return align8(DIRENTPLUS_HEADER_SIZE + nameBytes);
}

function writeDirent(buf: Buffer, off: number, e: DirEntry, name: Buffer): void {
  writeU64(buf, off, e.ino);
  writeU64(buf, off + 8, e.off);
  buf.writeUInt32LE(name.length, off + 16);
  buf.writeUInt32LE(direntType(e.mode), off + 20);
  name.copy(buf, off + DIRENT_HEADER_SIZE);
  // padding bytes are zero because buffers come from Buffer.alloc
}

/**
 * Packs READDIR entries into at most `size` bytes, each 8-byte aligned; returns the bytes and how many
 * entries fit (the kernel asks again from the last `off` for the rest).
 */
export function encodeDirents(entries: readonly DirEntry[], size: number): { data: Buffer; count: number } {
  const names = entries.map((e) => Buffer.from(e.name));
  let total = 0, count = 0;
  for (const n of names) {
    const s = direntSize(n.length);
    if (total + s > size) break;
    total += s;
    count++;
  }
  const data = Buffer.alloc(total);
  for (let i = 0, off = 0; i < count; i++) {
    writeDirent(data, off, entries[i], names[i]);
    off += direntSize(names[i].length);
  }
  return { data, count };
}

/** A READDIRPLUS entry: the dirent plus an optional lookup answer (absent → nodeid 0, nothing counted). */
export interface DirEntryPlus extends DirEntry {
  entry?: EntryOut;
}

const ZERO_ATTR: Attr = { ino: 0, size: 0, atime: 0, mtime: 0, ctime: 0, mode: 0, nlink: 0, uid: 0, gid: 0 };

/**
 * Packs READDIRPLUS entries like encodeDirents. "." and ".." are always sent with nodeid 0, because the
 * kernel takes no lookup reference on them (fs/fuse/readdir.c skips them), so `sent[i]` tells the caller
 * whether entry i's EntryOut reached the kernel as a counted lookup.
 */
export function encodeDirentsPlus(entries: readonly DirEntryPlus[], size: number): { data: Buffer; count: number; counted: boolean[] } {
  const names = entries.map((e) => Buffer.from(e.name));
  let total = 0, count = 0;
  for (const n of names) {
    const s = direntPlusSize(n.length);
    if (total + s > size) break;
    total += s;
    count++;
  }
  const data = Buffer.alloc(total);
  const counted: boolean[] = [];
  for (let i = 0, off = 0; i < count; i++) {
    const e = entries[i];
    const dot = e.name === '.' || e.name === '..';
    const entry = !dot && e.entry && e.entry.nodeid !== 0 ? e.entry : undefined;
    encodeEntryOutInto(data, off, entry ?? { nodeid: 0, entryTtl: 0, attrTtl: 0, attr: ZERO_ATTR });
    writeDirent(data, off + ENTRY_OUT_SIZE, e, names[i]);
    counted.push(entry !== undefined);
    off += direntPlusSize(names[i].length);
  }
  return { data, count, counted };
}

/**
 * getxattr/listxattr size probing: size 0 asks only for the length (fuse_getxattr_out), a value
 * larger than `size` is ERANGE, otherwise the bytes themselves. Returns the payload or 'ERANGE'.
 */
export function encodeXattrReply(value: Buffer, size: number): Buffer | 'ERANGE' {
  if (size === 0) {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(value.length, 0);
    return b;
  }
  return value.length > size ? 'ERANGE' : value;
}

/** listxattr's value: each name NUL-terminated, concatenated. */
export function encodeXattrNames(names: readonly string[]): Buffer {
  return Buffer.concat(names.map((n) => Buffer.from(`${n}\0`)));
}

/** A NUL-terminated name inside a request body. */
export function readCString(buf: Buffer, off: number): string {
  const end = buf.indexOf(0, off);
  return buf.toString('utf8', off, end < 0 ? buf.length : end);
}

/** Name used in logs and errors, e.g. "READDIRPLUS" for 44. */
export function opcodeName(op: number): string {
  for (const [k, v] of Object.entries(Opcode)) if (v === op) return k;
  return `OP_${op}`;
}
