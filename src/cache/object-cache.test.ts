import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Downloader } from '../download/downloader.js';
import { listenSrv } from '../server/srv-handler.js';
import { withTempDir } from '../testing/tmp.js';
import { makeRawObject, pseudoRandomBytes, writeRawObjects } from '../testing/raw-repo.js';
import { hashBytes } from '../hash/object-id.js';
import { ObjectCache, WARM_MAX_BYTES } from './object-cache.js';
import { closeSync, fsyncSync, openSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { FsCacheStore } from './cache-store.js';
import { loadNativeAddon } from '../plumbing/native-addon.js';

const FQRN = 'cache.example.org';

test('a cache smaller than the data still serves every object correctly', () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const objs = await writeRawObjects(srv, FQRN, Array.from({ length: 12 }, (_, i) => makeRawObject(pseudoRandomBytes(20_000 + i * 1000, i + 7))));
  const total = objs.reduce((n, o) => n + o.content.length, 0);
  const server = await listenSrv({ srvDir: srv, onRequest: () => { requests++; } });
  let requests = 0;
  const d = new Downloader({ serverUrls: [`${server.url}${FQRN}`] });
  const cache = await ObjectCache.openDir(join(dir, 'cache'), 'shared', Math.floor(total / 3));
  try {
    for (let round = 0; round < 2; round++) {
      for (const o of objs) {
        const h = await cache.get(o.id, () => d.fetchObject(o.id, '', { expectedSize: o.content.length }));
        assert.ok((await h.readAll()).equals(o.content));
        await h.close();
      }
    }
    const st = cache.stats();
    assert.ok(st.bytes <= st.limitBytes, `usage ${st.bytes} within ${st.limitBytes}`);
    assert.ok(st.evictions > 0);
    assert.ok(requests > objs.length, 'evicted objects were downloaded again');
    // The last objects of the second round are still cached: served without a download.
    const last = objs[objs.length - 1];
    const before = requests;
    const h = await cache.get(last.id, () => { throw new Error('should be a hit'); });
    assert.ok((await h.readAll()).equals(last.content));
    await h.close();
    assert.equal(requests, before);
  } finally { cache.close(); await d.close(); await server.close(); }
}));

test('concurrent misses for one object run one download, and every caller gets its own handle', () => withTempDir(async (dir) => {
  const cache = await ObjectCache.openDir(dir, 'shared', 10_000_000);
  const bytes = pseudoRandomBytes(50_000, 3);
  const id = hashBytes('sha1', bytes);
  let fetches = 0;
  const fetch = async (): Promise<Buffer> => { fetches++; await new Promise((r) => setTimeout(r, 50)); return bytes; };
  try {
    const handles = await Promise.all(Array.from({ length: 8 }, () => cache.get(id, fetch)));
    assert.equal(fetches, 1);
    for (const h of handles) { assert.ok((await h.readAll()).equals(bytes)); await h.close(); }
    assert.equal(cache.stats().misses, 1);
    const failing = hashBytes('sha1', Buffer.from('x'));
    const errs = await Promise.allSettled(Array.from({ length: 3 }, () => cache.get(failing, async () => { fetches++; await new Promise((r) => setTimeout(r, 50)); throw new Error('offline'); })));
    assert.ok(errs.every((r) => r.status === 'rejected'));
    assert.equal(fetches, 2, 'a failed download is shared too, and not remembered');
  } finally { cache.close(); }
}));

test('a handle opened before eviction keeps reading; pinned objects survive cleanup', () => withTempDir(async (dir) => {
  const cache = await ObjectCache.openDir(dir, 'shared', 100_000);
  const mk = (n: number, seed: number): { id: ReturnType<typeof hashBytes>; b: Buffer } => { const b = pseudoRandomBytes(n, seed); return { id: hashBytes('sha1', b), b }; };
  const catalog = mk(20_000, 1);
  const open = mk(30_000, 2);
  try {
    const c = await cache.get(catalog.id, async () => catalog.b, { pin: true });
    await c.close();
    const h = await cache.get(open.id, async () => open.b);
    for (let i = 0; i < 4; i++) { const o = mk(30_000, 10 + i); await (await cache.get(o.id, async () => o.b)).close(); }
    assert.equal(await cache.store.has(open.id), false, 'evicted');
    assert.ok((await h.readAll()).equals(open.b), 'but the open handle still reads it');
    await h.close();
    assert.equal(await cache.store.has(catalog.id), true, 'the pinned catalog stayed');
    cache.unpin(catalog.id);
    for (let i = 0; i < 4; i++) { const o = mk(30_000, 20 + i); await (await cache.get(o.id, async () => o.b)).close(); }
    assert.equal(await cache.store.has(catalog.id), false, 'unpinned, it is evicted like any other');
  } finally { cache.close(); }
}));

