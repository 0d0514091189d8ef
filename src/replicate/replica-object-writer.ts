// Stores verified objects into a replica's data/ in the store layout (spec §1.1: data/XX/<rest>, written
// to data/txn/ first and renamed into place), synchronously. A snapshot writes tens of thousands of small
// objects; through the thread pool each took five round trips (stat, open, write, close, rename), which
// cost more main-thread time than the copy itself. Blocking writes of a few KiB into the page cache are
// cheaper, and downloads in flight keep arriving in the kernel meanwhile. Reads stay with FsStore.
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { parseObjectKey } from '../hash/object-id.js';
import { writeFileAtomicSync } from '../plumbing/atomic-write.js';

/** What the object copier stores through: FsStore, MemoryStore and this writer all fit. */
export interface ObjectSink {
  /** Stores bytes already verified against `key`; atomic (temp file then rename). */
  put(key: string, bytes: Uint8Array): void | Promise<void>;
}

export class ReplicaObjectWriter implements ObjectSink {
  private readonly txnDir: string;

  /** `dataDir` is the replica's srv/<fqrn>/data (FsStore.dataDir). */
  constructor(private readonly dataDir: string) {
    this.txnDir = join(dataDir, 'txn');
  }

  put(key: string, bytes: Uint8Array): void {
    parseObjectKey(key);
    const dest = join(this.dataDir, key.slice(0, 2), key.slice(2));
    try {
      try {
        writeFileAtomicSync(dest, bytes, { tmpDir: this.txnDir });
      } catch (e) {
        // A store made by an older tool may lack txn/ or a fan-out directory.
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        mkdirSync(this.txnDir, { recursive: true });
        mkdirSync(dirname(dest), { recursive: true });
        writeFileAtomicSync(dest, bytes, { tmpDir: this.txnDir });
      }
    } catch (e) {
      throw new GridboxError('STORE_IO', `Cannot write object ${q(key)} in ${q(this.dataDir)}: ${(e as Error)?.message ?? e}`, { objectId: key, path: this.dataDir, cause: e });
    }
  }
}
