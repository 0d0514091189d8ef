// ObjectStore over a repository's public directory: objects at <srvRepoDir>/data/XX/rest, written to
// data/txn/ first and renamed into place, so a reader never sees a partial object. Spec: cvmfs-format.md §1.1.
// Knows nothing of hashing or compression (object-io.ts does that).
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { parseObjectKey } from '../hash/object-id.js';
import type { ObjectStore } from './object-store.js';

const HEX2 = /^[0-9a-f]{2}$/;

export interface FsStoreOptions {
  /** fsync each object before the rename (survives power loss, slower). Default false: rename alone survives a killed process. */
  fsync?: boolean;
}

/** The 256 fan-out directories plus txn/, as `cvmfs_server mkfs` creates them. */
export async function createStoreSkeleton(srvRepoDir: string): Promise<void> {
  const data = join(srvRepoDir, 'data');
  await mkdir(join(data, 'txn'), { recursive: true });
  await Promise.all(Array.from({ length: 256 }, (_, i) => mkdir(join(data, i.toString(16).padStart(2, '0')), { recursive: true })));
}

export class FsStore implements ObjectStore {
  readonly dataDir: string;

  constructor(readonly srvRepoDir: string, private readonly opts: FsStoreOptions = {}) {
    this.dataDir = join(srvRepoDir, 'data');
  }

  /** Opens the store, creating the data/ skeleton when missing. */
  static async create(srvRepoDir: string, opts: FsStoreOptions = {}): Promise<FsStore> {
    await createStoreSkeleton(srvRepoDir);
    return new FsStore(srvRepoDir, opts);
  }

  /** Absolute path of an object; the key is validated first, so no key can name a path outside data/. */
  pathOf(key: string): string {
    parseObjectKey(key);
    return join(this.dataDir, key.slice(0, 2), key.slice(2));
  }

  async has(key: string): Promise<boolean> {
    try {
      return (await stat(this.pathOf(key))).isFile();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw this.ioError('check', key, e);
    }
  }

  async get(key: string): Promise<Buffer> {
    const path = this.pathOf(key);
    try {
      return await readFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new GridboxError('STORE_MISSING', `Cannot read object ${q(key)}: not in the store`, { objectId: key, path, cause: e });
      }
      throw this.ioError('read', key, e);
    }
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    const path = this.pathOf(key);
    if (await this.has(key)) return;
    const txnDir = join(this.dataDir, 'txn');
    const tmp = join(txnDir, `${key.slice(0, 12)}.${process.pid}.${randomBytes(6).toString('hex')}`);
    try {
      await this.writeTemp(tmp, bytes).catch(async (e) => {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        await mkdir(txnDir, { recursive: true });
        await this.writeTemp(tmp, bytes);
      });
      await rename(tmp, path).catch(async (e) => {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        await mkdir(join(this.dataDir, key.slice(0, 2)), { recursive: true });
        await rename(tmp, path);
      });
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw this.ioError('write', key, e);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.pathOf(key));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw this.ioError('delete', key, e);
    }
  }

  async *list(): AsyncIterable<string> {
    let dirs: string[];
    try {
      dirs = await readdir(this.dataDir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw this.ioError('list', this.dataDir, e);
    }
    for (const dir of dirs.sort()) {
      if (!HEX2.test(dir)) continue;
      for (const rest of await readdir(join(this.dataDir, dir))) {
        const key = dir + rest;
        try {
          parseObjectKey(key);
        } catch {
          continue; // foreign files (editor droppings, partial copies) are not objects
        }
        yield key;
      }
    }
  }

  private async writeTemp(tmp: string, bytes: Uint8Array): Promise<void> {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(bytes);
      if (this.opts.fsync) await fh.sync();
    } finally {
      await fh.close();
    }
  }

  private ioError(action: string, key: string, cause: unknown): GridboxError {
    return new GridboxError('STORE_IO', `Cannot ${action} object ${q(key)} in ${q(this.dataDir)}: ${(cause as Error)?.message ?? cause}`, { objectId: key, path: this.dataDir, cause });
  }
}
