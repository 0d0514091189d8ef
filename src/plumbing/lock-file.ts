// An exclusive inter-process lock that can neither stick nor double-grant.
//
// Why this design: the lock itself is a POSIX (fcntl) lock that the kernel holds for us, taken through a
// SQLite `BEGIN EXCLUSIVE` on `<path>.lockdb` (better-sqlite3 is our SQLite driver; Node has no flock or
// fcntl of its own). Its lifetime is the holder's: when the holder exits or is SIGKILLed the kernel drops
// it, so a dead holder can never make it stick, and the kernel grants it to exactly one process, so a
// takeover needs no unlink-and-retry and cannot double-grant. The alternative (link(2) of a written temp
// file plus a rename-based takeover) needs a second, itself takeover-able, claim to stay single-winner.
//
// `<path>` itself is only the description of the holder (pid + boot id + start time, purpose, since),
// written with temp-file-then-rename once the kernel lock is ours, so it is never half-written; an empty or
// stale one (a kill between open and write, a dead holder) is simply replaced by the next holder. Who holds
// the lock is read from /proc/locks (the kernel's truth); the description only adds the purpose.
// `<path>.lockdb` is never removed or replaced (that would let two processes lock two different inodes),
// and nothing else may open it: closing any descriptor of a file drops this process's fcntl locks on it.
// Not a cross-host lock (fcntl over NFS is out of scope), not reentrant: a second tryLock in the holding
// process is refused like any other.
import Database from 'better-sqlite3';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { GridboxError, q } from '../errors.js';
import { writeFileAtomicSync } from './atomic-write.js';
import { formatIdentity, identityOf, isAlive, parseIdentity, selfIdentity, type ProcessIdentity } from './process-identity.js';

export interface HeldLock {
  readonly path: string;
  /** Gives the lock up (removes the description, then the kernel lock); safe to call twice. */
  release(): void;
}

/** What tryLock reports when someone else holds the lock; fields are absent when they cannot be known. */
export interface LockHolder { heldBy?: ProcessIdentity; purpose?: string; since?: string }

/** The description written to `<path>` by the holder. */
interface HolderRecord { holder: string; pid: number; host: string; purpose?: string; since: string }

// SQLite's unix VFS lock bytes (sqlite3.c: PENDING_BYTE, SHARED_FIRST, SHARED_SIZE). A connection that has
// completed BEGIN EXCLUSIVE holds a write lock over the whole SHARED range; one that is only part-way
// (a racing contender) holds less, which is how a transient conflict is told from a holder.
const PENDING_BYTE = 0x40000000;
const SHARED_FIRST = PENDING_BYTE + 2;
const SHARED_LAST = SHARED_FIRST + 510 - 1;
/** How long tryLock keeps retrying conflicts that come from racing contenders rather than a holder. */
const TRANSIENT_RETRY_MS = 500;
const POLL_MS = 50;

/** Open lock connections, kept referenced so that garbage collection can never close (and so release) one. */
const held = new Set<Database.Database>();

export function lockDbPath(path: string): string {
  return `${path}.lockdb`;
}

export function isHeldLock(x: HeldLock | LockHolder): x is HeldLock {
  return typeof (x as HeldLock).release === 'function';
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The pid holding an exclusive POSIX lock on the file per /proc/locks: a number (0 if in another pid namespace), or undefined for none. */
export function exclusiveHolderPid(file: string): number | undefined {
  let st: ReturnType<typeof statSync>, table: string;
  try {
    st = statSync(file);
    table = readFileSync('/proc/locks', 'utf8');
  } catch {
    return undefined;
  }
  // /proc/locks prints the device as major:minor in hex (glibc's encoding of st_dev) and the inode in decimal.
  const dev = Number(st.dev), ino = String(st.ino);
  const major = ((dev >>> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >>> 12) & ~0xff);
  for (const line of table.split('\n')) {
    const m = /^\d+:\s+(?:->\s+)?POSIX\s+\S+\s+WRITE\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s+(\d+)\s+(\d+|EOF)/.exec(line);
    if (m === null || m[4] !== ino || parseInt(m[2], 16) !== major || parseInt(m[3], 16) !== minor) continue;
    const start = Number(m[5]), end = m[6] === 'EOF' ? Infinity : Number(m[6]);
    if (start <= SHARED_FIRST && end >= SHARED_LAST) return Math.max(0, Number(m[1]));
  }
  return undefined;
}

function readRecord(path: string): HolderRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as Partial<HolderRecord>;
    return typeof r.holder === 'string' && typeof r.since === 'string' ? r as HolderRecord : undefined;
  } catch {
    return undefined; // missing, empty (killed between open and write), or another program's format
  }
}

