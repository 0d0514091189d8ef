// One conformance suite for every ObjectStore (fs and memory), plus object-io's verify-before-use rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isGridboxError } from '../errors.js';
import { hashBytes, objectKey, parseObjectId } from '../hash/object-id.js';
import { makeTempDir } from '../testing/tmp.js';
import { rm } from 'node:fs/promises';
import { FsStore } from './fs-store.js';
import { MemoryStore } from './memory-store.js';
import type { ObjectStore } from './object-store.js';
import { decodeObjectBytes, readObject, verifyObjectBytes, writeObject, createObjectVerifier } from './object-io.js';

interface StoreHarness {
  store: ObjectStore;
  /** Replace an object's stored bytes behind the store's back. */
  corrupt(key: string, bytes: Uint8Array): Promise<void>;
  cleanup(): Promise<void>;
}

const implementations: Record<string, () => Promise<StoreHarness>> = {
  FsStore: async () => {
    const dir = await makeTempDir();
    const store = await FsStore.create(join(dir, 'srv', 'test.repo'));
    return { store, corrupt: (key, bytes) => writeFile(store.pathOf(key), bytes), cleanup: () => rm(dir, { recursive: true, force: true }) };
  },
  MemoryStore: async () => {
    const store = new MemoryStore();
    return { store, corrupt: async (key, bytes) => store.overwriteForTest(key, bytes), cleanup: async () => undefined };
  },
};

const rejectsWith = (code: string, check?: (e: { message: string; fields: Record<string, unknown> }) => void) => (e: unknown) => {
  assert.ok(isGridboxError(e), `expected GridboxError, got ${e}`);
  assert.equal(e.code, code, e.message);
  check?.(e as never);
  return true;
};

