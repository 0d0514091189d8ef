// ObjectCopier and Limiter against a fake source: bounded concurrency, one fetch per object, present
// objects skipped, download failures re-labelled with the object key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GridboxError } from '../errors.js';
import { hashBytes, objectKey, type ObjectId } from '../hash/object-id.js';
import { MemoryStore } from '../store/memory-store.js';
import { Limiter, ObjectCopier, objectFetchError, type SnapshotSource } from './object-copier.js';

function fakeSource(objects: Map<string, Buffer>, delayMs: number) {
  const stats = { inFlight: 0, maxInFlight: 0, fetches: [] as string[] };
  const source: SnapshotSource = {
    async fetchFile() { throw new Error('not used'); },
    async fetchObject(id, suffix) {
      const key = objectKey(id, suffix);
      stats.fetches.push(key);
      stats.inFlight++;
      stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
      await new Promise((r) => setTimeout(r, delayMs));
      stats.inFlight--;
      const b = objects.get(key);
      if (b === undefined) throw new GridboxError('DOWNLOAD_HOST', `404 ${key}`, { status: 404 });
      return b;
    },
  };
  return { source, stats };
}

test('copy() keeps at most the limit in flight, fetches each object once and skips present ones', async () => {
  const objects = new Map<string, Buffer>();
  const ids: ObjectId[] = [];
  for (let i = 0; i < 20; i++) {
    const bytes = Buffer.from(`object ${i}`);
    const id = hashBytes('sha1', bytes);
    ids.push(id);
    objects.set(objectKey(id, 'P'), bytes);
  }
  const { source, stats } = fakeSource(objects, 5);
  const store = new MemoryStore();
  await store.put(objectKey(ids[0], 'P'), objects.get(objectKey(ids[0], 'P'))!);
  const copier = new ObjectCopier(source, store, new Limiter(3));
  await Promise.all([...ids, ...ids].map((id) => copier.copy(id, 'P')));
  assert.equal(stats.maxInFlight, 3);
  assert.equal(stats.fetches.length, 19);
  assert.equal(new Set(stats.fetches).size, 19);
  assert.deepEqual({ objects: copier.stats.objects, present: copier.stats.present }, { objects: 19, present: 1 });
  for (const id of ids) assert.ok(await store.has(objectKey(id, 'P')));
});

test('a stopped limiter fails tasks not yet started with the stop reason and lets running ones finish', async () => {
  const limiter = new Limiter(1);
  const reason = new GridboxError('STORE_HASH_MISMATCH', 'first failure');
  let finished = false;
  const running = limiter.run(async () => { await new Promise((r) => setTimeout(r, 10)); finished = true; });
  const waiting = limiter.run(async () => 'should not run');
  limiter.stop(reason);
  await running;
  assert.ok(finished);
  await assert.rejects(waiting, (e) => e === reason);
});

test('objectFetchError names the object and keeps the innermost hash mismatch or 404', () => {
  const key = `${'ab'.repeat(20)}C`;
  const mismatch = new GridboxError('STORE_HASH_MISMATCH', 'Cannot verify object');
  const wrapped = new GridboxError('DOWNLOAD_ALL_FAILED', 'every host failed', { cause: new GridboxError('DOWNLOAD_HOST', 'all proxies', { cause: mismatch }) });
  const e1 = objectFetchError(wrapped, key);
  assert.equal(e1.code, 'STORE_HASH_MISMATCH');
  assert.equal(e1.fields.objectId, key);
  assert.match(e1.message, /abababab/);
  const e2 = objectFetchError(new GridboxError('DOWNLOAD_ALL_FAILED', 'x', { cause: new GridboxError('DOWNLOAD_HOST', 'HTTP 404', { status: 404 }) }), key);
  assert.equal(e2.code, 'STORE_MISSING');
  const e3 = objectFetchError(new GridboxError('DOWNLOAD_ALL_FAILED', 'x', { cause: new GridboxError('DOWNLOAD_HOST', 'HTTP 503', { status: 503 }) }), key);
  assert.equal(e3.code, 'DOWNLOAD_ALL_FAILED');
  assert.equal(e3.fields.objectId, key);
});
