// Who a process is, in a form that survives pid recycling: pid + boot id + start time (clock ticks since
// boot, /proc/<pid>/stat field 22). A pid alone is not an identity: after a reboot or enough forks the same
// number names another process. Linux-only facts; elsewhere it degrades to "the pid exists".
import { readFileSync } from 'node:fs';

export interface ProcessIdentity { pid: number; bootId: string; startTicks: number }

const BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id';
let cachedBootId: string | undefined;
let cachedSelf: ProcessIdentity | undefined;

/** The kernel's boot id (a UUID that changes at every boot), or '' where /proc does not have it. */
export function bootId(): string {
  if (cachedBootId === undefined) {
    try { cachedBootId = readFileSync(BOOT_ID_PATH, 'utf8').trim(); } catch { cachedBootId = ''; }
  }
  return cachedBootId;
}

interface StatFacts { startTicks: number; state: string }

/**
 * Reads /proc/<pid>/stat. The command name (field 2) is in parentheses and may itself hold spaces and
 * ')', so fields are counted from the last ')'. Undefined when the process does not exist.
 */
function readStat(pid: number): StatFacts | undefined {
  let text: string;
  try { text = readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return undefined; }
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const rest = text.slice(close + 2).split(' '); // rest[0] is field 3 (state)
  const startTicks = Number(rest[22 - 3]);
  if (!Number.isSafeInteger(startTicks)) return undefined;
  return { startTicks, state: rest[0] };
}

/** This process's identity (computed once: none of the three parts changes while we run). */
export function selfIdentity(): ProcessIdentity {
  if (cachedSelf === undefined || cachedSelf.pid !== process.pid) {
    cachedSelf = { pid: process.pid, bootId: bootId(), startTicks: readStat(process.pid)?.startTicks ?? 0 };
  }
  return cachedSelf;
}

/** The identity of a running process, or undefined when there is no such (live) process. */
export function identityOf(pid: number): ProcessIdentity | undefined {
  const st = readStat(pid);
  if (st === undefined || st.state === 'Z' || st.state === 'X') return undefined;
  return { pid, bootId: bootId(), startTicks: st.startTicks };
}

function pidExists(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * True when the process still runs: same boot, the pid exists (zombies count as dead: they hold no
 * locks and do no more work), and it started at the same tick, so a recycled pid is not the holder.
 * A bare number can only be checked for existence.
 */
export function isAlive(who: ProcessIdentity | number): boolean {
  const pid = typeof who === 'number' ? who : who.pid;
  if (!pidExists(pid)) return false;
  const st = readStat(pid);
  if (st === undefined) return true; // no /proc (or hidepid): existence is all we know; err on alive
  if (st.state === 'Z' || st.state === 'X') return false;
  if (typeof who === 'number') return true;
  if (who.bootId !== '' && bootId() !== '' && who.bootId !== bootId()) return false;
  return who.startTicks === st.startTicks;
}

/** `<pid>.<startTicks>@<bootId>`: no '/', no spaces, so it fits in file and directory names. */
export function formatIdentity(who: ProcessIdentity): string {
  return `${who.pid}.${who.startTicks}@${who.bootId}`;
}

/** Inverse of formatIdentity; undefined for anything else (also for trailing text). */
export function parseIdentity(text: string): ProcessIdentity | undefined {
  const m = /^(\d{1,10})\.(\d{1,20})@([0-9a-fA-F-]{0,64})$/.exec(text.trim());
  if (m === null) return undefined;
  const pid = Number(m[1]), startTicks = Number(m[2]);
  if (!Number.isSafeInteger(pid) || pid <= 0 || !Number.isSafeInteger(startTicks)) return undefined;
  return { pid, bootId: m[3], startTicks };
}
