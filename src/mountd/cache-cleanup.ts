// cvmfs_talk's `cleanup <MB>`: evicts least recently used, unpinned objects from a cache directory until it
// holds at most the target. Works on the shared ledger (cachedb) beside any running mount, as a second
// instance: catalogs a live mount pins are skipped, and open readers keep their unlinked files.
import { parseObjectId } from '../hash/object-id.js';
import { ObjectCache } from '../cache/object-cache.js';

export interface CleanupResult { before: number; after: number; evicted: number; pinnedBytes: number }

export async function cleanupCache(base: string, name: string, targetBytes: number): Promise<CleanupResult> {
  // The limit only matters for inserts, which cleanup never does.
  const cache = await ObjectCache.openDir(base, name, Number.MAX_SAFE_INTEGER);
  try {
    const before = cache.quota.usage().bytes;
    let bytes = before, evicted = 0, sinceCheck = 0;
    for (const key of cache.quota.lruOrder()) {
      if (bytes <= targetBytes) break;
      if (cache.quota.isPinned(key)) continue;
      cache.quota.remove(key);
      await cache.store.remove(parseObjectId(key));
      evicted++;
      // The ledger knows sizes, one sum per batch (a sum per object would be quadratic in the cache size).
      if (++sinceCheck >= 16) { bytes = cache.quota.usage().bytes; sinceCheck = 0; }
    }
    bytes = cache.quota.usage().bytes;
    return { before, after: bytes, evicted, pinnedBytes: cache.quota.usage().pinnedBytes };
  } finally {
    cache.close();
  }
}
