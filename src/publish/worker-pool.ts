// A small pool of worker threads that turn source files into stored objects (read → chunk → compress
// → hash → put into the FsStore at srvDir), so hashing and compression use every core.
// The main thread only schedules and collects ids; it never touches file bytes. Not a general pool.
// Work goes out in batches (many small files per message): a message round trip costs more than
// compressing a small file.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { GridboxError, q, type ErrorCode } from '../errors.js';
import type { HashAlgorithm } from '../hash/object-id.js';
import type { Compression } from '../catalog/types.js';

export interface ChunkParams {
  min: number;
  avg: number;
  max: number;
}

export interface IngestTask {
  /** File to read (absolute), or bytes already in memory (tar streams). */
  sourcePath?: string;
  /** With sourcePath: read `length` bytes at `offset` (a file inside a spool file); else the whole file. */
  offset?: number;
  length?: number;
  bytes?: Uint8Array;
  /**
   * `bytes` are one piece of a file the main thread cut (content-ingest.ts): stored as one object with
   * this suffix ('P' chunk, '' sole piece), never cut again.
   */
  piece?: '' | 'P';
  /** `bytes` own their whole ArrayBuffer and are moved to the worker, not copied (the sender lets go). */
  transfer?: boolean;
  algorithm: HashAlgorithm;
  compression: Compression;
  /** Absent: never chunk. */
  chunk?: ChunkParams;
}

export interface IngestResult {
  /** Bytes actually read (the file may have changed since it was walked). */
  size: number;
  /** Whole-file object (hex), absent when chunked. */
  hex?: string;
  chunks?: { offset: number; size: number; hex: string }[];
  /** Objects that were not in the store before. */
  objectsWritten: number;
  bytesWritten: number;
  /** A transferred task's buffer, moved back once the worker is done with it (for reuse). */
  returned?: ArrayBuffer;
}

/** Message shapes between pool and worker (ingest-worker.ts): one reply per batch, one outcome per task. */
export interface WorkerRequest { seq: number; tasks: IngestTask[]; srvDir: string }
export type TaskOutcome = { ok: true; result: IngestResult } | { ok: false; code?: string; message: string; objectId?: string; path?: string };
export interface WorkerReply { seq: number; outcomes: TaskOutcome[]; returned?: (ArrayBuffer | null)[] }

/** Per task of a batch: its result, or the error that task alone failed with. */
export type BatchOutcome = IngestResult | GridboxError;

/** Stop scheduling more work while this many file bytes are in flight (at least one task always runs). */
export const MAX_INFLIGHT_BYTES = 128 << 20;
/** Batches queued on one worker: enough that it never waits for the main thread. */
const MAX_INFLIGHT_PER_WORKER = 4;

interface Pending {
  seq: number;
  tasks: IngestTask[];
  weight: number;
  resolve(r: BatchOutcome[]): void;
  reject(e: unknown): void;
}

/** Address space reserved for each worker's compiled code (V8's default is 512 MiB per isolate on x64). */
export const WORKER_CODE_RANGE_MB = 32;
/** Young-generation size of an ingest worker (see the Worker options below). */
export const WORKER_YOUNG_GENERATION_MB = 8;

export class WorkerPool {
  private readonly workers: { w: Worker; inflight: Map<number, Pending>; own: Pending[] }[] = [];
  /** Batches any worker may take (taken before a worker's own queue). */
  private readonly queue: Pending[] = [];
  private seq = 0;
  private inflightBytes = 0;
  private closed = false;

  /** `size` defaults to os.availableParallelism() (2 on the project's machines). */
  constructor(private readonly srvDir: string, size = availableParallelism()) {
    for (let i = 0; i < Math.max(1, size); i++) {
      // V8 reserves a 512 MiB code range per isolate by default: 8 workers alone would pass a site's
      // `ulimit -v` of 4 GiB ("Failed to reserve virtual memory for CodeRange"). Hashing and deflate need little JIT code.
      // A small young generation: a worker allocates a file's bytes and their compressed copy per task and
      // keeps almost nothing, so frequent scavenges return that memory at once. With V8's default the two
      // workers' heaps sat on up to 46 MiB of garbage at 10^5 entries and the publish peak grew by 64-94 MiB
      // from 25k to 100k entries; with 8 MiB it grows by ~18 (publish/scale-memory.test.ts).
      const w = new Worker(new URL('./ingest-worker.js', import.meta.url), { resourceLimits: { codeRangeSizeMb: WORKER_CODE_RANGE_MB, maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } });
      const slot = { w, inflight: new Map<number, Pending>(), own: [] as Pending[] };
      w.on('message', (m: WorkerReply) => this.onReply(slot, m));
      w.on('error', (e) => this.failSlot(slot, e));
      w.on('exit', (code) => { if (!this.closed) this.failSlot(slot, new Error(`ingest worker exited with code ${code}`)); });
      this.workers.push(slot);
    }
  }

