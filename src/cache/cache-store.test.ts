import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hashBytes, type ObjectId } from '../hash/object-id.js';
import { withTempDir } from '../testing/tmp.js';
import { FsCacheStore, MemoryCacheStore, type CacheStore } from './cache-store.js';

const obj = (text: string): { id: ObjectId; bytes: Buffer } => { const bytes = Buffer.from(text); return { id: hashBytes('sha1', bytes), bytes }; };

/** The contract every CacheStore keeps; run once per implementation. */
function conformance(name: string, make: (dir: string) => Promise<CacheStore>): void {
  test(`${name}: put then open returns the same bytes; absent objects open as null`, () => withTempDir(async (dir) => {
    const s = await make(dir);
    const a = obj('alpha'.repeat(1000));
    assert.equal(await s.open(a.id), null);
    assert.equal(await s.has(a.id), false);
    await s.put(a.id, a.bytes);
    assert.equal(await s.has(a.id), true);
    const h = await s.open(a.id);
    assert.ok(h);
    assert.equal(h.size, a.bytes.length);
    assert.deepEqual(await h.readAll(), a.bytes);
    const part = Buffer.alloc(10);
    assert.equal(await h.read(part, 0, 10, 5), 10);
    assert.deepEqual(part, a.bytes.subarray(5, 15));
    assert.equal(await h.read(part, 0, 10, a.bytes.length), 0);
    await h.close();
  }));

  test(`${name}: a second put of one id is harmless and list() names each object once`, () => withTempDir(async (dir) => {
    const s = await make(dir);
    const objs = ['a', 'b', 'c'].map(obj);
    for (const o of objs) await s.put(o.id, o.bytes);
    await s.put(objs[0].id, objs[0].bytes);
    const listed: string[] = [];
    for await (const id of s.list()) listed.push(id.hex);
    assert.deepEqual(listed.sort(), objs.map((o) => o.id.hex).sort());
  }));

  test(`${name}: an open handle stays readable after remove`, () => withTempDir(async (dir) => {
    const s = await make(dir);
    const a = obj('still here'.repeat(500));
    await s.put(a.id, a.bytes);
    const h = await s.open(a.id);
    await s.remove(a.id);
    await s.remove(a.id);
    assert.equal(await s.open(a.id), null);
    assert.deepEqual(await h!.readAll(), a.bytes);
    await h!.close();
  }));

  test(`${name}: concurrent puts of many objects all land whole`, () => withTempDir(async (dir) => {
    const s = await make(dir);
    const objs = Array.from({ length: 40 }, (_, i) => obj(`object ${i} `.repeat(100 + i)));
    await Promise.all(objs.flatMap((o) => [s.put(o.id, o.bytes), s.put(o.id, o.bytes)]));
    for (const o of objs) {
      const h = await s.open(o.id);
      assert.deepEqual(await h!.readAll(), o.bytes);
      await h!.close();
    }
  }));
}

conformance('FsCacheStore', (dir) => FsCacheStore.open(dir, 'shared'));
conformance('MemoryCacheStore', async () => new MemoryCacheStore());

test('FsCacheStore lays objects out as <base>/<name>/XX/rest and ignores then cleans a crashed writer\'s temp file', () => withTempDir(async (dir) => {
  const s1 = await FsCacheStore.open(dir, 'repo.example.org');
  const a = obj('layout');
  await s1.put(a.id, a.bytes);
  assert.deepEqual(await readdir(join(dir, 'repo.example.org', a.id.hex.slice(0, 2))), [a.id.hex.slice(2)]);
  // A writer killed mid-write leaves a partial temp file named after its (now dead) pid.
  const deadPid = spawnSync('true').pid;
  const b = obj('never committed');
  await writeFile(join(s1.dir, 'txn', `${deadPid}.0123456789ab`), b.bytes.subarray(0, 4));
  await writeFile(join(s1.dir, 'txn', `${process.pid}.live`), 'mine, in progress');
  assert.equal(await s1.open(b.id), null, 'a temp file is never an object');
  const s2 = await FsCacheStore.open(dir, 'repo.example.org');
  assert.deepEqual(await readdir(join(s2.dir, 'txn')), [`${process.pid}.live`], 'only the dead writer\'s leftover is removed');
  assert.equal(await s2.has(a.id), true);
  await assert.rejects(FsCacheStore.open(dir, '../x'), /Bad cache name/);
}));
