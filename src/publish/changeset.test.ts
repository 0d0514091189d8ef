import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { FsStore } from '../store/fs-store.js';
import { readObject } from '../store/object-io.js';
import type { Entry } from '../fstree/entry.js';
import { publishChangesWith, type ChangeItem } from './changeset.js';
import { createRepository } from './create-repository.js';
import { readHead } from './head.js';
import { DEFAULT_SETTINGS, repoLayout } from './repo-layout.js';
import type { FileContent } from './tree.js';

const SETTINGS = { ...DEFAULT_SETTINGS, chunkMin: 64 << 10, chunkAvg: 128 << 10, chunkMax: 256 << 10 };
const entry = (path: string, type: Entry['type'], size = 4096): Entry => ({ path, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size, mtime: 1, mtimeNs: 0 });

async function bytesOf(store: FsStore, c: FileContent): Promise<Buffer> {
  if (c.id !== undefined) return readObject(store, c.id, '', { compression: c.compression });
  return Buffer.concat(await Promise.all(c.chunks!.map((ch) => readObject(store, ch.id, 'P', { compression: c.compression }))));
}

test('publishChangesWith() stores bytes while the changes are built, compresses duplicates once, and publishes nothing for undefined', async () => {
  await withTempDir(async (dir) => {
    const layout = repoLayout(join(dir, 'repo'), 'changeset.gridbox.local');
    await createRepository(layout, SETTINGS);
    const rev0 = (await readHead(layout)).revision;
    assert.equal(await publishChangesWith(async () => undefined, { layout, settings: SETTINGS }), undefined);
    assert.equal((await readHead(layout)).revision, rev0, 'nothing published');

    const small = Buffer.from('same small content\n');
    const big = randomBytes(5 << 20); // above a batch: sent alone, and chunked
    // Many small files so that they span several batches, a few of them equal.
    const files = Array.from({ length: 150 }, (_, i) => (i % 50 === 0 ? small : Buffer.from(`file ${i}\n`)));
    let bigChunks = 0;
    const report = await publishChangesWith(async (ctx) => {
      const items: ChangeItem[] = [{ entry: entry('', 'dir') }];
      const stored: Promise<void>[] = [];
      for (const [i, b] of [...files, big].entries()) {
        const it: ChangeItem = { entry: entry(`f${i}`, 'file', b.length), fresh: true };
        items.push(it);
        stored.push((await ctx.ingest.storeBytes(b)).stored.then((c) => { it.content = c; }));
      }
      ctx.ingest.flush();
      await Promise.all(stored);
      bigChunks = items[items.length - 1].content!.chunks?.length ?? 0;
      return [{ kind: 'tree', at: 'img', items }];
    }, { layout, settings: SETTINGS, maxInflightBytes: 1 << 20 });
    assert.ok(report);
    assert.equal(report.revision, rev0 + 1);
    assert.equal(report.files, files.length + 1);
    assert.equal(report.filesReused, 0, 'fresh contents are not counted as reused');
    const distinct = new Set(files.map((b) => b.toString())).size;
    assert.ok(bigChunks > 1, 'the large file is chunked');
    assert.equal(report.objectsWritten, distinct + bigChunks, 'each distinct content stored once');
    assert.equal((await readHead(layout)).revision, rev0 + 1);
  });
});

test('the changeset ingest resolves each file with content that reads back as its bytes', async () => {
  await withTempDir(async (dir) => {
    const layout = repoLayout(join(dir, 'repo'), 'changeset.gridbox.local');
    await createRepository(layout, SETTINGS);
    const inputs = [Buffer.alloc(0), Buffer.from('x'), randomBytes(300 << 10), Buffer.from('x'), randomBytes(5 << 20)];
    const contents: FileContent[] = [];
    await publishChangesWith(async (ctx) => {
      const all = await Promise.all(inputs.map(async (b) => (await ctx.ingest.storeBytes(b)).stored));
      ctx.ingest.flush();
      contents.push(...(await Promise.all(all)));
      return undefined;
    }, { layout, settings: SETTINGS, maxInflightBytes: 64 << 10 });
    const store = new FsStore(layout.srv);
    for (const [i, c] of contents.entries()) assert.ok((await bytesOf(store, c)).equals(inputs[i]), `input ${i}`);
    assert.ok(contents[2].chunks !== undefined && contents[2].chunks.length > 1, 'a file above the chunk minimum is chunked');
  });
});