test('warm reads cached objects ahead without downloading or counting an access', () => withTempDir(async (dir) => {
  const objs = [0, 1, 2].map((i) => makeRawObject(pseudoRandomBytes(3000 + i, i + 1)));
  const cache = await ObjectCache.openDir(join(dir, 'cache'), 'shared', 1 << 20);
  try {
    for (const o of objs.slice(0, 2)) await (await cache.insert(o.id, o.content)).close();
    const order = cache.quota.lruOrder();
    const before = cache.stats();
    cache.warm(objs.map((o) => o.id)); // the third is not cached: skipped, never fetched
    for (let i = 0; i < 200 && cache.stats().warmed < 2; i++) await new Promise((r) => setTimeout(r, 5));
    const after = cache.stats();
    assert.equal(after.warmed, 2);
    assert.equal(after.hits, before.hits);
    assert.equal(after.misses, before.misses);
    assert.deepEqual(cache.quota.lruOrder(), order);
    assert.equal(await cache.lookup(objs[2].id), null);
    assert.equal(after.warmedBytes, 3000 + 3001, 'whole small objects');
  } finally { cache.close(); }
}));

test('warm reads the first MiB of a large object by default, all of it when asked', () => withTempDir(async (dir) => {
  const big = makeRawObject(pseudoRandomBytes(3 * 1048576 + 5, 7));
  const cache = await ObjectCache.openDir(join(dir, 'cache'), 'shared', 64 << 20);
  try {
    await (await cache.insert(big.id, big.content)).close();
    const settled = async (n: number): Promise<void> => {
      for (let i = 0; i < 400 && cache.stats().warmed < n; i++) await new Promise((r) => setTimeout(r, 5));
    };
    cache.warm([big.id]);
    await settled(1);
    assert.equal(cache.stats().warmedBytes, WARM_MAX_BYTES);
    cache.warm([big.id], big.content.length);
    await settled(2);
    assert.equal(cache.stats().warmedBytes, WARM_MAX_BYTES + big.content.length);
  } finally { cache.close(); }
}));

test('warm has the kernel read cached files into the page cache (posix_fadvise through the addon), as fincore shows', () => withTempDir(async (dir) => {
  assert.ok(loadNativeAddon()?.willNeed, 'the gridbox-fuse-ioctl addon is built with willNeed (npm ci builds it)');
  const objs = [makeRawObject(pseudoRandomBytes(2 * 1048576, 11)), makeRawObject(pseudoRandomBytes(600_000, 12))];
  const cache = await ObjectCache.openDir(join(dir, 'cache'), 'shared', 64 << 20);
  try {
    const store = cache.store as FsCacheStore;
    const resident = (path: string): number => {
      const r = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return Number(r.stdout.trim());
    };
    for (const o of objs) {
      await (await cache.insert(o.id, o.content)).close();
      const path = store.pathOf(o.id);
      // Written back, then dropped from the page cache (GNU dd's iflag=nocache is posix_fadvise DONTNEED).
      const fd = openSync(path, 'r');
      fsyncSync(fd);
      closeSync(fd);
      assert.equal(spawnSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']).status, 0);
      assert.ok(resident(path) < o.content.length / 2, 'dropped before the warm');
    }
    assert.equal(cache.warm(objs.map((o) => o.id), 4 << 20), 2);
    for (let i = 0; i < 400 && cache.stats().warmed < 2; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(cache.stats().warmedBytes, objs[0].content.length + objs[1].content.length);
    for (const o of objs) {
      const path = store.pathOf(o.id);
      // The reads run in the background: wait for them.
      for (let i = 0; i < 200 && resident(path) < o.content.length; i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(resident(path) >= o.content.length, `${path} is in the page cache after the warm`);
    }
  } finally { cache.close(); }
}));
