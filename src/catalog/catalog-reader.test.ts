// The catalog reader against the real cvmfs_server 2.1 repository in test/fixtures/cvmfs (schema 2.5
// revision 2), plus bad input: files that are not catalogs, or catalogs missing a table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { withTempDir } from '../testing/tmp.js';
import { fixturesDir } from '../testing/fixtures.js';
import { isGridboxError } from '../errors.js';
import { formatObjectId } from '../hash/object-id.js';
import { openCatalog } from './catalog-reader.js';
import { openSqliteReadOnly } from './sqlite.js';


/** Unpacks the fixture and inflates every catalog; returns hex → inflated catalog file. */
function unpackCatalogs(tmp: string): Map<string, string> {
  execFileSync('tar', ['xzf', join(fixturesDir(), 'legacy_aufs_repo.tar.gz'), '-C', tmp]);
  const data = join(tmp, 'srv', 'cvmfs', 'legacy_aufs.cern.ch', 'data');
  const out = new Map<string, string>();
  for (const d of readdirSync(data)) {
    for (const f of readdirSync(join(data, d))) {
      if (!f.endsWith('C')) continue;
      const hex = d + f.slice(0, -1);
      const file = join(tmp, `${hex}.db`);
      writeFileSync(file, inflateSync(readFileSync(join(data, d, f))));
      out.set(hex, file);
    }
  }
  return out;
}

const ROOT_HEX = '6ed3d49a5c64f21f36936ab350d49aaf57585b9a';
const NESTED_HEX = '8e2b7e33e9f84d5104be60a8338d1d9fd6f0ce51';

test('openCatalog() opens all 9 fixture catalogs at schema 2.5 revision 2', async () => {
  await withTempDir(async (tmp) => {
    const cats = unpackCatalogs(tmp);
    assert.equal(cats.size, 9);
    for (const [hex, file] of cats) {
      const c = openCatalog(file);
      try {
        assert.equal(c.properties.schema, '2.5', hex);
        assert.equal(c.schemaRevision, 2, hex);
        const all = c.entries();
        assert.ok(all.length >= 1, hex);
        assert.equal(all[0].path, c.rootPath, `${hex}: first row is the catalog root`);
        // every row's path looks up to itself: paths rebuilt from parent hashes are right
        for (const e of all) assert.equal(c.lookup(e.path)?.path, e.path, `${hex} ${e.path}`);
      } finally {
        c.close();
      }
    }
    // the root catalog's size matches manifest B (§9)
    assert.equal(statSync(cats.get(ROOT_HEX)!).size, 14336);
  });
});

test('the fixture root catalog has the golden root entry, properties and counters of §9', async () => {
  await withTempDir(async (tmp) => {
    const c = openCatalog(unpackCatalogs(tmp).get(ROOT_HEX)!);
    try {
      assert.equal(c.properties.revision, 2);
      assert.equal(c.properties.lastModified, 1445428515);
      assert.equal(c.properties.previousRevision, 'e6ceff5bfeded1ddc5d21dd0ce32aca99013e31e');
      assert.equal(c.properties.rootPrefix, undefined);
      const root = c.lookup('')!;
      assert.equal(c.lookup('/')?.path, '');
      assert.equal(root.entry.type, 'dir');
      assert.equal(root.entry.mode, 0o755);
      assert.equal(root.linkcount, 5);
      assert.equal(root.hardlinkGroup, 0);
      assert.equal(root.entry.mtime, 1445428513);
      assert.equal(root.entry.mtimeNs, 0);
      assert.equal(root.nestedRoot, undefined);
      const names = c.listing('').map((e) => e.path).sort();
      assert.deepEqual(names, ['/bar', '/baz', '/doesnt_need_migration', '/foo', '/hardlink_bar', '/hardlink_baz',
        '/hardlink_foo', '/needs_commit_due_to_child', '/needs_migration']);
      const mp = c.lookup('/needs_migration')!;
      assert.equal(mp.nestedMountpoint, true);
      assert.deepEqual(c.listing('/needs_migration'), []);
      const counters = c.counters();
      assert.equal(counters.self.dir, 4);
      assert.equal(counters.self.regular, 6);
      assert.equal(counters.self.nested, 3);
      assert.equal(counters.subtree.dir, 12);
      assert.equal(counters.subtree.regular, 39);
      assert.equal(counters.subtree.symlink, 9);
      assert.equal(counters.self.special, 0);
      const nested = c.nested().map((n) => `${n.path}=${formatObjectId(n.id)}:${n.size}`).sort();
      assert.deepEqual(nested, [
        '/doesnt_need_migration=6c3ab1f2fe675cd31b0d64e7821b3524cc51fbcb:16384',
        '/needs_commit_due_to_child=13e8bad90ad162edebe5660c5ade85f0c53aa4dd:16384',
        `/needs_migration=${NESTED_HEX}:16384`,
      ]);
      assert.equal(c.findNestedFor('/needs_migration/x/y')?.path, '/needs_migration');
      assert.equal(c.findNestedFor('/needs_migration')?.path, '/needs_migration');
      assert.equal(c.findNestedFor('/needs_migrationX'), undefined);
      assert.equal(c.findNestedFor('/foo'), undefined);
    } finally {
      c.close();
    }
  });
});

