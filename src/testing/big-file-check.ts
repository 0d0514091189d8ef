// Checks of a published big file against its source, for the at-size tests: its catalog row, its chunk
// list (cut marks recomputed here with the plain xor32 chunker, every chunk's size, every chunk object
// present), and every chunk's content (read from the store, hash-verified, inflated) equal to the
// source's bytes at that offset. Test support only.
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync } from 'node:fs';
import type { CatalogEntry } from '../catalog/types.js';
import { Xor32Chunker } from '../hash/chunker.js';
import { objectKey } from '../hash/object-id.js';
import { readHead } from '../publish/head.js';
import type { RepoLayout, RepoSettings } from '../publish/repo-layout.js';
import { forEachCatalog } from '../publish/revision-load.js';
import { FsStore } from '../store/fs-store.js';
import { readObject } from '../store/object-io.js';

/** The catalog row of `path` ("/a/b") in the head revision. */
export async function headRow(layout: RepoLayout, path: string, tmpDir: string): Promise<CatalogEntry> {
  let found: CatalogEntry | undefined;
  await forEachCatalog(new FsStore(layout.srv), (await readHead(layout)).rootId, tmpDir, (_m, _id, _s, rows) => {
    for (const r of rows) if (r.path === path && !r.nestedMountpoint) found = r;
  });
  assert.ok(found, `no ${path} in the head revision`);
  return found;
}

/** Cut offsets of a file, with the chunker fed 1 MiB blocks (no hole shortcut: an independent reference). */
export function expectedCuts(path: string, settings: RepoSettings): number[] {
  const chunker = new Xor32Chunker({ minBytes: settings.chunkMin, avgBytes: settings.chunkAvg, maxBytes: settings.chunkMax });
  const buf = Buffer.allocUnsafe(1 << 20);
  const cuts: number[] = [];
  const fd = openSync(path, 'r');
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      cuts.push(...chunker.push(buf.subarray(0, n)));
    }
  } finally {
    closeSync(fd);
  }
  return cuts;
}

/**
 * Asserts that `row` is `source` chunked as CVMFS would: same cut marks, every chunk object in the
 * store and its content equal to the source's bytes. Returns the chunk count and distinct objects.
 */
export async function checkChunkedFile(layout: RepoLayout, settings: RepoSettings, row: CatalogEntry, source: string, size: number, cuts = expectedCuts(source, settings)): Promise<{ chunks: number; distinct: number }> {
  assert.equal(row.entry.size, size, 'catalog size');
  const chunks = row.chunks ?? [];
  assert.ok(chunks.length > 1, 'the file is chunked');
  assert.deepEqual(chunks.map((c) => c.offset), [0, ...cuts], 'cut marks equal the xor32 chunker over the whole file');
  let end = 0;
  for (const [i, c] of chunks.entries()) {
    assert.equal(c.offset, end, `chunk ${i} starts where the previous ended`);
    assert.ok(c.size <= settings.chunkMax, `chunk ${i} size ${c.size} <= max`);
    if (i < chunks.length - 1) assert.ok(c.size >= settings.chunkMin, `chunk ${i} size ${c.size} >= min`);
    end += c.size;
  }
  assert.equal(end, size, 'chunks cover the file');
  const store = new FsStore(layout.srv);
  const uses = new Map<string, number>();
  for (const c of chunks) uses.set(c.id.hex, (uses.get(c.id.hex) ?? 0) + 1);
  for (const hex of uses.keys()) assert.ok(await store.has(objectKey({ algorithm: settings.hashAlgorithm, hex }, 'P')), `chunk object ${hex}P is in the store`);
  // Contents: a repeated object (a hole's chunk) is inflated once and compared with every range it stands for.
  const kept = new Map<string, Buffer>();
  const src = Buffer.allocUnsafe(settings.chunkMax);
  const fd = openSync(source, 'r');
  try {
    for (const c of chunks) {
      let content = kept.get(c.id.hex);
      if (content === undefined) {
        content = await readObject(store, c.id, 'P', { compression: row.compression, expectedSize: c.size });
        if ((uses.get(c.id.hex) ?? 0) > 1) kept.set(c.id.hex, content);
      }
      let got = 0;
      while (got < c.size) {
        const n = readSync(fd, src, got, c.size - got, c.offset + got);
        assert.ok(n > 0, 'source shorter than the chunk list');
        got += n;
      }
      assert.equal(Buffer.compare(content, src.subarray(0, c.size)), 0, `content of the chunk at ${c.offset}`);
    }
  } finally {
    closeSync(fd);
  }
  return { chunks: chunks.length, distinct: uses.size };
}
