import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import Database from 'better-sqlite3';
import { INSERT_FLUSH_MS, Quota } from './quota.js';

test('Quota evicts least recently used objects down to half the limit', () => withTempDir(async (dir) => {
  const q = Quota.open(join(dir, 'cachedb'), 1000);
  try {
    for (const k of ['a', 'b', 'c', 'd']) assert.deepEqual(q.insert(k, 200), { admitted: true, evicted: [] });
    assert.ok(q.touch('a'), 'a is now the most recently used');
    assert.deepEqual(q.lruOrder(), ['b', 'c', 'd', 'a']);
    const r = q.insert('e', 300); // 800 + 300 > 1000: clean to <= 500 first
    assert.equal(r.admitted, true);
    assert.deepEqual(r.evicted, ['b', 'c']);
    assert.deepEqual(q.lruOrder(), ['d', 'a', 'e']);
    assert.equal(q.usage().bytes, 700);
    assert.deepEqual(q.insert('huge', 501), { admitted: false, evicted: [] }, 'objects above half the limit are not cached');
    assert.equal(q.touch('nope'), false);
  } finally { q.close(); }
}));

test('Quota never evicts pinned objects, and pins end with their owner', () => withTempDir(async (dir) => {
  const db = join(dir, 'cachedb');
  const q1 = Quota.open(db, 1000);
  const q2 = Quota.open(db, 1000); // a second mount sharing the cache
  try {
    q1.insert('catalog', 300, { pin: true });
    q2.insert('x', 300);
    q2.insert('y', 300);
    const r = q2.insert('z', 300);
    assert.deepEqual(r.evicted, ['x', 'y']);
    assert.ok(q2.has('catalog'));
    assert.ok(q2.isPinned('catalog'), 'pins are visible to every mount of the cache');
    assert.equal(q2.usage().pinnedBytes, 300);
    // Pinned data filling the cache leaves no room: not admitted rather than evicting a pin.
    q1.insert('catalog2', 400, { pin: true });
    assert.equal(q2.insert('w', 400).admitted, false);
    assert.ok(q2.has('catalog') && q2.has('catalog2'));
    q1.close();
    assert.equal(q2.isPinned('catalog'), false, 'closing the owner drops its pins');
    const r2 = q2.insert('v', 400);
    assert.equal(r2.admitted, true);
    assert.ok(r2.evicted.includes('catalog'));
  } finally { q1.close(); q2.close(); }
}));

test('Quota persists the LRU order across reopen', () => withTempDir(async (dir) => {
  const db = join(dir, 'cachedb');
  const q1 = Quota.open(db, 10_000);
  q1.insert('a', 10); q1.insert('b', 10); q1.touch('a');
  q1.close();
  const q2 = Quota.open(db, 10_000);
  try {
    assert.deepEqual(q2.lruOrder(), ['b', 'a']);
    assert.equal(q2.usage().objects, 2);
  } finally { q2.close(); }
}));

test('Quota keeps accesses in memory until a flush, an insert or close writes them', () => withTempDir(async (dir) => {
  const db = join(dir, 'cachedb');
  const q1 = Quota.open(db, 1000);
  const q2 = Quota.open(db, 1000);
  try {
    for (const k of ['a', 'b', 'c']) q1.insert(k, 100);
    q1.flush(); // the inserts themselves are held too (see below)
    assert.ok(q1.touch('a'));
    assert.deepEqual(q2.lruOrder(), ['a', 'b', 'c'], 'not written yet: another mount sees the old order');
    q1.flush();
    assert.deepEqual(q2.lruOrder(), ['b', 'c', 'a']);
    assert.ok(q1.touch('b'));
    q1.insert('d', 100); // held, like the access before it; both written in the order they happened
    q1.flush();
    assert.deepEqual(q2.lruOrder(), ['c', 'a', 'b', 'd']);
    assert.equal(q2.touch('d'), false, 'a key inserted by another mount is unknown here until adopted');
    assert.equal(q2.insert('d', 100).admitted, true);
    assert.ok(q2.touch('d'));
  } finally { q1.close(); q2.close(); }
}));

