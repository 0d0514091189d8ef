// The client against the cvmfs_server fixture repository served over loopback: nested catalogs, hardlinks,
// symlinks and every file's bytes; verification failures (objects, manifest, whitelist, rollback);
// offline start; a new revision becoming visible after checkForUpdate.
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, truncateSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { inflateSync, deflateSync } from 'node:zlib';
import { isGridboxError } from '../errors.js';
import type { ObjectId } from '../hash/object-id.js';
import { generateRsaKeyPair } from '../keys/keys.js';
import { md5path } from '../catalog/md5path.js';
import type { Client } from './index.js';
import { deriveRootCatalog, FQRN, objectFile, openFixtureClient, setupFixture, writeManifest, writeWhitelist, type Fixture } from '../testing/legacy-fixture.js';

let fx: Fixture;
let cacheBase: string;
const clients: Client[] = [];

beforeEach(async () => {
  fx = await setupFixture();
  cacheBase = join(fx.tmp, 'cache');
});
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await fx.close();
});

async function open(over: Record<string, string> = {}, now?: () => number): Promise<Client> {
  const c = await openFixtureClient(fx, cacheBase, over, now);
  clients.push(c);
  return c;
}

async function readAll(c: Client, path: string): Promise<Buffer> {
  const h = await c.open(path);
  try {
    return await c.read(h, 0, (await c.getattr(path)).size + 10);
  } finally {
    await c.release(h);
  }
}

const hasCode = (code: string | string[]) => (e: unknown): boolean => {
  assert.ok(isGridboxError(e), `expected a GridboxError, got ${String(e)}`);
  assert.ok(([] as string[]).concat(code).includes(e.code), `expected ${String(code)}, got ${e.code}: ${e.message}`);
  return true;
};

/** Every path below `dir`, depth first, through listings only. */
async function walk(c: Client, dir = ''): Promise<string[]> {
  const out: string[] = [];
  for (const n of await c.listing(dir)) {
    out.push(n.path);
    if (n.entry.entry.type === 'dir') out.push(...(await walk(c, n.path)));
  }
  return out;
}

test('reads the whole fixture through nested catalogs with every file byte-identical to its object', async () => {
  const c = await open();
  assert.equal(c.revision(), 2);
  assert.equal(c.rootHash(), fx.original.C.hex);
  const paths = await walk(c);
  // 3 nested catalogs below the root, 2 more one level deeper: all reached by walking.
  for (const p of ['/needs_migration/doesnt_need_migration/foo', '/doesnt_need_migration/doesnt_need_migration_either/baz', '/needs_commit_due_to_child/needs_migration/hardlink_bar_2']) {
    assert.ok(paths.includes(p), `missing ${p}`);
  }
  let files = 0;
  for (const p of paths) {
    const n = (await c.lookup(p))!;
    if (n.entry.entry.type !== 'file') continue;
    const expected = inflateSync(readFileSync(objectFile(fx, n.entry.id!)));
    assert.deepEqual(await readAll(c, p), expected, p);
    assert.equal(n.attr.size, expected.length);
    files++;
  }
  assert.ok(files >= 40, `only ${files} files`);
  const s = c.statfs();
  assert.equal(s.counters.regular, files, 'statfs counts every regular file of the tree');
  assert.equal(c.stats().openFiles, 0);
});

test('hardlinks share one inode per group, symlinks resolve, the root is inode 256', async () => {
  const c = await open();
  assert.equal((await c.getattr('/')).ino, 256);
  const foo = await c.getattr('/foo');
  const hfoo = await c.getattr('/hardlink_foo');
  const bar = await c.getattr('/bar');
  assert.equal(foo.ino, hfoo.ino);
  assert.equal(foo.nlink, 2);
  assert.notEqual(foo.ino, bar.ino);
  const three = await Promise.all(['bar', 'hardlink_bar_1', 'hardlink_bar_2'].map((n) => c.getattr(`/needs_commit_due_to_child/needs_migration/${n}`)));
  assert.equal(new Set(three.map((a) => a.ino)).size, 1);
  assert.equal(three[0].nlink, 3);
  // Same group number in another catalog is another inode.
  assert.notEqual(three[0].ino, bar.ino);
  assert.equal(await c.readlink('/needs_migration/symlink_foo'), 'foo');
  assert.equal((await c.getattr('/needs_migration/symlink_foo')).mode & 0o170000, 0o120000);
  const x = await c.xattrs('/foo');
  assert.equal(x['user.fqrn'].toString(), FQRN);
  assert.equal(x['user.revision'].toString(), '2');
  assert.equal(x['user.hash'].toString(), 'd85ab7e835750785b0535d4fbba7d59e921b1f48');
  assert.equal(await c.lookup('/no/such/thing'), undefined);
  await assert.rejects(c.getattr('/nope'), hasCode('NOT_FOUND'));
});