for (const [name, make] of Object.entries(implementations)) {
  const withStore = (fn: (h: StoreHarness) => Promise<void>) => async () => {
    const h = await make();
    try { await fn(h); } finally { await h.cleanup(); }
  };

  test(`${name}: put then get returns the same bytes; has and list see the key`, withStore(async ({ store }) => {
    const bytes = Buffer.from('hello object');
    const key = objectKey(hashBytes('sha1', bytes), 'P');
    assert.equal(await store.has(key), false);
    await store.put(key, bytes);
    assert.equal(await store.has(key), true);
    assert.deepEqual(await store.get(key), bytes);
    const keys: string[] = [];
    for await (const k of store.list()) keys.push(k);
    assert.deepEqual(keys, [key]);
  }));

  test(`${name}: putting an existing key is a no-op and delete is idempotent`, withStore(async ({ store }) => {
    const key = objectKey(hashBytes('rmd160', Buffer.from('x')), 'C');
    await store.put(key, Buffer.from('first'));
    await store.put(key, Buffer.from('second'));
    assert.equal((await store.get(key)).toString(), 'first');
    await store.delete(key);
    await store.delete(key);
    assert.equal(await store.has(key), false);
  }));

  test(`${name}: get of a missing object is STORE_MISSING naming the key`, withStore(async ({ store }) => {
    const key = objectKey(hashBytes('sha1', Buffer.from('absent')));
    await assert.rejects(store.get(key), rejectsWith('STORE_MISSING', (e) => assert.match(e.message, new RegExp(key))));
  }));

  test(`${name}: keys that are not object keys are refused`, withStore(async ({ store }) => {
    await assert.rejects(store.put('../../etc/passwd', Buffer.from('x')), rejectsWith('HASH_BAD_ID'));
  }));

  test(`${name}: a writer streams an object in pieces; commit makes it visible, abort leaves nothing`, withStore(async ({ store }) => {
    const parts = [Buffer.from('stream'), Buffer.alloc(0), Buffer.alloc(100_000, 3), Buffer.from('ed')];
    const whole = Buffer.concat(parts);
    const key = objectKey(hashBytes('sha1', whole), 'P');
    const w = store.openWriter();
    for (const p of parts) await w.write(p);
    assert.equal(await store.has(key), false, 'invisible before commit');
    await w.commit(key);
    assert.deepEqual(await store.get(key), whole);
    await w.abort();
    assert.deepEqual(await store.get(key), whole, 'abort after commit changes nothing');
    const other = objectKey(hashBytes('sha1', Buffer.from('never')), 'P');
    const a = store.openWriter(other);
    await a.write(Buffer.from('never'));
    await a.abort();
    await a.abort();
    assert.equal(await store.has(other), false);
    const keys: string[] = [];
    for await (const k of store.list()) keys.push(k);
    assert.deepEqual(keys, [key]);
  }));

  for (const algorithm of ['sha1', 'rmd160', 'shake128'] as const) {
    test(`${name}: writeObject/readObject round-trip with ${algorithm} and zlib`, withStore(async ({ store }) => {
      const content = Buffer.from('content '.repeat(1000));
      const w = await writeObject(store, content, { algorithm, suffix: 'P', compression: 'zlib' });
      assert.equal(w.id.algorithm, algorithm);
      const stored = await store.get(w.key);
      assert.equal(stored.length, w.storedSize);
      assert.ok(w.storedSize < content.length);
      assert.deepEqual(stored.subarray(0, 2), Buffer.from([0x78, 0x9c]));
      assert.equal(hashBytes(algorithm, stored).hex, w.id.hex, 'the id is the hash of the stored (compressed) bytes');
      assert.deepEqual(await readObject(store, w.id, 'P', { compression: 'zlib', expectedSize: content.length }), content);
    }));
  }

  test(`${name}: the empty file compresses to the stock bytes and name`, withStore(async ({ store }) => {
    const w = await writeObject(store, Buffer.alloc(0), { algorithm: 'sha1', compression: 'zlib' });
    assert.equal(w.key, 'e8ec3d88b62ebf526e4e5a4ff6162a3aa48a6b78');
    assert.deepEqual(await store.get(w.key), Buffer.from('789c030000000001', 'hex'));
  }));

  test(`${name}: uncompressed objects are stored verbatim`, withStore(async ({ store }) => {
    const content = Buffer.from('raw bytes');
    const w = await writeObject(store, content, { algorithm: 'sha1', compression: 'none' });
    assert.equal(w.id.hex, hashBytes('sha1', content).hex);
    assert.deepEqual(await readObject(store, w.id, '', { compression: 'none', expectedSize: content.length }), content);
    await assert.rejects(writeObject(store, content, { algorithm: 'sha1', suffix: 'C', compression: 'none' }), rejectsWith('USAGE'));
  }));

  test(`${name}: a corrupted object is STORE_HASH_MISMATCH naming the object`, withStore(async ({ store, corrupt }) => {
    const w = await writeObject(store, Buffer.from('precious'), { algorithm: 'sha1', suffix: 'C', compression: 'zlib' });
    const bad = Buffer.from(await store.get(w.key));
    bad[bad.length - 1] ^= 1;
    await corrupt(w.key, bad);
    await assert.rejects(readObject(store, w.id, 'C', { compression: 'zlib' }), rejectsWith('STORE_HASH_MISMATCH', (e) => {
      assert.ok(e.message.includes(w.key), e.message);
      assert.equal(e.fields.objectId, w.key);
    }));
  }));

  test(`${name}: wrong decompressed size is STORE_SIZE_MISMATCH`, withStore(async ({ store }) => {
    const content = Buffer.alloc(5000, 7);
    const w = await writeObject(store, content, { algorithm: 'sha1', compression: 'zlib' });
    await assert.rejects(readObject(store, w.id, '', { compression: 'zlib', expectedSize: 4999 }), rejectsWith('STORE_SIZE_MISMATCH'));
    await assert.rejects(readObject(store, w.id, '', { compression: 'zlib', expectedSize: 5001 }), rejectsWith('STORE_SIZE_MISMATCH'));
    const raw = await writeObject(store, content, { algorithm: 'sha1', compression: 'none' });
    await assert.rejects(readObject(store, raw.id, '', { compression: 'none', expectedSize: 10 }), rejectsWith('STORE_SIZE_MISMATCH'));
  }));
}

