// The small catalog codecs: md5path split (§4.3), flags (§4.4) and the xattr blob with its limits (§4.6).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isGridboxError } from '../errors.js';
import { decodeFlags, encodeFlags } from './flags.js';
import { catalogParentPath, md5path, normalizeCatalogPath } from './md5path.js';
import { parseXattrs, serializeXattrs } from './xattr-blob.js';

test('md5path() splits MD5 into signed little-endian int64 halves, root "" as in the fixture', () => {
  assert.deepEqual(md5path(''), [338333539836370388n, 9098107892288553193n]);
  // values from the fixture's root catalog rows
  assert.deepEqual(md5path('/needs_migration'), [2409901422405569183n, 2813813991256840431n]);
  assert.deepEqual(md5path('/needs_commit_due_to_child'), [-5944742488576281812n, 8979594564990468929n]);
  assert.deepEqual(md5path('/foo'), [5745132282796244766n, -5819618580357280866n]);
});

test('catalog paths normalise to the hashed form and know their parent', () => {
  assert.equal(normalizeCatalogPath('/'), '');
  assert.equal(normalizeCatalogPath('a/b/'), '/a/b');
  assert.equal(catalogParentPath('/a'), '');
  assert.equal(catalogParentPath('/a/b'), '/a');
  assert.equal(catalogParentPath(''), '');
});

test('encodeFlags() gives the typical values of §4.4 and decodeFlags() inverts them', () => {
  assert.equal(encodeFlags({ type: 'dir' }), 1);
  assert.equal(encodeFlags({ type: 'dir', nestedMountpoint: true }), 3);
  assert.equal(encodeFlags({ type: 'dir', nestedRoot: true, nestedMountpoint: true }), 33);
  assert.equal(encodeFlags({ type: 'file', algorithm: 'sha1' }), 4);
  assert.equal(encodeFlags({ type: 'file', algorithm: 'sha1', chunked: true }), 68);
  assert.equal(encodeFlags({ type: 'file', algorithm: 'sha1', external: true }), 132);
  assert.equal(encodeFlags({ type: 'file', algorithm: 'sha1', compression: 'none' }), 2052);
  assert.equal(encodeFlags({ type: 'file', algorithm: 'rmd160' }), 260);
  assert.equal(encodeFlags({ type: 'file', algorithm: 'shake128' }), 516);
  assert.equal(encodeFlags({ type: 'symlink' }), 12);
  assert.equal(encodeFlags({ type: 'fifo' }), 20);
  assert.equal(encodeFlags({ type: 'dir', hidden: true }), 0x8001);
  assert.equal(encodeFlags({ type: 'file', algorithm: 'sha1', directIo: true }), 0x10004);
  // compression and direct I/O belong to regular files only
  assert.equal(encodeFlags({ type: 'symlink', compression: 'none', directIo: true }), 12);
  const d = decodeFlags(4 | 64 | 512 | 2048 | 0x8000);
  assert.deepEqual([d.file, d.chunked, d.algorithm, d.compression, d.hidden, d.dir], [true, true, 'shake128', 'none', true, false]);
  assert.equal(decodeFlags(33).nestedRoot, true);
  assert.equal(decodeFlags(0x4001).bindMountpoint, true);
});

test('serializeXattrs() sorts keys, round-trips through parseXattrs(), and is null when empty', () => {
  const blob = serializeXattrs({ 'user.z': Buffer.from('last'), 'security.x': Buffer.alloc(0), 'user.a': Buffer.alloc(255, 1) })!;
  assert.deepEqual([blob[0], blob[1], blob[2]], [1, 3, 'security.x'.length]);
  const back = parseXattrs(blob);
  assert.deepEqual(Object.keys(back), ['security.x', 'user.a', 'user.z']);
  assert.deepEqual(back['user.a'], Buffer.alloc(255, 1));
  assert.equal(serializeXattrs({}), null);
  assert.equal(serializeXattrs(undefined), null);
});

test('serializeXattrs() refuses values, names and counts past the one-byte limits', () => {
  const fails = (x: Record<string, Buffer>) => assert.throws(() => serializeXattrs(x, '/p'), (e: unknown) => isGridboxError(e, 'CATALOG_INVALID') && e.message.includes('"/p"'));
  fails({ 'user.a': Buffer.alloc(256) });
  fails({ ['u'.repeat(256)]: Buffer.alloc(1) });
  fails({ '': Buffer.alloc(1) });
  fails(Object.fromEntries(Array.from({ length: 256 }, (_, i) => [`user.${i}`, Buffer.alloc(0)])));
});

test('parseXattrs() rejects truncated, oversized-count, wrong-version and trailing-garbage blobs', () => {
  const good = serializeXattrs({ 'user.a': Buffer.from('xyz') })!;
  const bad = (b: Buffer) => assert.throws(() => parseXattrs(b, '/q'), (e: unknown) => isGridboxError(e, 'CATALOG_INVALID') && e.message.includes('"/q"'));
  bad(good.subarray(0, good.length - 1));
  bad(Buffer.from([1]));
  bad(Buffer.from([2, 0]));
  bad(Buffer.concat([good, Buffer.from([0])]));
  const moreCount = Buffer.from(good);
  moreCount[1] = 2;
  bad(moreCount);
  assert.deepEqual(parseXattrs(Buffer.from([1, 0])), {});
});