test('concurrent reads of one uncached object download it once', async () => {
  const c = await open();
  // A slow server makes the six requests overlap for certain.
  fx.delayMs = 150;
  await c.getattr('/needs_migration/simple_directory/bar'); // loads the nested catalog first (a miss of its own)
  const before = c.stats().misses;
  const results = await Promise.all(Array.from({ length: 6 }, () => readAll(c, '/needs_migration/simple_directory/bar')));
  assert.equal(new Set(results.map((b) => b.toString('hex'))).size, 1);
  assert.equal(c.stats().misses - before, 1);
});

test('a corrupted object on the server is STORE_HASH_MISMATCH naming the object and never returned or cached', async () => {
  const c = await open();
  const node = (await c.lookup('/baz'))!;
  writeFileSync(objectFile(fx, node.entry.id!), deflateSync(Buffer.from('evil')));
  await assert.rejects(c.open('/baz'), (e: unknown) => {
    hasCode('STORE_HASH_MISMATCH')(e);
    assert.match((e as Error).message, new RegExp(node.entry.id!.hex));
    return true;
  });
  assert.equal(existsSync(join(cacheBase, 'shared', node.entry.id!.hex.slice(0, 2), node.entry.id!.hex.slice(2))), false);
});

test('a truncated object is refused', async () => {
  const c = await open();
  const node = (await c.lookup('/bar'))!;
  truncateSync(objectFile(fx, node.entry.id!), 5);
  await assert.rejects(c.open('/bar'), hasCode(['STORE_TRUNCATED', 'STORE_HASH_MISMATCH']));
});

test('an object whose size differs from the catalog is STORE_SIZE_MISMATCH', async () => {
  const [a, b] = md5path('/foo');
  const root = deriveRootCatalog(fx, fx.original.C, `UPDATE catalog SET size = 5 WHERE md5path_1 = ${a} AND md5path_2 = ${b}`, 3);
  writeManifest(fx, { C: root, S: 3, T: fx.original.T! + 10 });
  const c = await open();
  assert.equal((await c.getattr('/foo')).size, 5);
  await assert.rejects(c.open('/foo'), hasCode('STORE_SIZE_MISMATCH'));
});

test('a tampered manifest is MANIFEST_BAD_SIGNATURE', async () => {
  const bytes = readFileSync(join(fx.repo, '.cvmfspublished'));
  writeFileSync(join(fx.repo, '.cvmfspublished'), Buffer.from(bytes.toString('latin1').replace('\nS2\n', '\nS9\n'), 'latin1'));
  await assert.rejects(open(), hasCode('MANIFEST_BAD_SIGNATURE'));
});

test('a manifest signed by another key is MANIFEST_BAD_SIGNATURE', async () => {
  writeManifest(fx, { T: fx.original.T! + 1 }, generateRsaKeyPair().privateKeyPem);
  await assert.rejects(open(), hasCode('MANIFEST_BAD_SIGNATURE'));
});

test('an expired whitelist is WHITELIST_EXPIRED', async () => {
  writeWhitelist(fx, { created: new Date(Date.now() - 40 * 86_400_000), expires: new Date(Date.now() - 2 * 3_600_000) });
  await assert.rejects(open(), hasCode('WHITELIST_EXPIRED'));
});

test('a whitelist for another repository is refused', async () => {
  writeWhitelist(fx, { fqrn: 'other.example.org' });
  await assert.rejects(open(), hasCode('WHITELIST_NAME_MISMATCH'));
});

