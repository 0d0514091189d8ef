// Measures one container start for the accounting: wall time to the sandbox's first process and to exit, and
// what the image's gridbox mount fetched meanwhile (the mount's user.rx/user.ndownload/user.nhits xattrs, else
// its control socket when we may reach it). Called by the runtime (`apptainer exec|run|test`) and by `pilot job` when
// it runs somebody else's runtime. Never fails or prints: a start must not break or get noisy for accounting.
import { readFileSync, realpathSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { gridboxMountOf, imageIdentity, parseMountInfo, type MountEntry, type StartRecord } from '../../accounting/start-record.js';
import { spoolStart } from '../../accounting/start-spool.js';
import { loadNativeAddon } from '../../plumbing/native-addon.js';

/** Where this user's start records go: $GRIDBOX_ACCOUNTING_DB, /var/lib/gridbox for root, else the XDG state dir. */
export function accountingDbPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.GRIDBOX_ACCOUNTING_DB) return env.GRIDBOX_ACCOUNTING_DB;
  if (process.getuid?.() === 0) return '/var/lib/gridbox/accounting.db';
  const state = env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state');
  return join(state, 'gridbox', 'accounting.db');
}

/** Milliseconds on the monotonic clock; process.hrtime rather than perf_hooks, whose loading costs a start ~10 modules. */
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

interface Counters { bytes: number; hits: number | null; misses: number | null; source: 'socket' | 'xattr' }

/**
 * The mount's counters; `only` keeps the after-reading on the source the before-reading used (their units differ).
 * Its xattrs first when the addon makes getxattr(2) (a few FUSE round trips, ~0.1 ms): the control socket cost a
 * start ~13 ms before its launch and ~3 ms after its exit (node:net loaded, the daemon's whole status built),
 * measured on a scientific image. The socket serves where there is no addon: getfattr is a process per reading.
 */
async function readCounters(mount: MountEntry, env: NodeJS.ProcessEnv, only?: Counters['source']): Promise<Counters | undefined> {
  const fromXattrs = async (): Promise<Counters | undefined> => {
    const attr = await readMountXattrs(mount.mountpoint);
    const rxKiB = attr('rx');
    if (rxKiB === undefined) return undefined;
    return { bytes: rxKiB * 1024, hits: attr('nhits') ?? null, misses: attr('ndownload') ?? null, source: 'xattr' };
  };
  const xattrsFirst = only === 'xattr' || (only === undefined && loadNativeAddon()?.getxattr !== undefined);
  if (xattrsFirst) {
    const c = await fromXattrs();
    if (c !== undefined || only === 'xattr') return c;
  }
  try {
    // mountd/'s record lookup and control modules are light (no client or FUSE stack), loaded only here, and the
    // control module (node:net) only for a mount whose record this user can read.
    const { findMountRecord, runDir } = await import('../../mountd/run-dir-find.js');
    const rec = findMountRecord(runDir(env), mount.mountpoint);
    if (rec !== undefined) {
      const { callControl } = await import('../../mountd/control.js');
      const r = await callControl(rec.socket, 'status', 300);
      // Bytes on the wire (compressed) where the client counts them (bytesOnWire), else what it has (bytesDownloaded).
      const st = (r.ok ? r.status ?? {} : {}) as unknown as Record<string, number | undefined>;
      const bytes = st.bytesOnWire ?? st.bytesDownloaded;
      if (typeof bytes === 'number') return { bytes, hits: st.hits ?? null, misses: st.misses ?? null, source: 'socket' };
    }
  } catch { /* not our run dir, not reachable as this user, or slower than 300 ms (this delays the start): the xattrs below work for anyone */ }
  // Not read twice: xattrs that gave nothing before the socket give nothing now.
  if (only === 'socket' || xattrsFirst) return undefined;
  return fromXattrs();
}

export interface StartMeter {
  /** The sandbox's first process exists (call once). */
  started(): void;
  /** Records the start; resolves when stored (errors swallowed). */
  finish(exitStatus: number): Promise<void>;
}

