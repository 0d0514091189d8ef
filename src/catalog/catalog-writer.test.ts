// writeCatalog() → openCatalog() round trips for every entry type, the on-disk layout as the sqlite3 CLI
// sees it (tables, journal mode, properties, 24 counters), counters across nested catalogs, and ordering.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { isGridboxError } from '../errors.js';
import { hashBytes, type HashAlgorithm } from '../hash/object-id.js';
import type { Entry, EntryType } from '../fstree/entry.js';
import { openCatalog } from './catalog-reader.js';
import { writeCatalog } from './catalog-writer.js';
import { md5path } from './md5path.js';
import type { CatalogEntry } from './types.js';

const T = 1700000000;

function ent(path: string, type: EntryType, extra: Partial<Entry> = {}): Entry {
  return { path: path.slice(1), type, mode: type === 'dir' ? 0o755 : 0o644, uid: 1000, gid: 1001, size: type === 'dir' ? 4096 : 0, mtime: T, mtimeNs: 0, ...extra };
}

function ce(path: string, entry: Entry, extra: Partial<CatalogEntry> = {}): CatalogEntry {
  return { path, entry, compression: 'zlib', hardlinkGroup: 0, linkcount: entry.type === 'dir' ? 2 : 1, ...extra };
}

const id = (s: string, algo: HashAlgorithm = 'sha1') => hashBytes(algo, Buffer.from(s));

function sampleEntries(): CatalogEntry[] {
  return [
    ce('', ent('', 'dir', { mtimeNs: 5 }), { linkcount: 4 }),
    ce('/dir', ent('/dir', 'dir', { mode: 0o2775 }), { linkcount: 2 }),
    ce('/dir/file', ent('/dir/file', 'file', { size: 11, mtimeNs: 123456789, mode: 0o4755 }), { id: id('file') }),
    ce('/dir/raw', ent('/dir/raw', 'file', { size: 3 }), { id: id('raw', 'rmd160'), compression: 'none' }),
    ce('/dir/big', ent('/dir/big', 'file', { size: 3000 }), {
      chunks: [{ offset: 0, size: 1000, id: id('c0', 'shake128') }, { offset: 1000, size: 2000, id: id('c1', 'shake128') }],
    }),
    ce('/dir/link', ent('/dir/link', 'symlink', { target: 'file→ü', size: 9, mode: 0o777 })),
    ce('/dir/fifo', ent('/dir/fifo', 'fifo')),
    ce('/dir/sock', ent('/dir/sock', 'socket')),
    ce('/dir/tty', ent('/dir/tty', 'chardev', { rdev: (4 << 8) | 1 })),
    ce('/dir/disk', ent('/dir/disk', 'blockdev', { rdev: 0x10300 })),
    ce('/dir/h1', ent('/dir/h1', 'file', { size: 2 }), { id: id('h'), hardlinkGroup: 1, linkcount: 2 }),
    ce('/dir/h2', ent('/dir/h2', 'file', { size: 2 }), { id: id('h'), hardlinkGroup: 1, linkcount: 2 }),
    ce('/dir/x', ent('/dir/x', 'file', { size: 0, xattrs: { 'user.b': Buffer.from('2'), 'user.a': Buffer.from([0, 255]) } }), { id: id('') }),
    ce('/.cvmfs', ent('/.cvmfs', 'dir'), { hidden: true }),
    ce('/sw', ent('/sw', 'dir'), { nestedMountpoint: true }),
  ];
}

