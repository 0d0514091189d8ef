import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, linkSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { withTempDir } from '../testing/tmp.js';
import { FsStore } from '../store/fs-store.js';
import { readObject } from '../store/object-io.js';
import { checkRepository } from './check.js';
import { createRepository } from './create-repository.js';
import { readHead } from './head.js';
import { publishDirectory } from './publisher.js';
import { DEFAULT_SETTINGS, repoLayout } from './repo-layout.js';
import { forEachCatalog } from './revision-load.js';
import { ingestTar } from './tar-ingest.js';
import type { CatalogEntry } from '../catalog/types.js';

const SETTINGS = { ...DEFAULT_SETTINGS, chunkMin: 64 << 10, chunkAvg: 128 << 10, chunkMax: 256 << 10 };

async function rows(layout: ReturnType<typeof repoLayout>, tmp: string): Promise<Map<string, CatalogEntry>> {
  const out = new Map<string, CatalogEntry>();
  await forEachCatalog(new FsStore(layout.srv), (await readHead(layout)).rootId, tmp, (_m, _i, _s, rs) => { for (const r of rs) out.set(r.path, r); });
  return out;
}

test('ingest publishes a tar stream at a path, keeping the rest of the tree', async () => {
  await withTempDir(async (dir) => {
    const layout = repoLayout(join(dir, 'repo'), 'tar.gridbox.local');
    await createRepository(layout, SETTINGS);
    const keep = join(dir, 'keep');
    mkdirSync(keep);
    writeFileSync(join(keep, 'stays'), 'here');
    await publishDirectory(keep, { layout, settings: SETTINGS });
    const img = join(dir, 'img');
    mkdirSync(join(img, 'usr', 'bin'), { recursive: true });
    const big = randomBytes(1 << 20);
    writeFileSync(join(img, 'usr', 'bin', 'tool'), big);
    linkSync(join(img, 'usr', 'bin', 'tool'), join(img, 'usr', 'bin', 'tool2'));
    symlinkSync('usr/bin', join(img, 'bin'));
    execFileSync('tar', ['-C', img, '-czf', join(dir, 'img.tgz'), '.']);
    const { decompressLayer } = await import('../tar/decompress.js');
    const r = await ingestTar(decompressLayer(createReadStream(join(dir, 'img.tgz'))), { layout, settings: SETTINGS, at: '/images/one' });
    assert.equal(r.revision, 3);
    const back = await rows(layout, dir);
    assert.ok(back.get('/stays'), 'content outside --at is kept');
    assert.equal(back.get('/images/one/bin')!.entry.target, 'usr/bin');
    const tool = back.get('/images/one/usr/bin/tool')!;
    assert.ok(tool.chunks!.length > 1);
    const store = new FsStore(layout.srv);
    const bytes = Buffer.concat(await Promise.all(tool.chunks!.map((c) => readObject(store, c.id, 'P', { compression: 'zlib', expectedSize: c.size }))));
    assert.ok(bytes.equals(big));
    const tool2 = back.get('/images/one/usr/bin/tool2')!;
    assert.ok(tool.hardlinkGroup > 0 && tool2.hardlinkGroup === tool.hardlinkGroup);
    await checkRepository(layout);
  });
});

test('ingest refuses a tar entry that escapes the root and leaves the revision as it was', async () => {
  await withTempDir(async (dir) => {
    const layout = repoLayout(join(dir, 'repo'), 'tar.gridbox.local');
    await createRepository(layout, SETTINGS);
    const before = readFileSync(layout.manifest);
    const pack = tarStream.pack();
    pack.entry({ name: 'ok.txt' }, 'fine');
    pack.entry({ name: '../../evil' }, 'bad');
    pack.finalize();
    await assert.rejects(ingestTar(Readable.from(pack as unknown as AsyncIterable<Uint8Array>), { layout, settings: SETTINGS, at: '/x' }), { code: 'OCI_UNSAFE_PATH' });
    assert.ok(readFileSync(layout.manifest).equals(before));
  });
});
