import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { FsStore } from '../store/fs-store.js';
import { checkRepository } from './check.js';
import { createRepository } from './create-repository.js';
import { readHead } from './head.js';
import { collectGarbage, editTags, listTags, rollback } from './maintenance.js';
import { publishDirectory } from './publisher.js';
import { DEFAULT_SETTINGS, repoLayout } from './repo-layout.js';
import { forEachCatalog } from './revision-load.js';

async function fileNames(layout: ReturnType<typeof repoLayout>, tmp: string): Promise<string[]> {
  const out: string[] = [];
  await forEachCatalog(new FsStore(layout.srv), (await readHead(layout)).rootId, tmp, (_m, _i, _s, rows) => { for (const r of rows) if (r.entry.type === 'file') out.push(r.path); });
  return out.sort();
}

test('tags, rollback to a tag as a new revision, and gc of unreferenced objects', async () => {
  await withTempDir(async (dir) => {
    const layout = repoLayout(join(dir, 'repo'), 'maint.gridbox.local');
    await createRepository(layout, DEFAULT_SETTINGS);
    const src = join(dir, 'src');
    mkdirSync(join(src, 'n'), { recursive: true });
    writeFileSync(join(src, 'n', '.cvmfscatalog'), '');
    writeFileSync(join(src, 'v1only'), 'one');
    await publishDirectory(src, { layout, settings: DEFAULT_SETTINGS, tag: 'v1' });
    await editTags(layout, { add: 'also-v1', description: 'second name' });
    assert.deepEqual((await listTags(layout)).map((t) => t.name).sort(), ['also-v1', 'trunk', 'trunk-previous', 'v1']);
    await editTags(layout, { remove: ['also-v1'] });
    await assert.rejects(editTags(layout, { remove: ['nope'] }), { code: 'TAG_UNKNOWN' });

    writeFileSync(join(src, 'v2only'), 'two');
    writeFileSync(join(src, 'v1only'), 'changed');
    await publishDirectory(src, { layout, settings: DEFAULT_SETTINGS });
    writeFileSync(join(src, 'v3only'), 'three');
    await publishDirectory(src, { layout, settings: DEFAULT_SETTINGS });
    assert.equal((await readHead(layout)).revision, 4);

    const head = await rollback(layout, 'v1');
    assert.equal(head.revision, 5);
    assert.deepEqual(await fileNames(layout, dir), ['/n/.cvmfscatalog', '/v1only']);
    await assert.rejects(rollback(layout, 'missing'), { code: 'TAG_UNKNOWN' });

    // Revision 3's "v2only" content and the changed v1only are referenced by trunk-previous (revision 4) only.
    const dry = await collectGarbage(layout, { dryRun: true });
    const real = await collectGarbage(layout);
    assert.deepEqual(real.keys.sort(), dry.keys.sort());
    assert.ok(real.deleted > 0, 'old catalogs and history objects are garbage');
    assert.equal((await collectGarbage(layout)).deleted, 0);
    await checkRepository(layout);
  });
});
