// Worker-thread body for worker-pool.ts: turn each task of a batch into stored objects. A small file
// (or a range of a spool file) is read whole — it is at most a few MiB, content-ingest.ts streams the
// rest — cut with the xor32 chunker when larger than the minimum chunk size, compressed, hashed and put
// into the repository's FsStore through its ObjectWriter. A piece the main thread already cut is stored
// as one object. Spec: cvmfs-format.md §1.3, §5. Runs only inside a worker; holds no state but the
// open stores and a per-thread memory of contents it stored.
import { parentPort } from 'node:worker_threads';
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { compressZlib } from '../compress/zlib.js';
import { hashBytes, objectKey, type ObjectSuffix } from '../hash/object-id.js';
import { chunkOffsets } from '../hash/chunker.js';
import { FsStore } from '../store/fs-store.js';
import { isGridboxError } from '../errors.js';
import type { IngestResult, IngestTask, TaskOutcome, WorkerReply, WorkerRequest } from './worker-pool.js';

const stores = new Map<string, FsStore>();
/** Objects this thread is storing: a duplicate met meanwhile waits for that write, not a second one. */
const writing = new Map<string, Promise<void>>();
/**
 * Content already stored (or being stored) by this thread, by a SHA-256 of the uncompressed piece; the
 * most recent SEEN_MAX only (oldest dropped first), so that memory does not grow with the number of files:
 * an older duplicate is compressed again and found in the store by existsSync.
 */
const seen = new Map<string, { hex: string; key: string }>();
export const SEEN_MAX = 32_768;

function storePiece(store: FsStore, task: IngestTask, piece: Uint8Array, suffix: ObjectSuffix, acc: IngestResult, writes: Promise<void>[]): string {
  // Same bytes, same settings → same object: skip compressing a duplicate (the pool sends files of one
  // size to one worker, so duplicates meet here). SHA-256, so crafted SHA-1 twins cannot alias.
  const contentKey = `${task.algorithm}:${task.compression}:${suffix}:${createHash('sha256').update(piece).digest('base64')}`;
  const known = seen.get(contentKey);
  if (known !== undefined) {
    const w = writing.get(known.key);
    if (w !== undefined) writes.push(w);
    return known.hex;
  }
  const stored = task.compression === 'zlib' ? compressZlib(piece) : piece;
  const id = hashBytes(task.algorithm, stored);
  const key = objectKey(id, suffix);
  if (seen.size >= SEEN_MAX) seen.delete(seen.keys().next().value!);
  seen.set(contentKey, { hex: id.hex, key });
  const pendingWrite = writing.get(key);
  if (pendingWrite !== undefined) writes.push(pendingWrite);
  else if (!existsSync(store.pathOf(key))) {
    // Written on the libuv pool, so that this thread compresses the next file while the file system creates this one.
    const w = store.write(key, stored);
    // Once settled, existsSync answers (a failed write is reported by the task that started it).
    writing.set(key, w);
    // A failed write must not stand for its content later.
    w.then(() => { writing.delete(key); }, () => { writing.delete(key); seen.delete(contentKey); });
    writes.push(w);
    acc.objectsWritten++;
    acc.bytesWritten += stored.length;
  }
  return id.hex;
}

function sourceError(task: IngestTask, e: unknown): Error {
  return Object.assign(new Error(`Cannot read ${JSON.stringify(task.sourcePath)} from the publish source: ${(e as Error).message}`), { gridboxCode: 'PUBLISH_SOURCE' });
}

/** The task's bytes: in the message, a whole (small) file, or `length` bytes at `offset` of a spool file. */
function readTask(task: IngestTask, prefetched?: Uint8Array): Uint8Array {
  if (prefetched !== undefined) return prefetched;
  if (task.bytes !== undefined) return task.bytes;
  try {
    if (task.offset === undefined) return readFileSync(task.sourcePath!);
    const buf = Buffer.allocUnsafe(task.length ?? 0);
    const fd = openSync(task.sourcePath!, 'r');
    try {
      for (let got = 0; got < buf.length;) {
        const n = readSync(fd, buf, got, buf.length - got, task.offset + got);
        if (n === 0) throw new Error(`ends after ${got} of ${buf.length} bytes at offset ${task.offset}`);
        got += n;
      }
    } finally {
      closeSync(fd);
    }
    return buf;
  } catch (e) {
    throw sourceError(task, e);
  }
}

