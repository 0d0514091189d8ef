// ContentIngest over a real worker pool and file-system store: streamed files are cut exactly like the
// whole-buffer chunker, whatever the source (file, range of a spool file, stream), holes are stored
// once, and no more than MAX_PIECES_IN_FLIGHT pieces are ever held.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isGridboxError } from '../errors.js';
import { chunkOffsets } from '../hash/chunker.js';
import { FsStore } from '../store/fs-store.js';
import { readObject } from '../store/object-io.js';
import { withTempDir } from '../testing/tmp.js';
import { ContentIngest, MAX_PIECES_IN_FLIGHT, STREAM_MIN_BYTES } from './content-ingest.js';
import { DEFAULT_SETTINGS } from './repo-layout.js';
import type { FileContent } from './tree.js';
import { WorkerPool } from './worker-pool.js';

const SETTINGS = { ...DEFAULT_SETTINGS, chunkMin: 64 << 10, chunkAvg: 128 << 10, chunkMax: 256 << 10 };

async function bytesOf(store: FsStore, c: FileContent): Promise<Buffer> {
  if (c.id !== undefined) return readObject(store, c.id, '', { compression: c.compression });
  return Buffer.concat(await Promise.all(c.chunks!.map((ch) => readObject(store, ch.id, 'P', { compression: c.compression, expectedSize: ch.size }))));
}

async function withIngest(fn: (ingest: ContentIngest, store: FsStore, dir: string) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const store = await FsStore.create(join(dir, 'srv'));
    const pool = new WorkerPool(store.srvRepoDir, 2);
    try {
      await fn(new ContentIngest(() => pool, SETTINGS), store, dir);
    } finally {
      await pool.close();
    }
  });
}

async function* blocks(data: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < data.length; off += size) yield data.subarray(off, off + size);
}

test('a streamed file is cut as the whole-buffer chunker cuts it, from a file, a spool range or a stream, holes stored once', async () => {
  await withIngest(async (ingest, store, dir) => {
    // Random regions between holes, the holes longer than several max chunks.
    const data = Buffer.alloc(12 << 20);
    for (const off of [0, 3 << 20, (7 << 20) + 12345]) randomBytes(700_000).copy(data, off);
    const file = join(dir, 'f');
    writeFileSync(file, data);
    const spool = join(dir, 'spool');
    writeFileSync(spool, Buffer.concat([randomBytes(4099), data, randomBytes(10)]));
    const expected = [0, ...chunkOffsets(data, { minBytes: SETTINGS.chunkMin, avgBytes: SETTINGS.chunkAvg, maxBytes: SETTINGS.chunkMax })];
    const results = [];
    for (const source of [
      { kind: 'file', path: file } as const,
      { kind: 'file', path: spool, offset: 4099 } as const,
      { kind: 'stream', stream: blocks(data, 65_536 + 7), label: 'stream' } as const,
    ]) {
      const { stored } = await ingest.put(source, data.length);
      const r = await stored;
      assert.equal(r.size, data.length);
      assert.deepEqual(r.content.chunks!.map((c) => c.offset), expected, source.kind);
      assert.ok((await bytesOf(store, r.content)).equals(data), `${source.kind} content`);
      results.push(r.content);
    }
    assert.deepEqual(results[1], results[0]);
    assert.deepEqual(results[2], results[0]);
    const ids = results[0].chunks!.map((c) => c.id.hex);
    assert.ok(new Set(ids).size < ids.length - 10, 'hole chunks share one object');
    assert.ok(ingest.stats.peakPiecesInFlight <= MAX_PIECES_IN_FLIGHT, `${ingest.stats.peakPiecesInFlight} pieces in flight`);
  });
});

test(`no more than MAX_PIECES_IN_FLIGHT (${MAX_PIECES_IN_FLIGHT}) pieces are held, with several large files at once`, async () => {
  await withIngest(async (ingest, store, dir) => {
    const files = [0, 1, 2].map((i) => {
      const data = randomBytes(STREAM_MIN_BYTES + (i << 20));
      const path = join(dir, `big${i}`);
      writeFileSync(path, data);
      return { path, data };
    });
    const stored = await Promise.all(files.map(async (f) => (await ingest.put({ kind: 'file', path: f.path }, f.data.length)).stored));
    const contents = await Promise.all(stored);
    const pieces = contents.reduce((n, c) => n + c.content.chunks!.length, 0);
    assert.ok(pieces > 3 * MAX_PIECES_IN_FLIGHT, `enough pieces (${pieces}) to go past the limit`);
    assert.ok(ingest.stats.peakPiecesInFlight > 1, 'pieces are stored concurrently');
    assert.ok(ingest.stats.peakPiecesInFlight <= MAX_PIECES_IN_FLIGHT, `at most ${MAX_PIECES_IN_FLIGHT} pieces held, saw ${ingest.stats.peakPiecesInFlight}`);
    for (const [i, c] of contents.entries()) assert.ok((await bytesOf(store, c.content)).equals(files[i].data), `file ${i}`);
  });
});

test('a streamed file without any cut is one plain object; a short range or stream is PUBLISH_SOURCE naming the source', async () => {
  await withIngest(async (ingest, store, dir) => {
    // Default sizes (min 4 MiB, max 16 MiB): a 5 MiB file is streamed, and constant bytes never give a candidate.
    const data = Buffer.alloc(5 << 20, 7);
    const path = join(dir, 'one');
    writeFileSync(path, data);
    const pool = new WorkerPool(store.srvRepoDir, 1);
    try {
      const plain = new ContentIngest(() => pool, DEFAULT_SETTINGS);
      const r = await (await plain.put({ kind: 'file', path }, data.length)).stored;
      assert.equal(plain.stats.streamedFiles, 1);
      assert.ok(r.content.id !== undefined && r.content.chunks === undefined, 'a sole piece is not a chunk list');
      assert.ok((await bytesOf(store, r.content)).equals(data));
    } finally {
      await pool.close();
    }
    await assert.rejects((async () => (await ingest.put({ kind: 'file', path, offset: 100 }, data.length)).stored)(),
      (e) => isGridboxError(e, 'PUBLISH_SOURCE') && e.message.includes(path));
    await assert.rejects((async () => (await ingest.put({ kind: 'stream', stream: blocks(Buffer.alloc(1000), 100), label: 'short entry' }, STREAM_MIN_BYTES)).stored)(),
      (e) => isGridboxError(e, 'PUBLISH_SOURCE') && e.message.includes('short entry'));
  });
});