/** The mount's counter xattrs: by getxattr(2) through the native addon, else one getfattr(1). */
async function readMountXattrs(mountpoint: string): Promise<(name: string) => number | undefined> {
  const addon = loadNativeAddon();
  if (addon?.getxattr !== undefined) {
    const get = addon.getxattr;
    return (name) => {
      const v = get(mountpoint, `user.${name}`);
      return typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v.trim()) : undefined;
    };
  }
  // The attributes from one getfattr, run asynchronously: the runtime builds its launch meanwhile (a process
  // start per attribute cost a loaded node most of a second per container start). child_process is loaded only
  // here: a start that never needs it does not pay for its module graph (issue 11).
  const { execFile } = await import('node:child_process');
  const out = await new Promise<string | undefined>((resolve) => {
    execFile('getfattr', ['--absolute-names', '-d', '-m', '^user\\.(rx|ndownload|nhits)$', mountpoint], { encoding: 'utf8', timeout: 2000 },
      (err, stdout) => resolve(err ? undefined : stdout));
  });
  return (name) => {
    const m = new RegExp(`^user\\.${name}="(\\d+)"$`, 'm').exec(out ?? '');
    return m ? Number(m[1]) : undefined;
  };
}

const NOOP: StartMeter = { started: () => undefined, finish: async () => undefined };

/**
 * Starts measuring a container start of `image` (the path the caller named). `via` and the public name
 * come from the pilot through GRIDBOX_ACCOUNTING_VIA / GRIDBOX_ACCOUNTING_IMAGE when it started us.
 * GRIDBOX_ACCOUNTING=off disables it.
 */
export async function beginStart(image: string, env: NodeJS.ProcessEnv = process.env, via: StartRecord['via'] = 'runtime'): Promise<StartMeter> {
  if (/^(off|0|no|false)$/i.test(env.GRIDBOX_ACCOUNTING ?? '')) return NOOP;
  try {
    const t0 = nowMs();
    const startedAt = Date.now();
    let physical = image;
    try { physical = realpathSync(image); } catch { /* the runtime reports a missing image itself */ }
    let mount: MountEntry | undefined;
    try { mount = gridboxMountOf(physical, parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'))); } catch { mount = undefined; }
    const before = mount ? await readCounters(mount, env) : undefined;
    let firstMs: number | null = null;
    const human = env.GRIDBOX_ACCOUNTING_IMAGE || undefined;
    const id = imageIdentity({ given: image, physical, mount, human });
    return {
      started: () => { if (firstMs === null) firstMs = nowMs() - t0; },
      finish: async (exitStatus) => {
        try {
          const exitMs = nowMs() - t0;
          const after = mount && before ? await readCounters(mount, env, before.source) : undefined;
          const delta = (a: number | null | undefined, b: number | null | undefined): number | null => (a == null || b == null ? null : Math.max(0, a - b));
          const dbPath = accountingDbPath(env);
          // One small file per start (start-spool.ts); SQLite is opened only when the spool has grown or to post.
          const spooled = spoolStart(dbPath, {
            node: hostname(), startedAt, via: env.GRIDBOX_ACCOUNTING_VIA === 'pilot' ? 'pilot' : via, imageName: id.name, imageDigest: id.digest,
            firstInstructionMs: firstMs === null ? null : Math.round(firstMs * 10) / 10, exitMs: Math.round(exitMs * 10) / 10, exitStatus,
            bytesFetched: delta(after?.bytes, before?.bytes), cacheHits: delta(after?.hits, before?.hits), cacheMisses: delta(after?.misses, before?.misses),
          });
          if (spooled > 0 && !env.GRIDBOX_ACCOUNTING_URL) {
            const { openAccountingDb } = await import('../../accounting/accounting-db.js');
            openAccountingDb(dbPath).close();
          }
          if (env.GRIDBOX_ACCOUNTING_URL) {
            const { postUnposted } = await import('./report-post.js');
            await postUnposted(accountingDbPath(env), env.GRIDBOX_ACCOUNTING_URL, 3000);
          }
        } catch { /* accounting never changes a job's outcome */ }
      },
    };
  } catch {
    return NOOP;
  }
}