test('writeCatalog() output reads back identically for every entry type', async () => {
  await withTempDir(async (tmp) => {
    const file = join(tmp, 'root.db');
    const input = sampleEntries();
    const nestedId = id('nested');
    const res = writeCatalog(file, { properties: { revision: 3, lastModified: T, ttl: 900, previousRevision: 'ab'.repeat(20) }, entries: input, nested: [{ path: '/sw', id: nestedId, size: 4096 }] });
    assert.equal(res.rows, input.length);
    const c = openCatalog(file);
    try {
      assert.equal(c.schemaRevision, 7);
      assert.equal(c.properties.ttl, 900);
      const back = c.entries();
      assert.deepEqual(back.map((e) => e.path), input.map((e) => e.path));
      for (const want of input) {
        const got = c.lookup(want.path)!;
        const { entry: we, ...wr } = want;
        const { entry: ge, ...gr } = got;
        assert.deepEqual(gr, wr, want.path);
        assert.deepEqual(ge, { ...we, size: we.type === 'chardev' || we.type === 'blockdev' ? 0 : we.type === 'symlink' ? Buffer.byteLength(we.target!) : we.size }, want.path);
        assert.deepEqual(back.find((b) => b.path === want.path), got, `entries() and lookup() agree on ${want.path}`);
      }
      assert.deepEqual(c.chunks('/dir/big').map((x) => x.offset), [0, 1000]);
      assert.equal(c.chunks('/dir/big')[1].id.algorithm, 'shake128');
      assert.equal(c.listing('/dir').length, 11);
      assert.deepEqual(c.listing('').map((e) => e.path), ['/dir', '/.cvmfs', '/sw']);
      assert.deepEqual(c.nested(), [{ path: '/sw', id: nestedId, size: 4096 }]);
      const { self, subtree } = c.counters();
      assert.deepEqual(self, res.counters.self);
      assert.deepEqual(subtree, res.counters.subtree);
      assert.equal(self.dir, 4);
      assert.equal(self.regular, 6);
      assert.equal(self.symlink, 1);
      assert.equal(self.special, 4);
      assert.equal(self.chunked, 1);
      assert.equal(self.chunks, 2);
      assert.equal(self.chunked_size, 3000);
      assert.equal(self.file_size, 11 + 3 + 3000 + 2 + 2 + 0);
      assert.equal(self.xattr, 1);
      assert.equal(self.nested, 1);
    } finally {
      c.close();
    }
  });
});

test('a written catalog is what the sqlite3 CLI and the stock client expect (§4.1, §4.9)', async () => {
  await withTempDir(async (tmp) => {
    const file = join(tmp, 'root.db');
    writeCatalog(file, { properties: { revision: 1, lastModified: T, ttl: 240 }, entries: sampleEntries(), nested: [{ path: '/sw', id: id('n'), size: 1 }] });
    assert.equal(existsSync(`${file}-journal`), false);
    assert.equal(existsSync(`${file}-wal`), false);
    const sql = (q: string) => execFileSync('sqlite3', [file, q], { encoding: 'utf8' }).trim();
    assert.equal(sql("SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name)"),
      'bind_mountpoints,catalog,chunks,nested_catalogs,properties,statistics');
    assert.equal(sql("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'idx_catalog_parent'"), 'idx_catalog_parent');
    assert.equal(sql('PRAGMA journal_mode'), 'delete');
    assert.equal(sql('SELECT count(*) FROM statistics'), '24');
    assert.equal(sql("SELECT value FROM properties WHERE key = 'schema'"), '2.5');
    assert.equal(sql("SELECT value FROM properties WHERE key = 'schema_revision'"), '7');
    assert.equal(sql("SELECT value FROM properties WHERE key = 'revision'"), '1');
    assert.equal(sql("SELECT value FROM properties WHERE key = 'TTL'"), '240');
    assert.equal(sql("SELECT value FROM properties WHERE key = 'last_modified'"), String(T));
    assert.equal(sql("SELECT count(*) FROM properties WHERE key = 'root_prefix'"), '0');
    // root entry: rowid 1, md5("") and a null parent, name '' (§4.3)
    assert.equal(sql('SELECT rowid, md5path_1, md5path_2, parent_1, parent_2, name, symlink, flags, mode FROM catalog ORDER BY rowid LIMIT 1'),
      '1|338333539836370388|9098107892288553193|0|0|||1|16877');
    assert.equal(sql('SELECT count(*) FROM catalog WHERE name IS NULL OR symlink IS NULL'), '0');
    const [h1, h2] = md5path('/dir/h1');
    assert.equal(sql(`SELECT hardlinks FROM catalog WHERE md5path_1 = ${h1} AND md5path_2 = ${h2}`), String((1 << 30) * 4 + 2));
    const row = (p: string, cols: string) => { const [a, b] = md5path(p); return sql(`SELECT ${cols} FROM catalog WHERE md5path_1 = ${a} AND md5path_2 = ${b}`); };
    assert.equal(row('/dir/file', 'flags, mode, size, mtimens, length(hash)'), `4|${0o104755}|11|123456789|20`);
    assert.equal(row('/dir/raw', 'flags'), String(4 | 256 | 2048));
    assert.equal(row('/dir/big', 'flags, hash IS NULL'), `${4 | 64 | 512}|1`);
    assert.equal(row('/dir/link', 'flags, symlink, size'), '12|file→ü|9');
    assert.equal(row('/dir/tty', 'flags, size, mode'), `20|${(4 << 8) | 1}|${0o020644}`);
    assert.equal(row('/dir/fifo', 'size, hash IS NULL'), '0|1');
    assert.equal(row('/.cvmfs', 'flags'), String(1 | 0x8000));
    assert.equal(row('/sw', 'flags'), '3');
    assert.equal(row('/dir/x', 'hex(xattr)'),
      `01020602${Buffer.from('user.a').toString('hex')}00FF0601${Buffer.from('user.b').toString('hex')}32`.toUpperCase());
  });
});

