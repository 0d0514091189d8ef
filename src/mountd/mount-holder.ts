// Refuses to mount over something already mounted: a directory that is a mount point of any kind (a
// tmpfs, a bind mount, another gridbox mount from another run dir) would otherwise get a second mount
// stacked on top, hiding the first. Names the holder: for a gridbox mount its daemon's pid and run dir.
import { readdir, readFile, realpath } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { isAlive } from '../plumbing/process-identity.js';
import { readMountRecord, recordPaths } from './run-dir.js';
import { GridboxError, q } from '../errors.js';
import { readMountInfo, type MountInfo } from '../fuse/mount.js';

/** The topmost mount whose mount point is exactly `mountpoint` (symlinks resolved), if any. */
export async function mountAt(mountpoint: string): Promise<MountInfo | undefined> {
  let real: string;
  try {
    real = await realpath(mountpoint);
  } catch {
    return undefined; // a missing directory is reported by the mount itself
  }
  return (await readMountInfo()).filter((m) => m.mountpoint === real).at(-1);
}

/**
 * The gridbox daemon serving `mountpoint`: found by its control socket (/proc/net/unix lists the bound paths;
 * the socket's name comes from the mountpoint and its directory is the daemon's run dir, whose record names
 * the pid), else by its command line (`mount FQRN MNT --foreground ... --run-dir D`, as the node front
 * starts it; bin/gridbox passes the mountpoint as typed and no run dir).
 */
export async function findDaemonFor(mountpoint: string): Promise<{ pid: number; runDir?: string } | undefined> {
  return (await bySocket(mountpoint)) ?? (await byCommandLine(mountpoint));
}

async function bySocket(mountpoint: string): Promise<{ pid: number; runDir: string } | undefined> {
  const name = `/${basename(recordPaths('/', mountpoint).socket)}`;
  let table: string;
  try {
    table = await readFile('/proc/net/unix', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of table.split('\n')) {
    const path = line.split(' ').at(-1) ?? '';
    if (!path.endsWith(name)) continue;
    const runDir = dirname(path);
    const rec = await readMountRecord(runDir, mountpoint).catch(() => undefined);
    if (rec !== undefined && isAlive(rec.pid)) return { pid: rec.pid, runDir };
  }
  return undefined;
}

async function byCommandLine(mountpoint: string): Promise<{ pid: number; runDir?: string } | undefined> {
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((n) => /^\d+$/.test(n));
  } catch {
    return undefined;
  }
  for (const p of pids) {
    let argv: string[];
    try {
      argv = (await readFile(`/proc/${p}/cmdline`, 'utf8')).split('\0');
    } catch {
      continue; // gone meanwhile, or not ours to read
    }
    const at = argv.indexOf('mount');
    if (at < 0 || argv[at + 2] !== mountpoint || !argv.includes('--foreground')) continue;
    const rd = argv.indexOf('--run-dir');
    return { pid: Number(p), runDir: rd >= 0 ? argv[rd + 1] : undefined };
  }
  return undefined;
}

/** One phrase naming what holds a mount point. */
export async function describeHolder(m: MountInfo): Promise<string> {
  if (m.fstype === 'fuse.gridbox') {
    const d = await findDaemonFor(m.mountpoint);
    if (d !== undefined) return `a gridbox mount of ${m.source} served by pid ${d.pid}${d.runDir ? ` (run dir ${q(d.runDir)})` : ''}`;
    return `a gridbox mount of ${m.source}`;
  }
  return `a ${m.fstype} mount of ${q(m.source)}`;
}

/** Throws MOUNT_POINT_BUSY when `mountpoint` already is a mount point. */
export async function assertNotMountPoint(mountpoint: string): Promise<void> {
  const m = await mountAt(mountpoint);
  if (m === undefined) return;
  throw new GridboxError('MOUNT_POINT_BUSY', `Cannot mount at ${q(mountpoint)}: it is already a mount point (${await describeHolder(m)}); unmount it first`, { path: mountpoint });
}