test('Quota keeps the byte total across mounts and adopts a ledger written without it', () => withTempDir(async (dir) => {
  const path = join(dir, 'cachedb');
  const old = new Database(path);
  old.exec(`CREATE TABLE objects (key TEXT PRIMARY KEY, size INTEGER NOT NULL, acseq INTEGER NOT NULL);
    INSERT INTO objects VALUES ('x', 300, 1), ('y', 200, 2);`);
  old.close();
  const q1 = Quota.open(path, 1000);
  const q2 = Quota.open(path, 1000);
  try {
    assert.equal(q1.usage().bytes, 500);
    q2.insert('z', 400);
    q2.flush();
    assert.equal(q1.usage().bytes, 900);
    const r = q1.insert('w', 200); // 1100 > 1000: evict x, y down to <= 500
    assert.deepEqual(r.evicted, ['x', 'y']);
    assert.equal(q2.usage().bytes, 600);
    q2.remove('z');
    assert.equal(q1.usage().bytes, 200);
  } finally { q1.close(); q2.close(); }
}));

test('Quota holds inserts below 90% of the limit in memory: counted by their own mount at once, by others after a flush', () => withTempDir(async (dir) => {
  const db = join(dir, 'cachedb');
  const q1 = Quota.open(db, 1000);
  const q2 = Quota.open(db, 1000);
  try {
    assert.deepEqual(q1.insert('a', 400), { admitted: true, evicted: [] });
    assert.deepEqual(q1.insert('b', 400), { admitted: true, evicted: [] });
    assert.ok(q1.has('a') && q1.knows('b') && q1.touch('a'));
    assert.equal(q2.has('a'), false, 'held: not in the ledger yet');
    assert.deepEqual(q2.lruOrder(), []);
    // 800 held + 300 would pass the limit: decided in a transaction, which writes the held ones first and evicts.
    const r = q1.insert('c', 300);
    assert.deepEqual(r, { admitted: true, evicted: ['b'] }, 'b first: a was touched after b was inserted; down to half the limit');
    assert.deepEqual(q2.lruOrder(), ['a', 'c']);
    // Other mounts' written inserts count at once: with q2's 'd' the ledger holds 900, so q1's next insert is
    // decided in a transaction and evicts, though q1 itself wrote only 700.
    assert.deepEqual(q2.insert('d', 200), { admitted: true, evicted: [] }); // 700 + 200 <= 900: held by q2
    q2.flush();
    assert.deepEqual(q1.insert('e', 200), { admitted: true, evicted: ['a'] });
    assert.deepEqual(q2.lruOrder(), ['c', 'd', 'e']);
    // A held insert is written by close, and by the timer when nothing else writes it.
    q1.insert('f', 10);
    q1.close();
    assert.ok(q2.has('f'));
    q2.insert('g', 10);
    assert.equal(Quota.open(db, 1000).has('g'), false);
    await new Promise((r) => setTimeout(r, INSERT_FLUSH_MS + 100));
    const q3 = Quota.open(db, 1000);
    assert.ok(q3.has('g'), 'written within INSERT_FLUSH_MS');
    q3.close();
  } finally { q1.close(); q2.close(); }
}));

test('Quota closed for an exit writes what is pending and drops its pins, leaving the checkpoint to the next opener', () => withTempDir(async (dir) => {
  const db = join(dir, 'cachedb');
  const q = Quota.open(db, 1000);
  q.insert('a', 100);
  q.insert('b', 100, { pin: true }); // held in memory until a flush
  q.touch('a');
  q.close({ exiting: true });
  q.close({ exiting: true }); // a second close is harmless
  assert.equal(q.touch('b'), true, 'still answers from memory');
  const next = Quota.open(db, 1000); // another process's view (WAL read by the new connection)
  try {
    assert.deepEqual(next.lruOrder(), ['b', 'a'], 'the held insert and the later access were written');
    assert.equal(next.isPinned('b'), false, 'its pins are gone');
  } finally { next.close(); }
}));
