// earlyFetched(): downloads started before the cache opens are handed to the first fetch of each file; any
// later fetch (a revision check) downloads again, and an early failure surfaces at that first fetch only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RepositorySource } from './ports.js';
import { earlyFetched } from './default-deps.js';

test('earlyFetched serves the first fetch of each file from the early download and fetches again later', async () => {
  const calls: string[] = [];
  let n = 0;
  const source = {
    fetchFile: async (rel: string) => { calls.push(rel); n++; if (rel === 'bad') throw new Error('unreachable'); return Buffer.from(`${rel}#${n}`); },
  } as unknown as RepositorySource;
  const s = earlyFetched(source, ['.cvmfspublished', '.cvmfswhitelist', 'bad']);
  assert.deepEqual(calls, ['.cvmfspublished', '.cvmfswhitelist', 'bad'], 'started at once');
  assert.equal((await s.fetchFile('.cvmfswhitelist')).toString(), '.cvmfswhitelist#2');
  assert.equal((await s.fetchFile('.cvmfspublished')).toString(), '.cvmfspublished#1');
  await assert.rejects(s.fetchFile('bad'), /unreachable/);
  assert.equal(calls.length, 3, 'no second download for the first fetches');
  assert.equal((await s.fetchFile('.cvmfspublished')).toString(), '.cvmfspublished#4', 'a later fetch downloads again');
  assert.equal((await s.fetchFile('other')).toString(), 'other#5');
});
