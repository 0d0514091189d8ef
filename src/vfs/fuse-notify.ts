// FUSE notifications the filesystem sends the kernel unasked (unique 0, the notify code in the error
// field): here only NOTIFY_INVAL_ENTRY, which drops a name and the unused dentries below it from the
// kernel's cache. Written through the threadpool, never synchronously: the kernel takes the parent's
// inode lock, which a LOOKUP waiting for this very process may hold.
import { write } from 'node:fs';

const NOTIFY_INVAL_ENTRY = 3;
const OUT_HEADER_SIZE = 16;

/** The bytes of a NOTIFY_INVAL_ENTRY for `name` in directory `parent`. */
export function encodeInvalEntry(parent: number, name: string): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(OUT_HEADER_SIZE + 16 + n.length + 1);
  b.writeUInt32LE(b.length, 0);
  b.writeInt32LE(NOTIFY_INVAL_ENTRY, 4);
  // unique stays 0: a notification, not a reply.
  b.writeBigUInt64LE(BigInt(parent), OUT_HEADER_SIZE);
  b.writeUInt32LE(n.length, OUT_HEADER_SIZE + 8);
  b.writeUInt32LE(0, OUT_HEADER_SIZE + 12); // flags: a full invalidation, not FUSE_EXPIRE_ONLY
  n.copy(b, OUT_HEADER_SIZE + 16);
  return b;
}

/** Tells the kernel to forget `name` under `parent`; fails with the kernel's errno (ENOENT: not cached). */
export function notifyInvalEntry(fd: number, parent: number, name: string): Promise<void> {
  const b = encodeInvalEntry(parent, name);
  return new Promise((ok, fail) => { write(fd, b, 0, b.length, null, (e) => (e ? fail(e) : ok())); });
}
