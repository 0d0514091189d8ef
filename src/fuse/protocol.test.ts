// Codec checks against the uapi struct layouts, INIT negotiation, dirent packing and errno mapping; no mount.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { GridboxError } from '../errors.js';
import {
  type Attr, ATTR_OUT_SIZE, ENTRY_OUT_SIZE, InitFlag, OPEN_OUT_SIZE, OpenFlag, STATFS_OUT_SIZE, decodeAttr,
  decodeInHeader, direntSize, encodeAttrOut, encodeDirents, encodeDirentsPlus, encodeEntryOut, encodeInitOut,
  encodeOpenOut, encodeStatfs, encodeXattrNames, encodeXattrReply, negotiateInit, readU64,
} from './protocol.js';
import { errnoOf } from './session.js';

const attr: Attr = { ino: 2 ** 40 + 7, size: 5_000_000_000, atime: 1.5, mtime: 1_700_000_000.25, ctime: 3, mode: 0o100644, nlink: 2, uid: 1000, gid: 100 };

test('struct sizes match include/uapi/linux/fuse.h', () => {
  assert.equal(encodeEntryOut({ nodeid: 2, entryTtl: 1, attrTtl: 1, attr }).length, 128);
  assert.equal(ENTRY_OUT_SIZE, 128);
  assert.equal(encodeAttrOut({ attrTtl: 1, attr }).length, ATTR_OUT_SIZE);
  assert.equal(ATTR_OUT_SIZE, 104);
  assert.equal(encodeOpenOut({ fh: 1 }).length, OPEN_OUT_SIZE);
  assert.equal(OPEN_OUT_SIZE, 16);
  assert.equal(encodeStatfs({ blocks: 1, bfree: 0, bavail: 0, files: 1, ffree: 0, bsize: 4096, namelen: 255 }).length, STATFS_OUT_SIZE);
  assert.equal(STATFS_OUT_SIZE, 80);
});

test('entry_out puts nodeid, generation, split ttls and attr at their offsets', () => {
  const b = encodeEntryOut({ nodeid: 42, generation: 3, entryTtl: 2.5, attrTtl: 60, attr });
  assert.equal(readU64(b, 0), 42);
  assert.equal(readU64(b, 8), 3);
  assert.equal(readU64(b, 16), 2);
  assert.equal(readU64(b, 24), 60);
  assert.equal(b.readUInt32LE(32), 500_000_000);
  assert.equal(b.readUInt32LE(36), 0);
  const back = decodeAttr(b, 40);
  assert.equal(back.ino, attr.ino);
  assert.equal(back.size, attr.size);
  assert.equal(back.blocks, Math.ceil(attr.size / 512));
  assert.equal(back.mode, 0o100644);
  assert.equal(back.nlink, 2);
  assert.equal(back.uid, 1000);
  assert.ok(Math.abs(back.mtime - attr.mtime) < 1e-6);
  assert.equal(b.readUInt32LE(40 + 52), 250_000_000, 'mtimensec');
});

test('a negative or non-finite ttl encodes as 0', () => {
  const b = encodeEntryOut({ nodeid: 0, entryTtl: -1, attrTtl: Number.POSITIVE_INFINITY, attr });
  assert.equal(readU64(b, 16), 0);
  assert.equal(readU64(b, 24), 0);
});

test('in_header decodes the fields the kernel sends', () => {
  const b = Buffer.alloc(48);
  b.writeUInt32LE(48, 0); b.writeUInt32LE(1, 4); b.writeBigUInt64LE(0x1234_5678_9abcn, 8);
  b.writeBigUInt64LE(77n, 16); b.writeUInt32LE(1000, 24); b.writeUInt32LE(100, 28); b.writeUInt32LE(4242, 32);
  assert.deepEqual(decodeInHeader(b), { len: 48, opcode: 1, unique: 0x1234_5678_9abcn, nodeid: 77, uid: 1000, gid: 100, pid: 4242 });
  assert.throws(() => decodeInHeader(Buffer.alloc(39)), RangeError);
});

test('dirents are 24 bytes plus the name, padded to 8, and stop at the size given', () => {
  assert.equal(direntSize(1), 32);
  assert.equal(direntSize(8), 32);
  assert.equal(direntSize(9), 40);
  const entries = ['a', 'bbbbbbbbb', 'cc'].map((name, i) => ({ name, ino: 10 + i, mode: 0o100644, off: i + 1 }));
  const all = encodeDirents(entries, 4096);
  assert.equal(all.count, 3);
  assert.equal(all.data.length, 32 + 40 + 32);
  assert.equal(readU64(all.data, 32), 11, 'second entry starts at the aligned offset');
  assert.equal(readU64(all.data, 32 + 8), 2, 'off');
  assert.equal(all.data.readUInt32LE(32 + 16), 9, 'namelen');
  assert.equal(all.data.readUInt32LE(32 + 20), 8, 'DT_REG');
  assert.equal(all.data.toString('utf8', 32 + 24, 32 + 33), 'bbbbbbbbb');
  assert.equal(all.data.subarray(32 + 33, 72).every((x) => x === 0), true, 'padding is zero');
  const part = encodeDirents(entries, 71);
  assert.equal(part.count, 1);
  assert.equal(part.data.length, 32);
});

