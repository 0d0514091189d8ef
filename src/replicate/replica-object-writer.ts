// Stores verified objects into a replica's data/ in the store layout (spec §1.1: data/XX/<rest>, written
// to data/txn/ first and renamed into place), synchronously. A snapshot writes tens of thousands of small
// objects; through the thread pool each took five round trips (stat, open, write, close, rename), which
// cost more main-thread time than the copy itself. Blocking writes of a few KiB into the page cache are
// cheaper, and downloads in flight keep arriving in the kernel meanwhile. Reads stay with FsStore.
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { parseObjectKey } from '../hash/object-id.js';

/** What the object copier stores through: FsStore, MemoryStore and this writer all fit. */
export interface ObjectSink {
  /** Stores bytes already verified against `key`; atomic (temp file then rename). */
  put(key: string, bytes: Uint8Array): void | Promise<void>;
}

export class ReplicaObjectWriter implements ObjectSink {
  private seq = 0;
  private readonly txnDir: string;

  /** `dataDir` is the replica's srv/<fqrn>/data (FsStore.dataDir). */
  constructor(private readonly dataDir: string) {
    this.txnDir = join(dataDir, 'txn');
  }

  put(key: string, bytes: Uint8Array): void {
    parseObjectKey(key);
    const dest = join(this.dataDir, key.slice(0, 2), key.slice(2));
    // The pid and a per-process counter make the name unique among writers; the replica lock makes it moot.
    const tmp = join(this.txnDir, `${key.slice(0, 12)}.${process.pid}.${this.seq++}`);
    try {
      try {
        writeFileSync(tmp, bytes, { flag: 'wx', mode: 0o644 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        mkdirSync(this.txnDir, { recursive: true });
        writeFileSync(tmp, bytes, { flag: 'wx', mode: 0o644 });
      }
      try {
        renameSync(tmp, dest);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        mkdirSync(join(this.dataDir, key.slice(0, 2)), { recursive: true });
        renameSync(tmp, dest);
      }
    } catch (e) {
      rmSync(tmp, { force: true });
      throw new GridboxError('STORE_IO', `Cannot write object ${q(key)} in ${q(this.dataDir)}: ${(e as Error)?.message ?? e}`, { objectId: key, path: this.dataDir, cause: e });
    }
  }
}
