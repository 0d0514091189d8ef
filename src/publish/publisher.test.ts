import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { FsStore } from '../store/fs-store.js';
import { readObject } from '../store/object-io.js';
import type { CatalogEntry } from '../catalog/types.js';
import { createRepository } from './create-repository.js';
import { readHead } from './head.js';
import { publishDirectory } from './publisher.js';
import { DEFAULT_SETTINGS, repoLayout, type RepoSettings } from './repo-layout.js';
import { forEachCatalog } from './revision-load.js';
import { acquirePublishLock } from './publish-lock.js';
import { checkRepository } from './check.js';
import { objectPath } from '../hash/object-id.js';

// The sizes (10^4 small files, a 100 MiB chunked file) by default; GRIDBOX_SMALL_TESTS=1 for quick local runs.
const BIG = process.env.GRIDBOX_SMALL_TESTS !== '1';
const FQRN = 'test.gridbox.local';
const SETTINGS: RepoSettings = BIG ? DEFAULT_SETTINGS : { ...DEFAULT_SETTINGS, chunkMin: 1 << 20, chunkAvg: 2 << 20, chunkMax: 4 << 20 };

export async function makeRepo(dir: string, settings = SETTINGS) {
  const layout = repoLayout(join(dir, 'repo'), FQRN);
  await createRepository(layout, settings);
  return layout;
}

