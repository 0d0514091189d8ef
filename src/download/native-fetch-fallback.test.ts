// Its own file (so its own process): the addon loads libcurl once per process, and this test makes that fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FsCacheStore } from '../cache/cache-store.js';
import { listenSrv } from '../server/srv-handler.js';
import { withTempDir } from '../testing/tmp.js';
import { makeRawObject, pseudoRandomBytes, writeRawObjects } from '../testing/raw-repo.js';
import { Downloader } from './downloader.js';
import { NativeFetcher } from './native-fetch.js';

process.env.GRIDBOX_LIBCURL = 'libgridbox-no-such-curl.so.4';

test('without libcurl the native fetcher reports itself unavailable and objects come through Node\'s http', () => withTempDir(async (dir) => {
  const probe = NativeFetcher.create();
  assert.ok(probe !== undefined, 'the gridbox-object-fetch addon is built (npm ci builds it)');
  assert.equal(await probe.ready, false, 'libcurl cannot be loaded under that name');
  probe.close();
  const srv = join(dir, 'srv');
  const objs = await writeRawObjects(srv, 'x.example.org', [makeRawObject(pseudoRandomBytes(90_000, 1)), makeRawObject(pseudoRandomBytes(5_000, 2))]);
  const good = await listenSrv({ srvDir: srv });
  const d = new Downloader({ serverUrls: [`${good.url}x.example.org`], nativeFetch: true });
  const store = await FsCacheStore.open(dir, 'c');
  try {
    assert.equal(await d.nativeReady(), false);
    for (const o of objs) {
      const w = await d.fetchObjectTo(o.id, '', { expectedSize: o.content.length }, () => store.begin(o.id));
      const h = await w.commit();
      assert.ok((await h.readAll()).equals(o.content));
      await h.close();
    }
    const c = d.status().counters;
    assert.equal(c.nativeRequests, 0);
    assert.equal(c.requests, 2);
    assert.equal(c.fetched, 2);
  } finally { await d.close(); await good.close(); }
}));