test('a nested catalog gets root_prefix, a nested-root entry and feeds its counters to the parent subtree', async () => {
  await withTempDir(async (tmp) => {
    const childFile = join(tmp, 'child.db');
    const child = writeCatalog(childFile, {
      properties: { revision: 1, rootPrefix: '/sw', lastModified: T },
      entries: [
        ce('/sw', ent('/sw', 'dir'), { linkcount: 3 }),
        ce('/sw/.cvmfscatalog', ent('/sw/.cvmfscatalog', 'file'), { id: id('') }),
        ce('/sw/v1', ent('/sw/v1', 'dir')),
        ce('/sw/v1/a', ent('/sw/v1/a', 'file', { size: 7 }), { id: id('a') }),
      ],
    });
    assert.deepEqual([child.counters.self.dir, child.counters.self.regular, child.counters.self.file_size], [2, 2, 7]);
    const grand = { self: { ...child.counters.self, dir: 10, regular: 100 }, subtree: { ...child.counters.subtree, regular: 1000 } };
    const rootFile = join(tmp, 'root.db');
    const root = writeCatalog(rootFile, {
      properties: { revision: 2, lastModified: T },
      entries: [ce('', ent('', 'dir'), { linkcount: 3 }), ce('/sw', ent('/sw', 'dir'), { nestedMountpoint: true })],
      nested: [{ path: '/sw', id: id('child'), size: child.size, counters: child.counters }],
    });
    assert.equal(root.counters.subtree.dir, 2);
    assert.equal(root.counters.subtree.regular, 2);
    assert.equal(root.counters.subtree.file_size, 7);
    const twoLevels = writeCatalog(join(tmp, 'r2.db'), {
      properties: { revision: 2 },
      entries: [ce('', ent('', 'dir')), ce('/sw', ent('/sw', 'dir'), { nestedMountpoint: true })],
      nested: [{ path: '/sw', id: id('child'), size: 1, counters: grand }],
    });
    assert.equal(twoLevels.counters.subtree.regular, 1100, 'subtree = child self + child subtree');
    const c = openCatalog(childFile);
    try {
      assert.equal(c.properties.rootPrefix, '/sw');
      const r = c.lookup('/sw')!;
      assert.equal(r.nestedRoot, true);
      assert.equal(r.nestedMountpoint, undefined);
      assert.deepEqual(c.entries().map((e) => e.path), ['/sw', '/sw/.cvmfscatalog', '/sw/v1', '/sw/v1/a']);
    } finally {
      c.close();
    }
    const [p1, p2] = md5path('');
    assert.equal(execFileSync('sqlite3', [childFile, 'SELECT rowid, parent_1, parent_2, flags, name FROM catalog ORDER BY rowid LIMIT 1'], { encoding: 'utf8' }).trim(),
      `1|${p1}|${p2}|33|sw`);
  });
});

