// catalogObjectRefs on catalogs made by `gridbox publish`: the same objects as CatalogReader.objectRefs,
// and against an older revision's catalog exactly the objects the new one adds (whole files and chunks).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { inflateSync } from 'node:zlib';
import { openCatalog } from '../catalog/catalog-reader.js';
import { objectKey } from '../hash/object-id.js';
import { parseSignedManifest } from '../manifest/manifest.js';
import { withTempDir } from '../testing/tmp.js';
import { catalogObjectRefs } from './catalog-refs.js';

const FQRN = 'refs.example.org';
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const exec = promisify(execFile);
const CHUNK_FLAGS = ['--chunk-min', '65536', '--chunk-avg', '131072', '--chunk-max', '262144'];

/** Inflates the root catalog of the repository's current revision into `out`. */
async function rootCatalog(root: string, out: string): Promise<string> {
  const srv = join(root, 'srv', FQRN);
  const c = parseSignedManifest(await readFile(join(srv, '.cvmfspublished'))).fields.C;
  const key = objectKey(c, 'C');
  await writeFile(out, inflateSync(await readFile(join(srv, 'data', key.slice(0, 2), key.slice(2)))));
  return out;
}

const keys = (refs: { id: { hex: string; algorithm: string }; suffix: string }[]) =>
  new Set(refs.map((r) => objectKey(r.id as never, r.suffix as never)));

test('catalogObjectRefs lists what objectRefs lists, and against an older catalog only what is new', { timeout: 120_000 }, async () => withTempDir(async (dir) => {
  const src = join(dir, 'src');
  const root = join(dir, 'repo');
  await mkdir(join(src, 'a'), { recursive: true });
  for (let i = 0; i < 30; i++) await writeFile(join(src, 'a', `f${i}`), `file ${i}\n`);
  await writeFile(join(src, 'a', 'same1'), 'duplicate content\n');
  await writeFile(join(src, 'a', 'same2'), 'duplicate content\n');
  await writeFile(join(src, 'a', 'empty'), '');
  const big = randomBytes(600 * 1024);
  await writeFile(join(src, 'big.bin'), big);
  await exec(process.execPath, [MAIN, 'mkfs', FQRN, '--root', root]);
  await exec(process.execPath, [MAIN, 'publish', FQRN, src, '--root', root, ...CHUNK_FLAGS]);
  const older = await rootCatalog(root, join(dir, 'old.sqlite'));

  // Revision 3: two files changed, one added, the big file changed near its end (some chunks stay).
  await writeFile(join(src, 'a', 'f3'), 'changed 3\n');
  await writeFile(join(src, 'a', 'f7'), 'changed 7\n');
  await writeFile(join(src, 'a', 'new'), 'new file\n');
  big.fill(7, big.length - 1000);
  await writeFile(join(src, 'big.bin'), big);
  await exec(process.execPath, [MAIN, 'publish', FQRN, src, '--root', root, ...CHUNK_FLAGS]);
  const newer = await rootCatalog(root, join(dir, 'new.sqlite'));

  const expected = (file: string) => {
    const r = openCatalog(file);
    try { return keys(r.objectRefs()); } finally { r.close(); }
  };
  const oldKeys = expected(older);
  const newKeys = expected(newer);
  assert.ok([...newKeys].some((k) => k.endsWith('P')) && [...newKeys].some((k) => !k.endsWith('P')), 'both chunks and whole files');
  assert.deepEqual(keys(catalogObjectRefs(newer)), newKeys);
  assert.deepEqual(keys(catalogObjectRefs(older)), oldKeys);

  const added = new Set([...newKeys].filter((k) => !oldKeys.has(k)));
  const diff = keys(catalogObjectRefs(newer, older));
  assert.deepEqual(diff, added);
  assert.ok(added.size >= 4 && added.size < newKeys.size, `a few objects are new (${added.size} of ${newKeys.size})`);
  assert.ok([...added].some((k) => k.endsWith('P')), 'the changed chunk is among them');
  assert.equal(catalogObjectRefs(older, older).length, 0, 'a catalog adds nothing to itself');
}));