test('the fixture exposes hardlink groups with their link counts and shared content hash', async () => {
  await withTempDir(async (tmp) => {
    const c = openCatalog(unpackCatalogs(tmp).get(ROOT_HEX)!);
    try {
      const foo = c.lookup('/foo')!, hfoo = c.lookup('/hardlink_foo')!, bar = c.lookup('/bar')!;
      assert.equal(foo.hardlinkGroup, 1);
      assert.equal(foo.linkcount, 2);
      assert.equal(hfoo.hardlinkGroup, 1);
      assert.equal(bar.hardlinkGroup, 2);
      assert.equal(c.lookup('/baz')!.hardlinkGroup, 3);
      assert.deepEqual(foo.id, hfoo.id);
      assert.equal(foo.id?.algorithm, 'sha1');
      assert.equal(foo.compression, 'zlib');
      assert.equal(foo.entry.type, 'file');
      assert.equal(foo.entry.mode, 0o664);
      assert.equal(foo.entry.size, 4);
      assert.equal(c.chunks('/foo').length, 0);
    } finally {
      c.close();
    }
  });
});

test('a nested fixture catalog has root_prefix, a nested-root entry and its own nested row', async () => {
  await withTempDir(async (tmp) => {
    const c = openCatalog(unpackCatalogs(tmp).get(NESTED_HEX)!);
    try {
      assert.equal(c.properties.rootPrefix, '/needs_migration');
      assert.equal(c.rootPath, '/needs_migration');
      const root = c.lookup('/needs_migration')!;
      assert.equal(root.nestedRoot, true);
      assert.equal(root.entry.type, 'dir');
      assert.equal(root.entry.path, 'needs_migration');
      assert.deepEqual(c.nested().map((n) => n.path), ['/needs_migration/doesnt_need_migration']);
      assert.equal(c.findNestedFor('/needs_migration/doesnt_need_migration/a')?.id.hex, '719a178877dc6834924bcc4108a739c285eea4f9');
      const symlinks = c.entries().filter((e) => e.entry.type === 'symlink');
      assert.equal(symlinks.length, c.counters().self.symlink);
      for (const s of symlinks) assert.equal(s.entry.size, Buffer.byteLength(s.entry.target!));
    } finally {
      c.close();
    }
  });
});

test('openCatalog() rejects a file that is not SQLite with CATALOG_INVALID naming the file', async () => {
  await withTempDir(async (tmp) => {
    const file = join(tmp, 'not-a-catalog');
    writeFileSync(file, Buffer.alloc(8192, 7));
    assert.throws(() => openCatalog(file), (e: unknown) => isGridboxError(e, 'CATALOG_INVALID') && e.message.includes(file));
    assert.throws(() => openCatalog(join(tmp, 'missing')), (e: unknown) => isGridboxError(e, 'CATALOG_INVALID') && e.message.includes('missing'));
  });
});

test('openCatalog() rejects a catalog without its catalog table, or with a foreign schema, with CATALOG_SCHEMA', async () => {
  await withTempDir(async (tmp) => {
    const file = unpackCatalogs(tmp).get(ROOT_HEX)!;
    execFileSync('sqlite3', [file, 'DROP TABLE chunks']);
    assert.throws(() => openCatalog(file), (e: unknown) => isGridboxError(e, 'CATALOG_SCHEMA') && e.message.includes(file) && e.message.includes('chunks'));
    const other = join(tmp, 'other.db');
    execFileSync('sqlite3', [other, 'CREATE TABLE t (x)']);
    assert.throws(() => openCatalog(other), (e: unknown) => isGridboxError(e, 'CATALOG_SCHEMA') && e.message.includes(other));
    const wrong = join(tmp, 'wrong.db');
    execFileSync('sqlite3', [wrong, "CREATE TABLE properties (key TEXT, value TEXT); INSERT INTO properties VALUES ('schema','3.0');" +
      ' CREATE TABLE catalog (x); CREATE TABLE chunks (x); CREATE TABLE nested_catalogs (x); CREATE TABLE statistics (x);']);
    assert.throws(() => openCatalog(wrong), (e: unknown) => isGridboxError(e, 'CATALOG_SCHEMA') && e.message.includes('3.0'));
  });
});

test('an immutable catalog keeps its shared lock (no per-statement locking), and two such readers share the file', async () => {
  await withTempDir(async (tmp) => {
    const file = unpackCatalogs(tmp).get(ROOT_HEX)!;
    const plain = openSqliteReadOnly(file);
    const held = openSqliteReadOnly(file, 'CATALOG_INVALID', { immutable: true });
    try {
      assert.equal(plain.pragma('locking_mode', { simple: true }), 'normal');
      assert.equal(held.pragma('locking_mode', { simple: true }), 'exclusive');
    } finally {
      plain.close();
      held.close();
    }
    // Two mounts of one repository share the cache's catalog files: both must read them at once.
    const a = openCatalog(file, { immutable: true });
    const b = openCatalog(file, { immutable: true });
    try {
      for (let i = 0; i < 3; i++) {
        assert.equal(a.lookup('')?.entry.type, 'dir');
        assert.equal(b.lookup('')?.entry.type, 'dir');
        assert.deepEqual(a.listing('').map((e) => e.path), b.listing('').map((e) => e.path));
      }
    } finally {
      a.close();
      b.close();
    }
  });
});