test('writeCatalog() refuses misordered entries, a missing root, duplicates and unmatched nested mountpoints', async () => {
  await withTempDir(async (tmp) => {
    const file = join(tmp, 'bad.db');
    assert.throws(() => writeCatalog(file, { properties: { revision: 1 }, entries: [ce('/a', ent('/a', 'dir'))] }),
      (e: unknown) => isGridboxError(e) && e.message.includes('"/a"') && e.message.includes('catalog root'));
    assert.throws(() => writeCatalog(file, { properties: { revision: 1 }, entries: [ce('', ent('', 'dir')), ce('/a/b', ent('/a/b', 'file'))] }),
      (e: unknown) => isGridboxError(e) && e.message.includes('"/a/b"'));
    assert.throws(() => writeCatalog(file, { properties: { revision: 1 }, entries: [] }), (e: unknown) => isGridboxError(e));
    const root = ce('', ent('', 'dir'));
    assert.throws(() => writeCatalog(file, { properties: { revision: 1 }, entries: [root, ce('/m', ent('/m', 'dir'), { nestedMountpoint: true })] }),
      (e: unknown) => isGridboxError(e) && e.message.includes('mountpoint "/m" has no nested catalog'));
    assert.throws(() => writeCatalog(file, { properties: { revision: 1 }, entries: [root], nested: [{ path: '/m', id: id('m'), size: 1 }] }),
      (e: unknown) => isGridboxError(e) && e.message.includes('nested catalog "/m" has no mountpoint'));
    assert.throws(() => writeCatalog(file, { properties: { revision: 1 }, entries: [root, ce('/a', ent('/a', 'file')), ce('/a', ent('/a', 'file'))] }),
      (e: unknown) => isGridboxError(e) && e.message.includes(file));
  });
});

test('writeCatalog() writes a large flat-and-deep tree in one transaction', async (t) => {
  // GRIDBOX_CATALOG_ROWS scales this up (the publisher feeds 50k+ rows); kept modest by default.
  const n = Number(process.env.GRIDBOX_CATALOG_ROWS ?? 20000);
  await withTempDir(async (tmp) => {
    function* gen(): Generator<CatalogEntry> {
      yield ce('', ent('', 'dir'));
      for (let d = 0; d < 100; d++) yield ce(`/d${d}`, ent(`/d${d}`, 'dir'));
      for (let i = 0; i < n; i++) {
        const p = `/d${i % 100}/f${i}`;
        yield ce(p, ent(p, 'file', { size: i }), { id: id(p) });
      }
    }
    const file = join(tmp, 'big.db');
    const t0 = process.hrtime.bigint();
    const res = writeCatalog(file, { properties: { revision: 1 }, entries: gen() });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    t.diagnostic(`${res.rows} rows in ${ms.toFixed(0)} ms = ${Math.round(res.rows / (ms / 1000))} rows/s, ${res.size} bytes`);
    assert.equal(res.rows, n + 101);
    assert.equal(res.counters.self.regular, n);
    const c = openCatalog(file);
    try {
      assert.equal(c.listing('/d7').length, Math.floor(n / 100) + (n % 100 > 7 ? 1 : 0));
      assert.equal(c.lookup(`/d${(n - 1) % 100}/f${n - 1}`)?.entry.size, n - 1);
    } finally {
      c.close();
    }
  });
});
