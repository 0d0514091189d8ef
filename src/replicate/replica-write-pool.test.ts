// ReplicaWritePool on a real directory: objects past the in-thread start go through the worker thread,
// land in data/XX/ with their bytes, leave nothing in txn/; a write the worker cannot do rejects STORE_IO.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GridboxError } from '../errors.js';
import { hashBytes, objectKey } from '../hash/object-id.js';
import { withTempDir } from '../testing/tmp.js';
import { ReplicaWritePool } from './replica-write-pool.js';

test('objects written in-thread and then by the worker all land in place, byte for byte', async () => withTempDir(async (dir) => {
  const data = join(dir, 'data');
  await mkdir(join(data, 'txn'), { recursive: true });
  const pool = new ReplicaWritePool(data, 5);
  try {
    const objects = Array.from({ length: 300 }, (_, i) => Buffer.from(`object ${i} `.repeat(i + 1)));
    const keys = objects.map((b) => objectKey(hashBytes('sha1', b), 'P'));
    // A slice of a larger buffer, as the bulk fetch path hands them on.
    const big = Buffer.concat(objects);
    let off = 0;
    await Promise.all(objects.map((b, i) => { const s = big.subarray(off, off + b.length); off += b.length; return pool.put(keys[i], s); }));
    for (const [i, k] of keys.entries()) assert.ok((await readFile(join(data, k.slice(0, 2), k.slice(2)))).equals(objects[i]), k);
    assert.deepEqual(await readdir(join(data, 'txn')), []);
  } finally {
    await pool.close();
  }
}));

test('a write the worker cannot do rejects with STORE_IO naming the object', async () => withTempDir(async (dir) => {
  const data = join(dir, 'data');
  await mkdir(data, { recursive: true });
  await writeFile(join(data, 'txn'), 'a file where the txn directory should be');
  const pool = new ReplicaWritePool(data, 0);
  try {
    const key = objectKey(hashBytes('sha1', Buffer.from('x')), '');
    await assert.rejects(pool.put(key, Buffer.from('x')) as Promise<void>, (e: unknown) => {
      assert.ok(e instanceof GridboxError);
      assert.equal(e.code, 'STORE_IO');
      assert.equal(e.fields.objectId, key);
      return true;
    });
  } finally {
    await pool.close();
  }
}));