  /** Queues one file; resolves when its objects are stored. Fails with PUBLISH_SOURCE for unreadable input, STORE_* when the store fails. */
  async run(task: IngestTask, weight = 0): Promise<IngestResult> {
    const [r] = await this.runBatch([task], weight);
    if (r instanceof GridboxError) throw r;
    return r;
  }

  /**
   * Queues several files as one message; resolves when all are done, with one outcome per task
   * (a failed task does not fail the others). Rejects only when the worker itself dies.
   */
  runBatch(tasks: IngestTask[], weight = 0, shard?: number): Promise<BatchOutcome[]> {
    if (this.closed) return Promise.reject(new GridboxError('INTERNAL', 'Worker pool is closed'));
    return new Promise((resolve, reject) => {
      const q = shard === undefined ? this.queue : this.workers[shard % this.workers.length].own;
      q.push({ seq: ++this.seq, tasks, weight, resolve, reject });
      this.pump();
    });
  }

  /** Worker count: a batch's `shard` picks the worker (shard % size), so like files meet in one worker. */
  get size(): number {
    return this.workers.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((s) => s.w.terminate()));
  }

  private pump(): void {
    for (let sent = true; sent;) {
      sent = false;
      // Least busy first, so shared batches go where there is room.
      for (const slot of [...this.workers].sort((a, b) => a.inflight.size - b.inflight.size)) {
        if (slot.inflight.size >= MAX_INFLIGHT_PER_WORKER) continue;
        // Shared batches first: the publisher sends its large files that way, and a large file started
        // last would leave the other worker idle at the end.
        const q = this.queue.length > 0 ? this.queue : slot.own;
        const next = q[0];
        if (next === undefined) continue;
        if (this.inflightBytes > 0 && this.inflightBytes + next.weight > MAX_INFLIGHT_BYTES) continue;
        q.shift();
        this.inflightBytes += next.weight;
        slot.inflight.set(next.seq, next);
        const req: WorkerRequest = { seq: next.seq, tasks: next.tasks, srvDir: this.srvDir };
        const transfer = next.tasks.flatMap((t) => (t.transfer && t.bytes !== undefined ? [t.bytes.buffer as ArrayBuffer] : []));
        slot.w.postMessage(req, transfer);
        sent = true;
      }
    }
  }

  private onReply(slot: { inflight: Map<number, Pending> }, m: WorkerReply): void {
    const p = slot.inflight.get(m.seq);
    if (p === undefined) return;
    slot.inflight.delete(m.seq);
    this.inflightBytes -= p.weight;
    p.resolve(m.outcomes.map((o, i) => {
      if (o.ok) return m.returned?.[i] ? { ...o.result, returned: m.returned[i]! } : o.result;
      const task = p.tasks[i];
      const code = (o.code ?? 'PUBLISH_FAILED') as ErrorCode;
      // Store failures keep their own message (object and path); source failures name the source.
      if (code.startsWith('STORE_')) return new GridboxError(code, o.message, { objectId: o.objectId, path: o.path });
      const where = task.sourcePath ?? 'in-memory content';
      return new GridboxError(code, o.message.includes(where) ? o.message : `Cannot ingest ${q(where)}: ${o.message}`, { path: task.sourcePath });
    }));
    this.pump();
  }

  private failSlot(slot: { inflight: Map<number, Pending>; own: Pending[] }, e: unknown): void {
    for (const p of [...slot.inflight.values(), ...slot.own]) p.reject(new GridboxError('INTERNAL', 'Ingest worker failed', { cause: e }));
    slot.inflight.clear();
    slot.own.length = 0;
  }
}