test('readdirplus sends "." and ".." with nodeid 0 and counts only entries that fit', () => {
  const e = (nodeid: number) => ({ nodeid, entryTtl: 1, attrTtl: 1, attr: { ...attr, ino: nodeid } });
  const entries = [
    { name: '.', ino: 1, mode: 0o40755, off: 1, entry: e(1) },
    { name: '..', ino: 1, mode: 0o40755, off: 2 },
    { name: 'x', ino: 5, mode: 0o100644, off: 3, entry: e(5) },
    { name: 'y', ino: 6, mode: 0o100644, off: 4, entry: e(6) },
  ];
  const r = encodeDirentsPlus(entries, 3 * 160);
  assert.equal(r.count, 3);
  assert.deepEqual(r.counted, [false, false, true]);
  assert.equal(r.data.length, 3 * 160, 'direntplus = 128 + 24 + name, aligned to 8');
  assert.equal(readU64(r.data, 0), 0, '"." has nodeid 0');
  assert.equal(readU64(r.data, 320), 5);
  assert.equal(readU64(r.data, 320 + 128), 5, 'dirent ino after the entry_out');
});

test('INIT grants only flags the kernel offered and caps readahead', () => {
  const offered = { major: 7, minor: 45, maxReadahead: 131072, flags: InitFlag.ASYNC_READ | InitFlag.DO_READDIRPLUS | InitFlag.MAX_PAGES };
  const o = negotiateInit(offered, { flags: InitFlag.ASYNC_READ | InitFlag.MAX_PAGES | InitFlag.CACHE_SYMLINKS, maxReadahead: 1 << 20, maxPages: 256, maxBackground: 64, congestionThreshold: 48, maxWrite: 4096, timeGran: 1 });
  assert.equal(o.minor, 31);
  assert.equal(o.flags, InitFlag.ASYNC_READ | InitFlag.MAX_PAGES);
  assert.equal(o.maxReadahead, 131072);
  assert.equal(o.maxPages, 256);
  const b = encodeInitOut(o);
  assert.equal(b.length, 64);
  assert.equal(b.readUInt32LE(0), 7);
  assert.equal(b.readUInt32LE(12), o.flags);
  assert.equal(b.readUInt16LE(28), 256);
  const old = negotiateInit({ ...offered, minor: 22, flags: InitFlag.ASYNC_READ }, { flags: InitFlag.ASYNC_READ | InitFlag.MAX_PAGES, maxReadahead: 1 << 20, maxPages: 256, maxBackground: 64, congestionThreshold: 48, maxWrite: 4096, timeGran: 1 });
  assert.equal(old.maxPages, 0, 'no max_pages unless MAX_PAGES was granted');
  assert.equal(encodeInitOut(old).length, 24, 'compat init_out for minor < 23');
});

test('open flags map to FOPEN bits', () => {
  const b = encodeOpenOut({ fh: 9, keepCache: true, cacheDir: true });
  assert.equal(readU64(b, 0), 9);
  assert.equal(b.readUInt32LE(8), OpenFlag.KEEP_CACHE | OpenFlag.CACHE_DIR);
});

test('xattr replies follow the size-probe protocol', () => {
  const v = Buffer.from('abcdef');
  const probe = encodeXattrReply(v, 0);
  assert.ok(probe !== 'ERANGE');
  assert.equal(probe.length, 8);
  assert.equal(probe.readUInt32LE(0), 6);
  assert.equal(encodeXattrReply(v, 5), 'ERANGE');
  assert.equal(encodeXattrReply(v, 6), v);
  assert.equal(encodeXattrNames(['user.a', 'user.bc']).toString('latin1'), 'user.a\0user.bc\0');
});

test('handler failures map to errno: numbers, errno-named codes, GridboxError via edgeOf', () => {
  assert.deepEqual(errnoOf(constants.errno.ENOENT), { errno: constants.errno.ENOENT, log: false });
  assert.deepEqual(errnoOf(Object.assign(new Error('x'), { code: 'ENODATA' })), { errno: constants.errno.ENODATA, log: false });
  assert.deepEqual(errnoOf(new GridboxError('NOT_FOUND', 'Cannot find "x"')), { errno: constants.errno.ENOENT, log: false });
  assert.deepEqual(errnoOf(new GridboxError('STORE_HASH_MISMATCH', 'Cannot verify')), { errno: constants.errno.EIO, log: true });
  assert.deepEqual(errnoOf(new Error('boom')), { errno: constants.errno.EIO, log: true });
  assert.deepEqual(errnoOf({ code: 'NOT_AN_ERRNO' }), { errno: constants.errno.EIO, log: true });
});
