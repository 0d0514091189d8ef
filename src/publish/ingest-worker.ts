// Worker-thread body for worker-pool.ts: read one file, cut it with the xor32 chunker when it is larger
// than the minimum chunk size, compress and hash each piece, and put it into the repository's FsStore.
// Spec: cvmfs-format.md §1.3, §5. Runs only inside a worker; holds no state but the open stores.
import { parentPort, threadId } from 'node:worker_threads';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compressZlib } from '../compress/zlib.js';
import { hashBytes, objectKey, type ObjectSuffix } from '../hash/object-id.js';
import { chunkOffsets } from '../hash/chunker.js';
import { FsStore } from '../store/fs-store.js';
import { isGridboxError } from '../errors.js';
import type { IngestResult, IngestTask, WorkerReply, WorkerRequest } from './worker-pool.js';

const stores = new Map<string, FsStore>();

/**
 * Synchronous put: this thread exists to block, and sync calls skip the shared libuv pool that made
 * small files cost a round trip each. Same layout and temp+rename discipline as FsStore.put (its
 * pathOf() names the object; the temp file lives in data/txn/), so a reader never sees a partial object.
 */
function storePiece(store: FsStore, task: IngestTask, piece: Uint8Array, suffix: ObjectSuffix, acc: IngestResult): string {
  const stored = task.compression === 'zlib' ? compressZlib(piece) : piece;
  const id = hashBytes(task.algorithm, stored);
  const key = objectKey(id, suffix);
  const path = store.pathOf(key);
  if (!existsSync(path)) {
    const tmp = join(store.dataDir, 'txn', `${key.slice(0, 12)}.${process.pid}.${threadId}.${tmpSeq++}`);
    try {
      writeFileSync(tmp, stored);
      renameSync(tmp, path);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw Object.assign(new Error(`Cannot store object ${JSON.stringify(key)}: ${(e as Error).message}`), { gridboxCode: 'STORE_IO' });
    }
    acc.objectsWritten++;
    acc.bytesWritten += stored.length;
  }
  return id.hex;
}

let tmpSeq = 0;

async function ingest(task: IngestTask, srvDir: string): Promise<IngestResult> {
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
        const hex = storePiece(store, task, data.subarray(starts[i], end), 'P', acc);
        acc.chunks.push({ offset: starts[i], size: end - starts[i], hex });
      }
      return acc;
    }
  }
  acc.hex = storePiece(store, task, data, '', acc);
  return acc;
}

parentPort!.on('message', (req: WorkerRequest) => {
  ingest(req.task, req.srvDir).then(
    (result) => parentPort!.postMessage({ seq: req.seq, ok: true, result } satisfies WorkerReply),
    (e: unknown) => {
      const code = isGridboxError(e) ? e.code : (e as { gridboxCode?: string }).gridboxCode;
      parentPort!.postMessage({ seq: req.seq, ok: false, code, message: (e as Error)?.message ?? String(e) } satisfies WorkerReply);
    },
  );
});
