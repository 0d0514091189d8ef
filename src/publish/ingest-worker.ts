// Worker-thread body for worker-pool.ts: read each file of a batch, cut it with the xor32 chunker when it
// is larger than the minimum chunk size, compress and hash each piece, and put it into the repository's
// FsStore. Spec: cvmfs-format.md §1.3, §5. Runs only inside a worker; holds no state but the open stores.
import { parentPort, threadId } from 'node:worker_threads';
import { existsSync, readFileSync, rename, rm, writeFile } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { compressZlib } from '../compress/zlib.js';
import { hashBytes, objectKey, type ObjectSuffix } from '../hash/object-id.js';
import { chunkOffsets } from '../hash/chunker.js';
import { FsStore } from '../store/fs-store.js';
import { isGridboxError } from '../errors.js';
import type { IngestResult, IngestTask, TaskOutcome, WorkerReply, WorkerRequest } from './worker-pool.js';

const stores = new Map<string, FsStore>();
/** Objects this thread is storing: a duplicate met meanwhile waits for that write, not a second one. */
const writing = new Map<string, Promise<void>>();
/** Content already stored (or being stored) by this thread, by a SHA-256 of the uncompressed piece. */
const seen = new Map<string, { hex: string; key: string }>();
let tmpSeq = 0;

/**
 * Same layout and temp+rename discipline as FsStore.put (its pathOf() names the object; the temp file
 * lives in data/txn/), so a reader never sees a partial object. Runs on the libuv pool, so that this
 * thread compresses the next file while the file system creates this one (creating a file costs about
 * as much as compressing a small one, and mostly waits on the journal).
 */
function writeObject(store: FsStore, key: string, path: string, stored: Uint8Array): Promise<void> {
  const tmp = join(store.dataDir, 'txn', `${key.slice(0, 12)}.${process.pid}.${threadId}.${tmpSeq++}`);
  // Callback API: lighter than FileHandle promises at tens of thousands of files.
  return new Promise<void>((resolve, reject) => {
    const fail = (e: NodeJS.ErrnoException): void => {
      rm(tmp, { force: true }, () => reject(Object.assign(new Error(`Cannot store object ${JSON.stringify(key)}: ${e.message}`), { gridboxCode: 'STORE_IO' })));
    };
    writeFile(tmp, stored, { flag: 'wx', mode: 0o644 }, (e) => {
      if (e) return fail(e);
      rename(tmp, path, (e2) => (e2 ? fail(e2) : resolve()));
    });
  });
}

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
  seen.set(contentKey, { hex: id.hex, key });
  const pendingWrite = writing.get(key);
  if (pendingWrite !== undefined) writes.push(pendingWrite);
  else {
    const path = store.pathOf(key);
    if (!existsSync(path)) {
      const w = writeObject(store, key, path, stored);
      // Once settled, existsSync answers (a failed write is reported by the task that started it).
      writing.set(key, w);
      // A failed write must not stand for its content later.
      w.then(() => { writing.delete(key); }, () => { writing.delete(key); seen.delete(contentKey); });
      writes.push(w);
      acc.objectsWritten++;
      acc.bytesWritten += stored.length;
    }
  }
  return id.hex;
}

/** Reads, cuts, compresses and hashes synchronously; the returned writes finish the stores. */
function ingest(task: IngestTask, srvDir: string, writes: Promise<void>[]): IngestResult {
  let store = stores.get(srvDir);
  if (store === undefined) stores.set(srvDir, (store = new FsStore(srvDir)));
  let data: Uint8Array;
  if (task.bytes !== undefined) data = task.bytes;
  else {
    try {
      data = readFileSync(task.sourcePath!);
    } catch (e) {
      throw Object.assign(new Error(`Cannot read ${JSON.stringify(task.sourcePath)} from the publish source: ${(e as Error).message}`), { gridboxCode: 'PUBLISH_SOURCE' });
    }
  }
  const acc: IngestResult = { size: data.length, objectsWritten: 0, bytesWritten: 0 };
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
  const code = isGridboxError(e) ? e.code : (e as { gridboxCode?: string }).gridboxCode;
  return { ok: false, code, message: (e as Error)?.message ?? String(e) };
}

parentPort!.on('message', (req: WorkerRequest) => {
  // Compute now, in order; reply when this batch's objects are all in place. Meanwhile the next
  // batch's message can already be handled.
  const done = req.tasks.map(async (task): Promise<TaskOutcome> => {
    const writes: Promise<void>[] = [];
    let result: IngestResult;
    try {
      result = ingest(task, req.srvDir, writes);
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
  void Promise.all(done).then((outcomes) => parentPort!.postMessage({ seq: req.seq, outcomes } satisfies WorkerReply));
});
