// Where a stratum-1 replica lives under its root directory (the publisher's shape: served files under
// srv/<fqrn>/, private state under var/<fqrn>/), the snapshot lock, and atomic top-level file writes.
// Paths and file mechanics only; what gets copied is snapshot.ts's business.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GridboxError, isGridboxError, q } from '../errors.js';
import { writeFileAtomic as writeFileAtomicPlumbing } from '../plumbing/atomic-write.js';
import { acquireLock } from '../plumbing/lock-file.js';

export interface ReplicaLayout {
  fqrn: string;
  root: string;
  /** Served tree: .cvmfspublished, .cvmfswhitelist, data/ — what a web server exposes as /cvmfs/<fqrn>. */
  srv: string;
  manifest: string;
  whitelist: string;
  whitelistPkcs7: string;
  lastSnapshot: string;
  /** Staging for top-level files: data/txn is never served (server/srv-handler.ts refuses it). */
  txn: string;
  /** Not served: lock and inflated catalogs while walking them. */
  state: string;
  lock: string;
}

const FQRN_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function replicaLayout(root: string, fqrn: string): ReplicaLayout {
  if (!FQRN_RE.test(fqrn) || fqrn.includes('..')) throw new GridboxError('USAGE', `Invalid repository name ${q(fqrn)}: expected a DNS-like name such as "sw.example.org"`);
  const srv = join(root, 'srv', fqrn);
  const state = join(root, 'var', fqrn);
  return {
    fqrn, root, srv, state,
    manifest: join(srv, '.cvmfspublished'),
    whitelist: join(srv, '.cvmfswhitelist'),
    whitelistPkcs7: join(srv, '.cvmfswhitelist.pkcs7'),
    lastSnapshot: join(srv, '.cvmfs_last_snapshot'),
    txn: join(srv, 'data', 'txn'),
    lock: join(state, 'snapshot.lock'),
  };
}

/** The file's bytes, or undefined when it does not exist. */
export async function readIfPresent(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new GridboxError('STORE_IO', `Cannot read ${q(path)}: ${(e as Error).message}`, { path, cause: e });
  }
}

/** Writes `bytes` to a temp file in `txnDir`, then renames it over `dest`, so readers see old or new, never half. */
export async function writeFileAtomic(txnDir: string, dest: string, bytes: Uint8Array): Promise<void> {
  await mkdir(txnDir, { recursive: true });
  try {
    await writeFileAtomicPlumbing(dest, bytes, { tmpDir: txnDir, fsync: true });
  } catch (e) {
    throw new GridboxError('STORE_IO', `Cannot write ${q(dest)}: ${(e as Error).message}`, { path: dest, cause: e });
  }
}

/**
 * Takes the replica's snapshot lock (plumbing/lock-file: kernel-held, so a killed snapshot never leaves it
 * stuck). Returns the release function. A live holder is PUBLISH_LOCKED: two snapshots racing could
 * install an older manifest over a newer one.
 */
export async function lockReplica(layout: ReplicaLayout): Promise<() => Promise<void>> {
  await mkdir(layout.state, { recursive: true });
  try {
    const lock = await acquireLock(layout.lock, { purpose: 'snapshot' });
    return async () => lock.release();
  } catch (e) {
    if (!isGridboxError(e, 'LOCK_HELD')) throw e;
    const pid = (e.fields as { holderPid?: number }).holderPid;
    throw new GridboxError('PUBLISH_LOCKED', `Cannot snapshot ${q(layout.fqrn)}: another snapshot (pid ${pid ?? '?'}) holds ${q(layout.lock)}`, { path: layout.lock, holderPid: pid, cause: e });
  }
}

/** `date --utc` style, as stock `cvmfs_server snapshot` writes into .cvmfs_last_snapshot. */
export function formatSnapshotTime(d: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]} ${months[d.getUTCMonth()]} ${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} UTC ${d.getUTCFullYear()}`;
}
