// NOTIFY_INVAL_ENTRY's bytes as the kernel reads them (fuse_notify_inval_entry: out header, then
// parent/namelen/flags, then the name with its NUL, the size checked exactly). Exercised against the
// kernel by src/mountd/automount.test.ts, where idle release depends on it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeInvalEntry } from './fuse-notify.js';

test('NOTIFY_INVAL_ENTRY is laid out as struct fuse_out_header + fuse_notify_inval_entry_out + name + NUL', () => {
  const parent = 3 * 2 ** 32 + 1;
  const b = encodeInvalEntry(parent, 'sub');
  assert.equal(b.length, 16 + 16 + 3 + 1);
  assert.equal(b.readUInt32LE(0), b.length, 'len');
  assert.equal(b.readInt32LE(4), 3, 'error carries the notify code FUSE_NOTIFY_INVAL_ENTRY');
  assert.equal(b.readBigUInt64LE(8), 0n, 'unique 0: a notification');
  assert.equal(b.readBigUInt64LE(16), BigInt(parent));
  assert.equal(b.readUInt32LE(24), 3, 'namelen without the NUL');
  assert.equal(b.readUInt32LE(28), 0, 'flags: a full invalidation');
  assert.equal(b.subarray(32).toString('latin1'), 'sub\0');
  assert.equal(encodeInvalEntry(1, 'ünï').readUInt32LE(24), Buffer.byteLength('ünï'), 'namelen counts bytes');
});
