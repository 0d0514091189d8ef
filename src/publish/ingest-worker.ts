// Worker-thread body for worker-pool.ts: turn each task of a batch into stored objects. A small file
// (or a range of a spool file) is read whole — it is at most a few MiB, content-ingest.ts streams the
// rest — cut with the xor32 chunker when larger than the minimum chunk size, compressed, hashed and put
// into the repository's FsStore (writeSync: temp file, then rename). A piece the main thread already
// cut is stored as one object. Spec: cvmfs-format.md §1.3, §5. Runs only inside a worker; holds no
// state but the open stores and a per-thread memory of contents it stored.
import { parentPort } from 'node:worker_threads';
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { compressZlib } from '../compress/zlib.js';
import { hashBytes, objectKey, type ObjectSuffix } from '../hash/object-id.js';
import { chunkOffsets } from '../hash/chunker.js';
import { FsStore } from '../store/fs-store.js';
import { isGridboxError } from '../errors.js';
import type { IngestResult, IngestTask, TaskOutcome, WorkerReply, WorkerRequest } from './worker-pool.js';

const stores = new Map<string, FsStore>();
/**
 * Content already stored by this thread, by a SHA-256 of the uncompressed piece; the most recent
 * SEEN_MAX only (oldest dropped first), so that memory does not grow with the number of files: an older
 * duplicate is compressed again and found in the store by existsSync.
 */
const seen = new Map<string, string>();
export const SEEN_MAX = 32_768;

function storePiece(store: FsStore, task: IngestTask, piece: Uint8Array, suffix: ObjectSuffix, acc: IngestResult): string {
  // Same bytes, same settings → same object: skip compressing a duplicate (the pool sends files of one
  // size to one worker, so duplicates meet here). SHA-256, so crafted SHA-1 twins cannot alias.
  const contentKey = `${task.algorithm}:${task.compression}:${suffix}:${createHash('sha256').update(piece).digest('base64')}`;
  const known = seen.get(contentKey);
  if (known !== undefined) return known;
  const stored = task.compression === 'zlib' ? compressZlib(piece) : piece;
  const id = hashBytes(task.algorithm, stored);
  const key = objectKey(id, suffix);
  // Written before it is remembered: a failed write must not stand for its content later.
  if (!existsSync(store.pathOf(key))) {
    store.writeSync(key, stored);
    acc.objectsWritten++;
    acc.bytesWritten += stored.length;
  }
  if (seen.size >= SEEN_MAX) seen.delete(seen.keys().next().value!);
  seen.set(contentKey, id.hex);
  return id.hex;
}

function sourceError(task: IngestTask, e: unknown): Error {
  return Object.assign(new Error(`Cannot read ${JSON.stringify(task.sourcePath)} from the publish source: ${(e as Error).message}`), { gridboxCode: 'PUBLISH_SOURCE' });
}

/** The task's bytes: in the message, a whole (small) file, or `length` bytes at `offset` of a spool file. */
function readTask(task: IngestTask): Uint8Array {
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

/** Reads, cuts, compresses, hashes and stores, all synchronously. */
function ingest(task: IngestTask, srvDir: string): IngestResult {
  let store = stores.get(srvDir);
  if (store === undefined) stores.set(srvDir, (store = new FsStore(srvDir)));
  const data = readTask(task);
  const acc: IngestResult = { size: data.length, objectsWritten: 0, bytesWritten: 0 };
  if (task.piece !== undefined) {
    acc.hex = storePiece(store, task, data, task.piece, acc);
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
        const hex = storePiece(store, task, data.subarray(starts[i], end), 'P', acc);
        acc.chunks.push({ offset: starts[i], size: end - starts[i], hex });
      }
      return acc;
    }
  }
  acc.hex = storePiece(store, task, data, '', acc);
  return acc;
}

function failure(e: unknown): TaskOutcome {
  if (isGridboxError(e)) return { ok: false, code: e.code, message: e.message, objectId: e.fields.objectId as string | undefined, path: e.fields.path as string | undefined };
  return { ok: false, code: (e as { gridboxCode?: string }).gridboxCode, message: (e as Error)?.message ?? String(e) };
}

parentPort!.on('message', (req: WorkerRequest) => {
  // Every task in order, in system calls made by this thread: a small file costs a few microseconds
  // of reading and writing, less than the hops of async calls through the libuv pool (see
  // FsStore.writeSync). The next batch's message waits in the port meanwhile (the pool keeps a few queued).
  const outcomes = req.tasks.map((task): TaskOutcome => {
    try {
      return { ok: true, result: ingest(task, req.srvDir) };
    } catch (e) {
      return failure(e);
    }
  });
  // Transferred piece buffers go back (their writes are done): the sender reuses them, so the pieces
  // in flight are the only piece memory, whenever this thread's garbage collector runs.
  const returned = req.tasks.map((t, i) => (t.transfer && t.bytes !== undefined && outcomes[i].ok ? t.bytes.buffer as ArrayBuffer : null));
  parentPort!.postMessage({ seq: req.seq, outcomes, returned } satisfies WorkerReply, returned.filter((b): b is ArrayBuffer => b !== null));
});
