// An ObjectSink that moves a first replication's file writes off the main thread: tens of thousands of
// objects cost four system calls each (open, write, close, rename), as much main-thread time as fetching
// and verifying them. The first SYNC_FIRST objects are written in-thread (an incremental snapshot stores a
// handful and should not pay a thread start); after that, objects go in batches, one message per event-loop
// turn, to one worker thread (replica-write-worker.ts). put() resolves once the object is renamed into
// place, so a catalog stored after its subtree's put()s still comes after its subtree on disk.
import { Worker } from 'node:worker_threads';
import { GridboxError, q } from '../errors.js';
import { ReplicaObjectWriter, type ObjectSink } from './replica-object-writer.js';
import type { WriteBatch, WriteResult } from './replica-write-worker.js';

/** Objects written in-thread before the worker starts. */
export const SYNC_FIRST = 512;
/** Objects per message at most. */
const MAX_BATCH = 64;
/** The worker runs plain file writes: a small code range keeps it within a 4 GiB `ulimit -v` (issue 8). */
const CODE_RANGE_MB = 16;

interface Waiter { resolve(): void; reject(e: unknown): void }

export class ReplicaWritePool implements ObjectSink {
  private readonly local: ReplicaObjectWriter;
  private written = 0;
  private worker: Worker | undefined;
  private failed: unknown;
  private batch: { keys: string[]; bodies: Uint8Array[]; waiters: Waiter[] } | undefined;
  private readonly inFlight = new Map<number, { keys: string[]; waiters: Waiter[] }>();
  private seq = 0;

  constructor(private readonly dataDir: string, private readonly syncFirst = SYNC_FIRST) {
    this.local = new ReplicaObjectWriter(dataDir);
  }

  put(key: string, bytes: Uint8Array): void | Promise<void> {
    if (this.failed !== undefined) throw this.failed;
    if (this.written++ < this.syncFirst) return this.local.put(key, bytes);
    return new Promise<void>((resolve, reject) => {
      if (this.batch === undefined) {
        this.batch = { keys: [], bodies: [], waiters: [] };
        setImmediate(() => this.flush());
      }
      // A copy the worker can own: `bytes` may be a slice of a socket read still referenced elsewhere.
      const own = new Uint8Array(bytes);
      this.batch.keys.push(key);
      this.batch.bodies.push(own);
      this.batch.waiters.push({ resolve, reject });
      if (this.batch.keys.length >= MAX_BATCH) this.flush();
    });
  }

  /** Stops the worker; call when every put() has settled. */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w !== undefined) await w.terminate();
  }

  private flush(): void {
    const b = this.batch;
    if (b === undefined) return;
    this.batch = undefined;
    const id = ++this.seq;
    this.inFlight.set(id, { keys: b.keys, waiters: b.waiters });
    const msg: WriteBatch = { id, keys: b.keys, bodies: b.bodies };
    this.start().postMessage(msg, b.bodies.map((u) => u.buffer as ArrayBuffer));
  }

  private start(): Worker {
    if (this.worker !== undefined) return this.worker;
    const w = new Worker(new URL('./replica-write-worker.js', import.meta.url), { workerData: { dataDir: this.dataDir }, resourceLimits: { codeRangeSizeMb: CODE_RANGE_MB } });
    w.on('message', (r: WriteResult) => {
      const batch = this.inFlight.get(r.id);
      if (batch === undefined) return;
      this.inFlight.delete(r.id);
      const bad = new Map(r.failures.map((f) => [f.index, f.message]));
      batch.waiters.forEach((wt, i) => {
        const m = bad.get(i);
        if (m === undefined) wt.resolve();
        else wt.reject(new GridboxError('STORE_IO', m, { objectId: batch.keys[i], path: this.dataDir }));
      });
    });
    const die = (e: unknown): void => {
      this.failed ??= new GridboxError('STORE_IO', `Cannot write objects in ${q(this.dataDir)}: the writer thread failed: ${(e as Error)?.message ?? e}`, { path: this.dataDir, cause: e });
      for (const b of this.inFlight.values()) for (const wt of b.waiters) wt.reject(this.failed);
      this.inFlight.clear();
    };
    w.on('error', die);
    w.on('exit', (code) => { if (this.inFlight.size > 0) die(new Error(`exit code ${code}`)); });
    this.worker = w;
    return w;
  }
}