/** Who holds the lock, as far as the kernel and the description agree. */
function describeHolder(path: string, pid: number | undefined): LockHolder {
  const rec = readRecord(path);
  const recId = rec === undefined ? undefined : parseIdentity(rec.holder);
  if (recId !== undefined && (pid === undefined || pid === 0 || recId.pid === pid) && isAlive(recId)) {
    return { heldBy: recId, purpose: rec?.purpose, since: rec?.since };
  }
  // The description is stale or not yet written (the holder is between lock and write): the kernel's pid.
  const heldBy = pid === undefined || pid === 0 ? undefined : identityOf(pid) ?? { pid, bootId: '', startTicks: 0 };
  return { heldBy };
}

function isBusy(e: unknown): boolean {
  const code = (e as { code?: string }).code ?? '';
  return code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED';
}

/**
 * Takes the lock now or reports the holder. Never waits for a holder; it only retries for a moment when
 * the conflict came from other contenders racing (none of which completed), so that of N racers exactly
 * one wins. The parent directory must exist.
 */
export function tryLock(path: string, purpose?: string): HeldLock | LockHolder {
  const dbPath = lockDbPath(path);
  const deadline = Date.now() + TRANSIENT_RETRY_MS;
  for (;;) {
    let db: Database.Database;
    try {
      db = new Database(dbPath, { timeout: 0 });
    } catch (cause) {
      throw new GridboxError('STORE_IO', `Cannot open the lock file ${q(dbPath)}: ${(cause as Error).message}`, { path: dbPath, cause });
    }
    try {
      db.exec('BEGIN EXCLUSIVE');
    } catch (e) {
      db.close(); // safe: SQLite defers closing the descriptor while this process holds locks on the file
      if (!isBusy(e)) {
        throw new GridboxError('SQLITE_INVALID', `Cannot lock ${q(dbPath)}: ${(e as Error).message} (it should be an empty SQLite file; remove it when no process uses the lock)`, { path: dbPath, cause: e });
      }
      const pid = exclusiveHolderPid(dbPath);
      if (pid !== undefined || Date.now() >= deadline) return describeHolder(path, pid);
      sleepSync(1 + Math.random() * 4);
      continue;
    }
    held.add(db);
    const me = selfIdentity();
    const record: HolderRecord = { holder: formatIdentity(me), pid: me.pid, host: hostname(), purpose, since: new Date().toISOString() };
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      try {
        if (readRecord(path)?.holder === record.holder) rmSync(path, { force: true });
      } finally {
        held.delete(db);
        try { db.exec('ROLLBACK'); } catch { /* closing ends the transaction anyway */ }
        db.close();
      }
    };
    try {
      writeFileAtomicSync(path, JSON.stringify(record) + '\n');
    } catch (cause) {
      release();
      throw new GridboxError('STORE_IO', `Cannot write the lock file ${q(path)}: ${(cause as Error).message}`, { path, cause });
    }
    return { path, release };
  }
}

/** Human words for a holder: `pid 123 (publish, since …)`. */
export function formatHolder(h: LockHolder): string {
  const who = h.heldBy === undefined ? 'an unknown process' : `pid ${h.heldBy.pid}`;
  const extra = [h.purpose, h.since === undefined ? undefined : `since ${h.since}`].filter((x) => x !== undefined);
  return extra.length === 0 ? who : `${who} (${extra.join(', ')})`;
}

/**
 * Takes the lock, polling for up to `waitMs` (default 0: one try) while another process holds it.
 * Throws LOCK_HELD naming the holder (fields: path, holderPid, purpose).
 */
export async function acquireLock(path: string, opts: { purpose?: string; waitMs?: number } = {}): Promise<HeldLock> {
  const deadline = Date.now() + (opts.waitMs ?? 0);
  for (;;) {
    const r = tryLock(path, opts.purpose);
    if (isHeldLock(r)) return r;
    if (Date.now() >= deadline) {
      throw new GridboxError('LOCK_HELD', `Cannot take the lock ${q(path)}${opts.purpose === undefined ? '' : ` for ${opts.purpose}`}: held by ${formatHolder(r)}`,
        { path, holderPid: r.heldBy?.pid, purpose: r.purpose, since: r.since });
    }
    await new Promise((res) => setTimeout(res, Math.min(POLL_MS, Math.max(1, deadline - Date.now()))));
  }
}
