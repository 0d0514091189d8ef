// The run directory of gridbox mount daemons: one small JSON record per mountpoint naming the daemon's pid,
// control socket, log and namespace, so `gridbox umount/status/enter` find a daemon even when its mount
// lives in a user namespace. Not the control protocol (control.ts) and not the daemon's life (daemon.ts).
import { createHash } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { writeFileAtomic } from '../plumbing/atomic-write.js';

/** The record a daemon leaves for a mountpoint. */
export interface MountRecord {
  fqrn: string;
  mountpoint: string;
  pid: number;
  /** The mount lives in the user+mount namespace of `pid` (enter with nsenter). */
  userns: boolean;
  socket: string;
  log: string;
}

// The runtime's start accounting finds records without hashing (run-dir-find.ts): a container start then loads
// neither node:crypto nor node:fs/promises for it.
export { findMountRecord, runDir } from './run-dir-find.js';

/** File names for `mountpoint` under the run directory. */
export function recordPaths(dir: string, mountpoint: string): { record: string; socket: string; log: string } {
  const key = createHash('sha256').update(resolve(mountpoint)).digest('hex').slice(0, 16);
  return { record: join(dir, `${key}.json`), socket: join(dir, `${key}.sock`), log: join(dir, `${key}.log`) };
}

export async function writeMountRecord(dir: string, rec: MountRecord): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const { record } = recordPaths(dir, rec.mountpoint);
  await writeFileAtomic(record, JSON.stringify(rec) + '\n');
}

export async function readMountRecord(dir: string, mountpoint: string): Promise<MountRecord | undefined> {
  try {
    return JSON.parse(await readFile(recordPaths(dir, mountpoint).record, 'utf8')) as MountRecord;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new GridboxError('CONFIG_INVALID', `Cannot read the mount record of ${q(mountpoint)}`, { cause: e, path: mountpoint });
  }
}

/** Removes the record and socket (the log stays for post-mortems). */
export async function removeMountRecord(dir: string, mountpoint: string): Promise<void> {
  const p = recordPaths(dir, mountpoint);
  // Synchronous: two unlinks in a local run dir take microseconds, while fs/promises' rm (an lstat and an unlink
  // each, through the threadpool) cost a daemon's exit ~2.7 ms, which umount(8)'s caller waits for.
  for (const f of [p.record, p.socket]) {
    try { unlinkSync(f); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
  }
}
