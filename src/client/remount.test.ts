// What a (re)mount asks the server, counted at the loopback server of the cvmfs_server fixture: the
// manifest and the whitelist once each per session start, nothing else on a cache that holds the rest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openFixtureClient, setupFixture } from '../testing/legacy-fixture.js';

test('a mount fetches .cvmfspublished and .cvmfswhitelist once each; a remount on the full cache fetches only those two', async () => {
  const fx = await setupFixture();
  const seen: string[] = [];
  fx.server.server.prependListener('request', (req) => { seen.push((req.url ?? '').split('?')[0]); });
  const cacheBase = join(fx.tmp, 'cache');
  const count = (suffix: string): number => seen.filter((u) => u.endsWith(suffix)).length;
  try {
    for (let round = 0; round < 3; round++) {
      seen.length = 0;
      const c = await openFixtureClient(fx, cacheBase);
      try {
        await c.listing('');
      } finally {
        await c.close();
      }
      assert.equal(count('/.cvmfspublished'), 1, `round ${round}: ${seen.join(', ')}`);
      assert.equal(count('/.cvmfswhitelist'), 1, `round ${round}: ${seen.join(', ')}`);
      if (round > 0) assert.deepEqual(seen.filter((u) => u.includes('/data/')), [], 'certificate and catalogs come from the cache');
    }
  } finally {
    await fx.close();
  }
});