/** Reads, cuts, compresses and hashes synchronously; the returned writes finish the stores. */
function ingest(task: IngestTask, srvDir: string, writes: Promise<void>[], prefetched?: Uint8Array): IngestResult {
  let store = stores.get(srvDir);
  if (store === undefined) stores.set(srvDir, (store = new FsStore(srvDir)));
  const data = readTask(task, prefetched);
  const acc: IngestResult = { size: data.length, objectsWritten: 0, bytesWritten: 0 };
  if (task.piece !== undefined) {
    acc.hex = storePiece(store, task, data, task.piece, acc, writes);
    return acc;
  }
  if (task.chunk !== undefined && data.length > task.chunk.min) {
    const cuts = chunkOffsets(data, { minBytes: task.chunk.min, avgBytes: task.chunk.avg, maxBytes: task.chunk.max }).filter((c) => c > 0 && c < data.length);
    if (cuts.length > 0) {
      // More than one piece: a chunked file (spec §4.8); a sole piece stays a normal file (§5.3).
      const starts = [0, ...cuts];
      acc.chunks = [];
      for (let i = 0; i < starts.length; i++) {
        const end = i + 1 < starts.length ? starts[i + 1] : data.length;
        const hex = storePiece(store, task, data.subarray(starts[i], end), 'P', acc, writes);
        acc.chunks.push({ offset: starts[i], size: end - starts[i], hex });
      }
      return acc;
    }
  }
  acc.hex = storePiece(store, task, data, '', acc, writes);
  return acc;
}

function failure(e: unknown): TaskOutcome {
  if (isGridboxError(e)) return { ok: false, code: e.code, message: e.message, objectId: e.fields.objectId as string | undefined, path: e.fields.path as string | undefined };
  return { ok: false, code: (e as { gridboxCode?: string }).gridboxCode, message: (e as Error)?.message ?? String(e) };
}

parentPort!.on('message', (req: WorkerRequest) => {
  // Compute now, in order; reply when this batch's objects are all in place. Meanwhile the next
  // batch's message can already be handled.
  // Whole small files are read on the libuv pool, all of the batch at once: on a cold page cache the
  // reads wait for the disk side by side instead of one after another in this thread (measured at 10^5
  // files: open+read took 34 s of a worker's 56 s when read synchronously).
  const reads = req.tasks.map((t) => (t.bytes === undefined && t.sourcePath !== undefined && t.offset === undefined ? readFile(t.sourcePath) : undefined));
  for (const r of reads) r?.catch(() => undefined); // awaited below
  const done = req.tasks.map(async (task, i): Promise<TaskOutcome> => {
    const writes: Promise<void>[] = [];
    let result: IngestResult;
    let prefetched: Uint8Array | undefined;
    try {
      prefetched = await reads[i];
    } catch (e) {
      return failure(sourceError(task, e));
    }
    try {
      result = ingest(task, req.srvDir, writes, prefetched);
    } catch (e) {
      await Promise.allSettled(writes);
      return failure(e);
    }
    try {
      await Promise.all(writes);
    } catch (e) {
      await Promise.allSettled(writes);
      return failure(e);
    }
    return { ok: true, result };
  });
  void Promise.all(done).then((outcomes) => {
    // Transferred piece buffers go back (their writes are done): the sender reuses them, so the pieces
    // in flight are the only piece memory, whenever this thread's garbage collector runs.
    const returned = req.tasks.map((t, i) => (t.transfer && t.bytes !== undefined && outcomes[i].ok ? t.bytes.buffer as ArrayBuffer : null));
    parentPort!.postMessage({ seq: req.seq, outcomes, returned } satisfies WorkerReply, returned.filter((b): b is ArrayBuffer => b !== null));
  });
});
