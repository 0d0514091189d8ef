// Fetcher behaviour with a counting in-memory source: chunked files read by range fetch only the chunks a
// read touches; open files stay readable after their objects are evicted; wrong sizes are refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { MemoryCacheStore, FsCacheStore } from '../cache/cache-store.js';
import { ObjectCache } from '../cache/object-cache.js';
import { Quota } from '../cache/quota.js';
import type { CatalogEntry, ChunkRef } from '../catalog/types.js';
import { hashBytes, objectKey, type ObjectId, type ObjectSuffix } from '../hash/object-id.js';
import { isGridboxError } from '../errors.js';
import { withTempDir } from '../testing/tmp.js';
import { Fetcher, HELD_CHUNKS_MAX } from './fetcher.js';
import type { RepositorySource } from './ports.js';
import type { ObjectOutput } from '../download/body-sinks.js';

/** Serves content by key and records what was asked for (it does not compress: the downloader's job). */
function fakeSource(objects: Map<string, Buffer>): RepositorySource & { requests: string[] } {
  const requests: string[] = [];
  return {
    requests,
    fetchFile: async () => { throw new Error('no files here'); },
    fetchObjectTo: async <O extends ObjectOutput>(id: ObjectId, suffix: ObjectSuffix, _opts: unknown, open: () => O) => {
      const key = objectKey(id, suffix);
      requests.push(key);
      const b = objects.get(key);
      if (b === undefined) throw new Error(`missing ${key}`);
      const out = open();
      out.write(b);
      return out;
    },
  };
}

function fileEntry(path: string, size: number, extra: Partial<CatalogEntry>): CatalogEntry {
  return {
    path, compression: 'zlib', hardlinkGroup: 0, linkcount: 1,
    entry: { path: path.slice(1), type: 'file', mode: 0o644, uid: 0, gid: 0, size, mtime: 0, mtimeNs: 0 }, ...extra,
  };
}

function chunked(content: Buffer, chunkSize: number, objects: Map<string, Buffer>): ChunkRef[] {
  const chunks: ChunkRef[] = [];
  for (let off = 0; off < content.length; off += chunkSize) {
    const piece = content.subarray(off, Math.min(content.length, off + chunkSize));
    const id = hashBytes('sha1', piece);
    objects.set(objectKey(id, 'P'), Buffer.from(piece));
    chunks.push({ offset: off, size: piece.length, id });
  }
  return chunks;
}

test('a range read of a chunked file fetches only the chunks it touches', async () => withTempDir(async (dir) => {
  const objects = new Map<string, Buffer>();
  const content = randomBytes(10_000);
  const chunks = chunked(content, 1000, objects);
  const source = fakeSource(objects);
  const cache = new ObjectCache(new MemoryCacheStore(), Quota.open(join(dir, 'cachedb'), 1 << 20));
  const f = new Fetcher(source, cache);
  const file = await f.open(fileEntry('/big', content.length, { chunks }));
  assert.equal(source.requests.length, 0, 'open fetches nothing');
  assert.deepEqual(await file.read(2500, 1000), content.subarray(2500, 3500));
  assert.deepEqual(source.requests, [objectKey(chunks[2].id, 'P'), objectKey(chunks[3].id, 'P')]);
  assert.deepEqual(await file.read(9990, 100), content.subarray(9990));
  assert.equal(source.requests.length, 3);
  assert.deepEqual(await file.read(0, 20_000), content);
  assert.equal(source.requests.length, 10);
  assert.equal((await file.read(10_000, 5)).length, 0);
  await file.close();
  cache.close();
}));

test('an open file stays readable after its object is evicted from the cache', async () => withTempDir(async (dir) => {
  const objects = new Map<string, Buffer>();
  const contents = Array.from({ length: 4 }, () => randomBytes(3000));
  const ids = contents.map((c) => { const id = hashBytes('sha1', c); objects.set(objectKey(id, ''), c); return id; });
  const store = await FsCacheStore.open(dir, 'shared');
  // 8000 bytes: the second and third files push the first out (down to half the quota).
  const cache = new ObjectCache(store, Quota.open(join(store.dir, 'cachedb'), 8000));
  const f = new Fetcher(fakeSource(objects), cache);
  const first = await f.open(fileEntry('/a', 3000, { id: ids[0] }));
  for (let i = 1; i < 4; i++) await (await f.open(fileEntry(`/f${i}`, 3000, { id: ids[i] }))).close();
  assert.equal(await store.has(ids[0]), false, 'the first object was evicted');
  assert.deepEqual(await first.read(0, 3000), contents[0]);
  await first.close();
  assert.equal(f.stats.openFiles, 0);
  cache.close();
}));

test('content of the wrong size is refused with STORE_SIZE_MISMATCH', async () => withTempDir(async (dir) => {
  const objects = new Map<string, Buffer>();
  const c = randomBytes(100);
  const id = hashBytes('sha1', c);
  objects.set(objectKey(id, ''), c);
  const cache = new ObjectCache(new MemoryCacheStore(), Quota.open(join(dir, 'cachedb'), 1 << 20));
  const f = new Fetcher(fakeSource(objects), cache);
  await assert.rejects(f.open(fileEntry('/x', 99, { id })), (e: unknown) => isGridboxError(e, 'STORE_SIZE_MISMATCH'));
  cache.close();
}));

test('reading a chunked file through holds a bounded number of chunk handles (fds), whatever its length', async () => withTempDir(async (dir) => {
  const objects = new Map<string, Buffer>();
  const content = randomBytes(HELD_CHUNKS_MAX * 4 * 1000);
  const chunks = chunked(content, 1000, objects);
  const store = await FsCacheStore.open(dir, 'shared');
  const cache = new ObjectCache(store, Quota.open(join(store.dir, 'cachedb'), 1 << 30));
  const f = new Fetcher(fakeSource(objects), cache);
  const fds = (): number => readdirSync('/proc/self/fd').length;
  const file = await f.open(fileEntry('/long', content.length, { chunks }));
  const before = fds();
  let peak = 0;
  const parts: Buffer[] = [];
  for (let off = 0; off < content.length; off += 1500) {
    parts.push(await file.read(off, 1500));
    peak = Math.max(peak, fds() - before);
  }
  assert.deepEqual(Buffer.concat(parts), content);
  assert.ok(peak <= HELD_CHUNKS_MAX + 2, `${peak} more fds open while reading ${chunks.length} chunks`);
  assert.deepEqual(await file.read(0, 2500), content.subarray(0, 2500), 'chunks let go are held again from the cache');
  await file.close();
  assert.ok(fds() <= before, 'close releases every chunk handle');
  cache.close();
}));
