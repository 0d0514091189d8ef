// The run directory of gridbox mount daemons: one small JSON record per mountpoint naming the daemon's pid,
// control socket, log and namespace, so `gridbox umount/status/enter` find a daemon even when its mount
// lives in a user namespace. Not the control protocol (control.ts) and not the daemon's life (daemon.ts).
import type { Hash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
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

/** Where mount records, control sockets and daemon logs live: GRIDBOX_RUN_DIR, else $XDG_RUNTIME_DIR/gridbox, else /tmp/gridbox-<uid>. */
export function runDir(env: NodeJS.ProcessEnv): string {
  if (env.GRIDBOX_RUN_DIR) return resolve(env.GRIDBOX_RUN_DIR);
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'gridbox');
  return join(tmpdir(), `gridbox-${process.getuid?.() ?? 0}`);
}

// node:crypto is required only when a record's name is computed: its module graph costs ~7 ms, which the runtime's
// accounting (findMountRecord, on every container start on a gridbox mount) should not pay.
let sha256: (() => Hash) | undefined;

/** File names for `mountpoint` under the run directory. */
export function recordPaths(dir: string, mountpoint: string): { record: string; socket: string; log: string } {
  sha256 ??= ((c) => () => c.createHash('sha256'))(createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto'));
  const key = sha256().update(resolve(mountpoint)).digest('hex').slice(0, 16);
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

/**
 * The record of `mountpoint`, found by reading the run directory's records rather than by its name (no hash, so
 * no node:crypto): for the runtime's start accounting. Undefined when there is none or the directory is unreadable.
 */
export async function findMountRecord(dir: string, mountpoint: string): Promise<MountRecord | undefined> {
  const want = resolve(mountpoint);
  let names: string[];
  try { names = await readdir(dir); } catch { return undefined; }
  for (const n of names) {
    if (!n.endsWith('.json')) continue;
    try {
      const rec = JSON.parse(await readFile(join(dir, n), 'utf8')) as MountRecord;
      if (typeof rec.mountpoint === 'string' && resolve(rec.mountpoint) === want) return rec;
    } catch { /* being replaced, or not a record */ }
  }
  return undefined;
}

/** Removes the record and socket (the log stays for post-mortems). */
export async function removeMountRecord(dir: string, mountpoint: string): Promise<void> {
  const p = recordPaths(dir, mountpoint);
  await rm(p.record, { force: true });
  await rm(p.socket, { force: true });
}
