import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GridboxError } from '../errors.js';
import { FsStore } from '../store/fs-store.js';
import { makeRawObject } from '../testing/raw-repo.js';
import { withTempDir } from '../testing/tmp.js';
import { PresentKeys } from './object-copier.js';
import { ReplicaObjectWriter } from './replica-object-writer.js';

test('ReplicaObjectWriter stores objects where FsStore reads them, leaves no temp file, and PresentKeys lists them', () => withTempDir(async (dir) => {
  const store = await FsStore.create(join(dir, 'srv', 'r.example.org'));
  const w = new ReplicaObjectWriter(store.dataDir);
  const objs = [makeRawObject(Buffer.from('one')), makeRawObject(Buffer.from('two'), 'P'), makeRawObject(Buffer.from('three'), 'C')];
  const keys = objs.map((o) => o.relPath.replace(/^data\//, '').replace('/', ''));
  for (const [i, o] of objs.entries()) w.put(keys[i], o.stored);
  for (const [i, o] of objs.entries()) {
    assert.deepEqual(await store.get(keys[i]), o.stored);
    assert.deepEqual(await readFile(join(dir, 'srv', 'r.example.org', o.relPath)), o.stored);
  }
  assert.deepEqual(await readdir(join(store.dataDir, 'txn')), []);
  const present = await PresentKeys.of(store);
  assert.equal(present.size, 3);
  for (const k of keys) assert.ok(present.has(k));
  assert.ok(!present.has(`${keys[0].slice(0, -1)}0`));
  assert.throws(() => w.put('../../escape', Buffer.from('x')), (e: unknown) => e instanceof GridboxError);
}));