test('a manifest older than one already seen is MANIFEST_OUTDATED (rollback refused)', async () => {
  const c = await open();
  assert.equal(c.revision(), 2);
  // The previous revision (root catalog e6ce…, revision 1), genuinely signed but older.
  const old: ObjectId = { algorithm: 'sha1', hex: 'e6ceff5bfeded1ddc5d21dd0ce32aca99013e31e' };
  writeManifest(fx, { C: old, S: 1, T: fx.original.T! - 100 });
  const r = await c.checkForUpdate();
  assert.equal(r.updated, false);
  assert.ok(hasCode('MANIFEST_OUTDATED')(r.error));
  assert.equal(c.revision(), 2);
  assert.equal(c.stats().offline, true);
  assert.ok((await c.lookup('/foo')) !== undefined, 'the current revision is still served');
  await c.close();
  // A fresh session on the same cache remembers revision 2 through the breadcrumb.
  await assert.rejects(open(), hasCode('MANIFEST_OUTDATED'));
});

test('starts offline from the breadcrumb and cached catalogs when every server is down', async () => {
  const first = await open();
  const bytes = await readAll(first, '/needs_migration/foo');
  await first.close();
  await fx.server.close();
  const c = await open({ CVMFS_SERVER_URL: `${fx.url};http://127.0.0.1:1/cvmfs/${FQRN}` });
  assert.equal(c.stats().offline, true);
  assert.equal(c.revision(), 2);
  assert.deepEqual(await readAll(c, '/needs_migration/foo'), bytes);
  assert.ok((await c.listing('/needs_migration')).length > 0);
  // Without a breadcrumb there is nothing to start from.
  cacheBase = join(fx.tmp, 'cache-empty');
  await assert.rejects(open(), hasCode('DOWNLOAD_ALL_FAILED'));
});

test('a newer revision becomes visible after checkForUpdate; files opened before keep their content', async () => {
  // Start at revision 1 (root catalog e6ce…, which holds only /new_repository).
  const r1: ObjectId = { algorithm: 'sha1', hex: 'e6ceff5bfeded1ddc5d21dd0ce32aca99013e31e' };
  writeManifest(fx, { C: r1, S: 1, T: fx.original.T! - 100 });
  const c = await open();
  assert.equal(c.revision(), 1);
  assert.deepEqual((await c.listing('/')).map((n) => n.name), ['new_repository']);
  const h = await c.open('/new_repository');
  const before = await c.read(h, 0, 100);
  writeManifest(fx, { T: fx.original.T! });
  const r = await c.checkForUpdate();
  assert.deepEqual({ updated: r.updated, revision: r.revision }, { updated: true, revision: 2 });
  assert.equal(c.revision(), 2);
  assert.equal(await c.lookup('/new_repository'), undefined);
  assert.ok((await c.lookup('/needs_migration/doesnt_need_migration/foo')) !== undefined);
  assert.deepEqual(await c.read(h, 0, 100), before, 'the open file still reads the old content');
  await c.release(h);
  const again = await c.checkForUpdate();
  assert.equal(again.updated, false);
  assert.equal(readdirSync(join(cacheBase, 'shared')).includes(`cvmfschecksum.${FQRN}`), true);
});

test('the catalog TTL (default 240 s, capped by CVMFS_MAX_TTL) schedules checks; a failed check retries after 180 s', async () => {
  let now = Date.now();
  const c = await open({}, () => now);
  // The fixture's root catalog has no TTL property: 240 s.
  assert.equal(c.ttlMs(), 240_000);
  writeManifest(fx, { T: fx.original.T! + 50, D: 240 });
  now += 239_000;
  await c.lookup('/foo');
  assert.equal(c.stats().offline, false);
  // Break the repository: the next check fails and the session goes offline, still serving revision 2.
  writeWhitelist(fx, { created: new Date(Date.now() - 40 * 86_400_000), expires: new Date(Date.now() - 2 * 3_600_000) });
  now += 2_000;
  await c.lookup('/foo'); // triggers the background check
  await c.checkForUpdate().catch(() => undefined); // joins it
  assert.equal(c.stats().offline, true);
  assert.equal(c.revision(), 2);
  writeWhitelist(fx);
  now += 170_000;
  await c.lookup('/foo');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(c.stats().offline, true, 'no retry before 180 s');
  now += 11_000;
  const r = await c.checkForUpdate();
  assert.equal(r.error, undefined);
  assert.equal(c.stats().offline, false);
  const capped = await openFixtureClient(fx, join(fx.tmp, 'cache-ttl'), { CVMFS_MAX_TTL: '1' });
  clients.push(capped);
  assert.equal(capped.ttlMs(), 60_000);
});