/** Deep dirs, many small files, a chunked big file, hard links, symlinks, a fifo, xattrs, a nested catalog marker. */
function makeTree(root: string, files: number, bigBytes: number): void {
  let deep = root;
  for (let i = 0; i < 12; i++) { deep = join(deep, `d${i}`); mkdirSync(deep, { recursive: true }); }
  writeFileSync(join(deep, 'bottom.txt'), 'deep\n');
  for (let i = 0; i < files; i++) {
    const d = join(root, 'many', `g${i % 20}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, `f${i}.dat`), `file ${i} ${'x'.repeat(i % 300)}\n`);
  }
  writeFileSync(join(root, 'many', '.cvmfscatalog'), '');
  writeFileSync(join(root, 'many', 'g3', '.cvmfscatalog'), '');
  writeFileSync(join(root, 'big.bin'), randomBytes(bigBytes));
  writeFileSync(join(root, 'empty'), '');
  writeFileSync(join(root, 'h1'), 'hard');
  linkSync(join(root, 'h1'), join(root, 'h2'));
  symlinkSync('d0/d1', join(root, 'sym'));
  symlinkSync('/nonexistent/target', join(root, 'dangling'));
  execFileSync('mkfifo', [join(root, 'pipe')]);
  chmodSync(join(root, 'h1'), 0o640);
  spawnSync('setfattr', ['-n', 'user.color', '-v', 'blue', join(root, 'empty')]);
}

async function readBack(layout: ReturnType<typeof repoLayout>, tmp: string): Promise<Map<string, { row: CatalogEntry; content?: Buffer }>> {
  const store = new FsStore(layout.srv);
  const head = await readHead(layout);
  const out = new Map<string, { row: CatalogEntry; content?: Buffer }>();
  await forEachCatalog(store, head.rootId, tmp, async (_m, _id, _size, rows) => {
    for (const row of rows) {
      if (row.nestedMountpoint) continue;
      let content: Buffer | undefined;
      if (row.entry.type === 'file') {
        if (row.chunks) content = Buffer.concat(await Promise.all(row.chunks.map((c) => readObject(store, c.id, 'P', { compression: row.compression, expectedSize: c.size }))));
        else content = await readObject(store, row.id!, '', { compression: row.compression, expectedSize: row.entry.size });
      }
      out.set(row.path, { row, content });
    }
  });
  return out;
}

function countDataObjects(srv: string): number {
  let n = 0;
  for (const d of readdirSync(join(srv, 'data'))) if (d.length === 2) n += readdirSync(join(srv, 'data', d)).filter((f) => !/[CXHM]$/.test(f)).length;
  return n;
}

test('publish round trip: a generated tree reads back byte-identical with metadata', { timeout: 600_000 }, async () => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src');
    mkdirSync(src);
    makeTree(src, BIG ? 10_000 : 2000, BIG ? 100 << 20 : 20 << 20);
    const layout = await makeRepo(dir);
    const r = await publishDirectory(src, { layout, settings: SETTINGS });
    assert.equal(r.revision, 2);
    const back = await readBack(layout, dir);
    let checked = 0;
    const walk = (abs: string, rel: string) => {
      const st = lstatSync(abs);
      const got = back.get(rel);
      assert.ok(got, `missing ${rel}`);
      assert.equal(got.row.entry.mode, st.mode & 0o7777, rel);
      assert.equal(got.row.entry.mtime, Math.floor(st.mtimeMs / 1000), rel);
      assert.equal(got.row.entry.uid, st.uid);
      if (st.isFile()) assert.ok(readFileSync(abs).equals(got.content!), `content of ${rel}`);
      if (st.isSymbolicLink()) assert.equal(got.row.entry.target, execFileSync('readlink', [abs], { encoding: 'utf8' }).trim());
      if (st.isFIFO()) assert.equal(got.row.entry.type, 'fifo');
      if (st.isDirectory()) for (const n of readdirSync(abs)) walk(join(abs, n), `${rel}/${n}`);
      checked++;
    };
    walk(src, '');
    assert.equal(checked, back.size, 'no extra entries');
    assert.ok(back.get('/big.bin')!.row.chunks!.length > 1, 'big file is chunked');
    const h1 = back.get('/h1')!.row, h2 = back.get('/h2')!.row;
    assert.ok(h1.hardlinkGroup > 0 && h1.hardlinkGroup === h2.hardlinkGroup && h1.linkcount === 2);
    const xa = back.get('/empty')!.row.entry.xattrs;
    if (xa !== undefined) assert.deepEqual(xa, { 'user.color': Buffer.from('blue') });
    // sqlite3 CLI opens a stored catalog.
    const head = await readHead(layout);
    const store = new FsStore(layout.srv);
    const cat = join(dir, 'root.db');
    writeFileSync(cat, await readObject(store, head.rootId, 'C', { compression: 'zlib' }));
    const sq = spawnSync('sqlite3', [cat, "SELECT value FROM properties WHERE key='revision'; SELECT count(*) FROM nested_catalogs;"], { encoding: 'utf8' });
    assert.equal(sq.status, 0, sq.stderr);
    assert.deepEqual(sq.stdout.trim().split('\n'), ['2', '1']);

    // An unchanged republish writes no data object and keeps every nested catalog.
    const before = countDataObjects(layout.srv);
    const r2 = await publishDirectory(src, { layout, settings: SETTINGS });
    assert.equal(r2.objectsWritten, 0);
    assert.equal(r2.filesReused, r2.files);
    assert.equal(countDataObjects(layout.srv), before);
    assert.equal(r2.catalogsWritten, 1, 'only the root catalog is rewritten');
    assert.equal(r2.catalogsReused, 2);
    // The unchanged root is the old one with new version properties, and reads back the same.
    writeFileSync(cat, await readObject(store, (await readHead(layout)).rootId, 'C', { compression: 'zlib' }));
    const sq2 = spawnSync('sqlite3', [cat, "SELECT value FROM properties WHERE key IN ('revision', 'previous_revision') ORDER BY key; SELECT count(*) FROM catalog;"], { encoding: 'utf8' });
    assert.equal(sq2.status, 0, sq2.stderr);
    const rootRows = [...back.keys()].filter((p) => !p.startsWith('/many/')).length; // '/many' stands for its mountpoint row
    assert.deepEqual(sq2.stdout.trim().split('\n'), [head.rootId.hex, '3', String(rootRows)]);
    const back2 = await readBack(layout, dir);
    assert.equal(back2.size, back.size);
    for (const [p, v] of back) assert.ok(back2.get(p)!.content?.equals(v.content!) ?? back2.get(p)!.content === v.content, p);

    // Publishing at a path keeps the rest of the tree.
    const extra = join(dir, 'extra');
    mkdirSync(extra);
    writeFileSync(join(extra, 'hello'), 'hello\n');
    await publishDirectory(extra, { layout, settings: SETTINGS, at: '/sub/dir' });
    const back3 = await readBack(layout, dir);
    assert.equal(back3.get('/sub/dir/hello')!.content!.toString(), 'hello\n');
    assert.ok(back3.get('/big.bin'));
    assert.equal(back3.get('/sub')!.row.entry.type, 'dir');
    const report = await checkRepository(layout);
    assert.ok(report.objects > 2000 && report.catalogs >= 3);

    // check notices a corrupted data object and names it.
    const victim = back3.get('/sub/dir/hello')!.row.id!;
    const path = join(layout.data, objectPath(victim));
    writeFileSync(path, Buffer.concat([readFileSync(path), Buffer.from('x')]));
    await assert.rejects(checkRepository(layout), (e: Error & { code?: string }) => e.code === 'CHECK_FAILED' && e.message.includes(victim.hex));
  });
});

test('duplicate contents are stored once, and equal-sized files of different content stay distinct', async () => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src');
    mkdirSync(src);
    // 300 files of 3 contents; each content has the same size (so they meet in one worker), plus
    // 300 files of equal size and distinct content, and a duplicated chunked file.
    const variants = [Buffer.alloc(4000, 'a'), Buffer.alloc(4000, 'b'), Buffer.alloc(4000, 'c')];
    for (let i = 0; i < 300; i++) writeFileSync(join(src, `dup${i}`), variants[i % 3]);
    for (let i = 0; i < 300; i++) writeFileSync(join(src, `uniq${i}`), `${String(i).padStart(3, '0')}${'u'.repeat(3997)}`);
    const big = randomBytes(3 << 20);
    writeFileSync(join(src, 'big1'), big);
    writeFileSync(join(src, 'big2'), big);
    // Chunks of at most 1 MiB: the 3 MiB file is surely cut.
    const settings = { ...SETTINGS, chunkMin: 256 << 10, chunkAvg: 512 << 10, chunkMax: 1 << 20 };
    const layout = await makeRepo(dir, settings);
    const r = await publishDirectory(src, { layout, settings });
    const back = await readBack(layout, dir);
    for (let i = 0; i < 300; i++) {
      assert.ok(back.get(`/dup${i}`)!.content!.equals(variants[i % 3]), `dup${i}`);
      assert.equal(back.get(`/uniq${i}`)!.content!.toString().slice(0, 3), String(i).padStart(3, '0'));
    }
    assert.ok(back.get('/big2')!.content!.equals(big));
    const bigChunks = back.get('/big1')!.row.chunks!.length;
    assert.ok(bigChunks > 1);
    assert.equal(countDataObjects(layout.srv), 3 + 300 + bigChunks);
    assert.equal(r.objectsWritten, 3 + 300 + bigChunks);
  });
});

test('an unchanged republish restamps the root; a changed file or another revision in between takes the full path', async () => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src');
    mkdirSync(join(src, 'd'), { recursive: true });
    writeFileSync(join(src, 'd', 'a'), 'one');
    writeFileSync(join(src, 'b'), 'bee');
    const layout = await makeRepo(dir);
    await publishDirectory(src, { layout, settings: SETTINGS });
    const logs: string[] = [];
    const hooks = { log: (l: string) => logs.push(l) };
    const r2 = await publishDirectory(src, { layout, settings: SETTINGS, hooks });
    assert.match(logs.pop()!, /unchanged since revision 2 \(root catalog restamped\)/);
    assert.equal(r2.revision, 3);
    assert.equal(r2.filesReused, 2);
    assert.equal((await readBack(layout, dir)).get('/d/a')!.content!.toString(), 'one');
    await checkRepository(layout);

    // Same size, new content: the mtime moves, so the walk differs and the file is read again.
    writeFileSync(join(src, 'd', 'a'), 'two');
    const t = new Date(Date.now() + 5000);
    utimesSync(join(src, 'd', 'a'), t, t);
    const r3 = await publishDirectory(src, { layout, settings: SETTINGS, hooks });
    assert.doesNotMatch(logs.pop()!, /restamped/);
    assert.equal(r3.objectsWritten, 1);
    assert.equal((await readBack(layout, dir)).get('/d/a')!.content!.toString(), 'two');

    // Another publish in between (at a path): the next whole publish is not a restamp, and drops it.
    const extra = join(dir, 'extra');
    mkdirSync(extra);
    writeFileSync(join(extra, 'x'), 'x');
    await publishDirectory(extra, { layout, settings: SETTINGS, at: '/sub' });
    assert.ok((await readBack(layout, dir)).has('/sub/x'));
    await publishDirectory(src, { layout, settings: SETTINGS, hooks });
    assert.doesNotMatch(logs.pop()!, /restamped/);
    const back = await readBack(layout, dir);
    assert.equal(back.has('/sub'), false);
    assert.equal(back.get('/d/a')!.content!.toString(), 'two');
    await checkRepository(layout);
  });
});

test('publish of an unreadable source file fails with PUBLISH_SOURCE and keeps the previous revision', async () => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'ok'), 'ok');
    const layout = await makeRepo(dir);
    await publishDirectory(src, { layout, settings: SETTINGS });
    const manifest = readFileSync(layout.manifest);
    // Unreadable for a normal user; root reads any mode, so for root the file vanishes after the first
    // pass of the walk (the second pass works from the first pass's listing, and the file it names
    // cannot be read; a directory listed again would be refused as changed).
    const bad = join(src, 'secret');
    writeFileSync(bad, 'secret');
    chmodSync(bad, 0);
    const r = publishDirectory(src, {
      layout, settings: SETTINGS,
      hooks: { point: (p) => { if (p === 'walked' && process.getuid?.() === 0) execFileSync('rm', ['-f', bad]); } },
    });
    await assert.rejects(r, (e: Error & { code?: string }) => e.code === 'PUBLISH_SOURCE' && e.message.includes('secret'));
    assert.ok(readFileSync(layout.manifest).equals(manifest), 'manifest unchanged');
    assert.equal((await readHead(layout)).revision, 2);
    execFileSync('rm', ['-f', bad]);
    assert.equal((await publishDirectory(src, { layout, settings: SETTINGS })).revision, 3, 'the next publish succeeds');
  });
});

test('the second pass publishes what the first saw: from kept listings, or from listings taken again and refused when changed', async () => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src');
    makeTree(src, 200, 1 << 20);
    const publishWith = async (name: string, listingCacheEntries: number | undefined, hooks = {}) => {
      const layout = repoLayout(join(dir, name), FQRN);
      await createRepository(layout, SETTINGS);
      await publishDirectory(src, { layout, settings: SETTINGS, listingCacheEntries, hooks });
      return { layout, rows: await readBack(layout, dir) };
    };
    // Every listing kept, none, and a budget that keeps some directories and lists the others again: the same rows.
    const all = await publishWith('all', undefined);
    for (const [name, budget] of [['none', 0], ['some', 40]] as const) {
      const other = await publishWith(name, budget);
      assert.deepEqual(new Set(other.rows.keys()), new Set(all.rows.keys()), name);
      for (const [p, r] of all.rows) assert.deepEqual(other.rows.get(p), r, `${name}: ${p}`);
      await checkRepository(other.layout);
    }
    // A file added after the first pass: not published from kept listings; refused when listed again.
    const late = join(src, 'many', 'g5', 'late');
    const addLate = { point: (p: string) => { if (p === 'walked') writeFileSync(late, 'late'); } };
    const kept = await publishWith('kept', undefined, addLate);
    assert.equal(kept.rows.has('/many/g5/late'), false);
    execFileSync('rm', ['-f', late]);
    await assert.rejects(publishWith('relisted', 0, addLate), (e: Error & { code?: string }) => e.code === 'PUBLISH_SOURCE' && e.message.includes('changed during the publish'));
  });
});

test('a second concurrent publish is refused with PUBLISH_LOCKED', async () => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src');
    mkdirSync(src);
    const layout = await makeRepo(dir);
    const lock = await acquirePublishLock(layout.lock, FQRN);
    try {
      await assert.rejects(publishDirectory(src, { layout, settings: SETTINGS }), (e: Error & { code?: string }) => e.code === 'PUBLISH_LOCKED' && e.message.includes(String(process.pid)));
    } finally {
      await lock.release();
    }
    await publishDirectory(src, { layout, settings: SETTINGS });
  });
});

test('a stale lock left by a dead process is taken over', async () => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src');
    mkdirSync(src);
    const layout = await makeRepo(dir);
    const dead = spawnSync('true').pid!;
    writeFileSync(layout.lock, JSON.stringify({ pid: dead, host: (await import('node:os')).hostname() }));
    const r = await publishDirectory(src, { layout, settings: SETTINGS });
    assert.equal(r.revision, 2);
  });
});

test('a republish keeps the catalogs whose source is unchanged, nested ones below them included, and rewrites the catalogs on the changed paths', async () => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src');
    for (const d of ['a/b', 'c']) {
      mkdirSync(join(src, d), { recursive: true });
      writeFileSync(join(src, d, '.cvmfscatalog'), '');
      writeFileSync(join(src, d, 'f'), `in ${d}\n`);
    }
    writeFileSync(join(src, 'a', 'g'), 'in a\n');
    writeFileSync(join(src, 'a', '.cvmfscatalog'), '');
    const layout = await makeRepo(dir);
    const ids = async (): Promise<Map<string, string>> => {
      const out = new Map<string, string>();
      await forEachCatalog(new FsStore(layout.srv), (await readHead(layout)).rootId, dir, (mount, id) => { out.set(mount, id.hex); });
      return out;
    };
    await publishDirectory(src, { layout, settings: SETTINGS });
    const first = await ids();
    assert.deepEqual([...first.keys()].sort(), ['', '/a', '/a/b', '/c']);
    const touch = (rel: string, text: string): void => {
      writeFileSync(join(src, rel), text);
      const t = new Date(Date.now() + 10_000 + text.length * 1000);
      utimesSync(join(src, rel), t, t);
    };
    // Twice a change in /c only: /a and the /a/b below it are kept both times (the second time from
    // what the first republish recorded for them).
    for (const text of ['one\n', 'three\n']) {
      const before = await ids();
      touch('c/f', text);
      const r = await publishDirectory(src, { layout, settings: SETTINGS });
      const after = await ids();
      assert.deepEqual([r.catalogsWritten, r.catalogsReused, r.objectsWritten, r.filesReused], [2, 2, 1, r.files - 1]);
      assert.equal(after.get('/a'), before.get('/a'));
      assert.equal(after.get('/a/b'), before.get('/a/b'));
      assert.notEqual(after.get('/c'), before.get('/c'));
      assert.notEqual(after.get(''), before.get(''));
    }
    // A change deep in /a/b rewrites /a/b, /a and the root; /c is kept.
    const before = await ids();
    touch('a/b/f', 'deep change\n');
    const r = await publishDirectory(src, { layout, settings: SETTINGS });
    const after = await ids();
    assert.deepEqual([r.catalogsWritten, r.catalogsReused], [3, 1]);
    assert.equal(after.get('/c'), before.get('/c'));
    assert.notEqual(after.get('/a/b'), before.get('/a/b'));
    const back = await readBack(layout, dir);
    assert.equal(back.get('/a/b/f')!.content!.toString(), 'deep change\n');
    assert.equal(back.get('/c/f')!.content!.toString(), 'three\n');
    assert.equal(back.get('/a/g')!.content!.toString(), 'in a\n');
    await checkRepository(layout);
  });
});