test('FsStore lays objects out as data/XX/rest with the 00..ff skeleton and leaves txn/ empty', async () => {
  const dir = await makeTempDir();
  try {
    const srv = join(dir, 'srv');
    const store = await FsStore.create(srv);
    const dirs = await readdir(join(srv, 'data'));
    assert.equal(dirs.length, 257);
    assert.ok(dirs.includes('00') && dirs.includes('ff') && dirs.includes('txn'));
    const w = await writeObject(store, Buffer.from('layout'), { algorithm: 'shake128', suffix: 'X', compression: 'zlib' });
    const text = `${w.id.hex}-shake128X`;
    assert.ok((await stat(join(srv, 'data', text.slice(0, 2), text.slice(2)))).isFile());
    assert.deepEqual(await readdir(join(srv, 'data', 'txn')), []);
    assert.deepEqual(await readFile(join(srv, 'data', text.slice(0, 2), text.slice(2))), await store.get(w.key));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('FsStore that cannot write fails with STORE_IO naming the object and its path', async () => {
  const dir = await makeTempDir();
  try {
    const store = await FsStore.create(join(dir, 'srv'));
    // data/txn a file, not a directory: fails for root too (the publish test uses a read-only mount).
    await rm(join(dir, 'srv', 'data', 'txn'), { recursive: true });
    await writeFile(join(dir, 'srv', 'data', 'txn'), '');
    const key = objectKey(hashBytes('sha1', Buffer.from('x')));
    await assert.rejects(store.put(key, Buffer.from('x')), rejectsWith('STORE_IO', (e) => {
      assert.ok(e.message.includes(key), e.message);
      assert.equal(e.fields.path, store.pathOf(key));
    }));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('FsStore.writeSync stores through a temp file like write, creates missing dirs, and fails with STORE_IO leaving no temp', async () => {
  const dir = await makeTempDir();
  try {
    const srv = join(dir, 'srv');
    const store = await FsStore.create(srv);
    const key = objectKey(hashBytes('sha1', Buffer.from('sync')));
    // A fan-out dir that went missing is created again.
    await rm(join(srv, 'data', key.slice(0, 2)), { recursive: true });
    store.writeSync(key, Buffer.from('sync'));
    assert.deepEqual(await store.get(key), Buffer.from('sync'));
    store.writeSync(key, Buffer.from('sync')); // over itself: harmless
    assert.deepEqual(await readdir(join(srv, 'data', 'txn')), []);
    // data/<xx> a file, not a directory: the rename fails (for root too).
    const other = objectKey(hashBytes('sha1', Buffer.from('other')));
    await rm(join(srv, 'data', other.slice(0, 2)), { recursive: true, force: true });
    await writeFile(join(srv, 'data', other.slice(0, 2)), '');
    assert.throws(() => store.writeSync(other, Buffer.from('other')), rejectsWith('STORE_IO', (e) => {
      assert.ok(e.message.includes(other), e.message);
      assert.equal(e.fields.path, store.pathOf(other));
    }));
    assert.deepEqual(await readdir(join(srv, 'data', 'txn')), [], 'the temp file is removed');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('FsStore.removeDeadTemps removes temp files of dead writers only', async () => {
  const dir = await makeTempDir();
  try {
    const store = await FsStore.create(join(dir, 'srv'));
    const txn = join(dir, 'srv', 'data', 'txn');
    await writeFile(join(txn, 'abc.tmp.999999.0.1'), 'dead');
    await writeFile(join(txn, `abc.tmp.${process.pid}.0.2`), 'mine');
    await writeFile(join(txn, 'abc.tmp.4242.0.3'), 'alive');
    await writeFile(join(txn, 'foreign'), 'x');
    const removed = await store.removeDeadTemps((pid) => pid === 4242);
    assert.deepEqual(removed, ['abc.tmp.999999.0.1']);
    assert.deepEqual((await readdir(txn)).sort(), ['abc.tmp.4242.0.3', `abc.tmp.${process.pid}.0.2`, 'foreign'].sort());
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('verifyObjectBytes and the streaming verifier agree and name the object', () => {
  const bytes = Buffer.from('789c030000000001', 'hex');
  const id = parseObjectId('e8ec3d88b62ebf526e4e5a4ff6162a3aa48a6b78');
  verifyObjectBytes(bytes, id);
  const v = createObjectVerifier(id, 'P');
  v.update(bytes.subarray(0, 3));
  v.update(bytes.subarray(3));
  assert.equal(v.finish(), 8);
  assert.throws(() => verifyObjectBytes(bytes.subarray(1), id, 'P'), rejectsWith('STORE_HASH_MISMATCH', (e) => assert.match(e.message, /e8ec3d88b62ebf526e4e5a4ff6162a3aa48a6b78P/)));
  const v2 = createObjectVerifier(id);
  v2.update(bytes.subarray(1));
  assert.throws(() => v2.finish(), rejectsWith('STORE_HASH_MISMATCH'));
});

test('decodeObjectBytes reports truncated and garbage zlib with distinct codes', () => {
  const full = Buffer.from('789c030000000001', 'hex');
  assert.throws(() => decodeObjectBytes(full.subarray(0, 4), 'k', { compression: 'zlib' }), rejectsWith('STORE_TRUNCATED'));
  assert.throws(() => decodeObjectBytes(Buffer.from('not zlib at all'), 'k', { compression: 'zlib' }), rejectsWith('COMPRESSION_BAD'));
});
