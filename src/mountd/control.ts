// A mount daemon's control channel: a Unix socket answering one request per connection ("status",
// "unmount", or a JSON line: {"op":"talk","fqrn":…,"command":…} as cvmfs_talk, {"op":"reload"}), and the
// callers' side (status, talk, stop and wait for exit). Light on purpose: umount, status and talk load
// this, not the daemon. Not the records that name the socket (run-dir.ts).
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createConnection, createServer, type Server } from 'node:net';
import { GridboxError, q } from '../errors.js';
import { isAlive } from '../plumbing/process-identity.js';
import type { Client, ClientStats } from '../client/index.js';
import type { MountRecord } from './run-dir.js';

/** What `gridbox status` shows. */
export interface MountStatus extends ClientStats {
  fqrn: string;
  mountpoint: string;
  pid: number;
  userns: boolean;
  nodes: number;
  ioErrors: number;
  revisionSwitches: number;
  /** Opens served by FUSE passthrough (their reads never reach the daemon). */
  passthroughOpens: number;
  /** READs the addon answered from cache files (they are not in `requests`). */
  fastReads?: number;
  uptimeS: number;
  /** FUSE requests received per opcode. */
  requests: Record<string, number>;
}

export interface ControlHandlers {
  status(): MountStatus;
  /** Starts the unmount; the daemon exits once done. */
  unmount(): Promise<void>;
  /** Prometheus text of the daemon's metrics (mount-metrics.ts), for the "metrics" request (answered as `text`). */
  metrics?(): Promise<string>;
  /** The mount's client: talk's `remount` asks it for a new revision. */
  client?: Pick<Client, 'checkForUpdate'>;
  /** A cvmfs_talk command for repository `fqrn` (absent: answered from status() and client by talkAnswer). */
  talk?(fqrn: string | undefined, command: string): Promise<string>;
  /** Re-reads the configuration (gridbox config reload); absent: a remount. */
  reload?(): Promise<string>;
}

/** The record name of an on-demand /cvmfs daemon, which serves every configured repository (autofs's wildcard key). */
export const AUTOMOUNT_FQRN = '*';

const mb = (n: number): number => Math.round(n / 1048576);

/** cvmfs_talk's answers from a single mount's status and client. */
export async function talkAnswer(command: string, status: () => MountStatus, client?: Pick<Client, 'checkForUpdate'>): Promise<string> {
  const words = command.trim().split(/\s+/);
  const cmd = words.join(' ');
  const s = status();
  switch (cmd) {
    case 'host info': return `Active host: ${s.host ?? '(none contacted yet)'}`;
    case 'proxy info': return `Active proxy: ${s.proxy ?? 'DIRECT'}`;
    case 'cache size': return `Current cache size is ${mb(s.cacheBytes)}MB (${s.cacheBytes} Bytes), limit ${mb(s.cacheLimit)}MB, ${s.cacheObjects} objects`;
    case 'revision': return String(s.revision);
    case 'root hash': return s.rootHash;
    case 'pid': return String(s.pid);
    case 'mountpoint': return s.mountpoint;
    case 'open files': return String(s.openFiles);
    case 'remount':
    case 'remount sync': {
      if (client === undefined) return 'Remount is not supported by this mount';
      const r = await client.checkForUpdate();
      if (r.error !== undefined) return `Failed to check for a new revision (offline, serving revision ${r.revision}): ${(r.error as Error).message ?? String(r.error)}`;
      return r.updated ? `New revision applied (revision ${r.revision})` : `Catalog up to date (revision ${r.revision})`;
    }
    case 'internal affairs':
      return Object.entries(s).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('\n');
    default:
      throw new GridboxError('USAGE', `Unknown talk command ${q(cmd)} (host info, proxy info, cache size, revision, root hash, pid, mountpoint, open files, remount, cleanup MB, internal affairs)`);
  }
}

const MAX_REQUEST_BYTES = 4096;

export async function serveControl(socketPath: string, h: ControlHandlers): Promise<Server> {
  await rm(socketPath, { force: true });
  const server = createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('error', () => undefined);
    conn.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_REQUEST_BYTES) { conn.destroy(); return; }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const cmd = buf.slice(0, nl).trim();
      const reply = (v: unknown): void => { conn.end(JSON.stringify(v) + '\n'); };
      const answer = (p: Promise<string>): void => {
        p.then((text) => reply({ ok: true, text }), (e: unknown) => reply({ ok: false, error: (e as Error).message ?? String(e) }));
      };
      if (cmd.startsWith('{')) {
        let r: { op?: unknown; fqrn?: unknown; command?: unknown };
        try { r = JSON.parse(cmd) as typeof r; } catch { reply({ ok: false, error: 'bad JSON request' }); return; }
        const fqrn = typeof r.fqrn === 'string' ? r.fqrn : undefined;
        if (r.op === 'talk' && typeof r.command === 'string') {
          const command = r.command;
          answer(h.talk ? h.talk(fqrn, command) : talkAnswer(command, h.status, h.client));
        } else if (r.op === 'reload') {
          answer(h.reload ? h.reload() : talkAnswer('remount', h.status, h.client));
        } else reply({ ok: false, error: `unknown request ${q(cmd)}` });
      } else if (cmd === 'status') reply({ ok: true, status: h.status() });
      else if (cmd === 'metrics' && h.metrics) answer(h.metrics());
      else if (cmd === 'unmount') {
        reply({ ok: true });
        void h.unmount();
      } else reply({ ok: false, error: `unknown request ${q(cmd)}` });
    });
  });
  await new Promise<void>((ok, fail) => { server.once('error', fail); server.listen(socketPath, () => { server.off('error', fail); ok(); }); });
  server.unref();
  return server;
}

/** Sends one request to a daemon; fails with MOUNT_FAILED when nothing answers within `timeoutMs`. */
export function callControl(socketPath: string, request: 'status' | 'unmount' | 'metrics' | { op: 'talk'; fqrn?: string; command: string } | { op: 'reload' }, timeoutMs = 5000): Promise<{ ok: boolean; status?: MountStatus; text?: string; error?: string }> {
  return new Promise((ok, fail) => {
    const conn = createConnection(socketPath);
    let buf = '';
    const timer = setTimeout(() => { conn.destroy(); fail(new GridboxError('MOUNT_FAILED', `No answer from mount daemon at ${q(socketPath)} within ${timeoutMs} ms`)); }, timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${typeof request === 'string' ? request : JSON.stringify(request)}\n`));
    conn.on('data', (d: string) => { buf += d; });
    conn.on('error', (e) => { clearTimeout(timer); fail(new GridboxError('MOUNT_FAILED', `Cannot reach mount daemon at ${q(socketPath)}`, { cause: e })); });
    conn.on('end', () => {
      clearTimeout(timer);
      try { ok(JSON.parse(buf)); } catch (e) { fail(new GridboxError('MOUNT_FAILED', `Bad answer from mount daemon at ${q(socketPath)}`, { cause: e })); }
    });
  });
}

/** The status of the daemon recorded for `mountpoint` in `dir`. */
export async function daemonStatus(dir: string, rec: MountRecord | undefined, mountpoint: string): Promise<MountStatus> {
  if (rec === undefined || !isAlive(rec.pid)) throw new GridboxError('NOT_FOUND', `No gridbox mount daemon for ${q(mountpoint)} (run dir ${q(dir)})`, { path: mountpoint });
  const r = await callControl(rec.socket, 'status');
  if (!r.ok || r.status === undefined) throw new GridboxError('MOUNT_FAILED', `Mount daemon of ${q(mountpoint)} refused status: ${r.error ?? ''}`);
  return r.status;
}

/**
 * Waits until `pid` is gone; false on timeout. Polls every few ms (a look at /proc/PID/stat): a daemon exits
 * 0.1-0.3 s after its unmount starts, and a 50 ms step cost `gridbox umount` up to that much on each.
 */
export async function waitExit(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  let step = 2;
  while (Date.now() < until) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, step));
    step = Math.min(10, step * 2);
  }
  return !isAlive(pid);
}

/** Asks the daemon of `rec` to unmount (SIGTERM if its socket does not answer) and waits for it to exit. */
export async function stopDaemon(rec: MountRecord, timeoutMs: number): Promise<void> {
  try {
    await callControl(rec.socket, 'unmount');
  } catch {
    // The daemon does not answer: a signal starts the same unmount.
    process.kill(rec.pid, 'SIGTERM');
  }
  if (!(await waitExit(rec.pid, timeoutMs))) {
    throw new GridboxError('MOUNT_FAILED', `Mount daemon pid ${rec.pid} of ${q(rec.mountpoint)} did not exit within ${timeoutMs / 1000} s (busy? try --lazy)`, { path: rec.mountpoint });
  }
}

/** Every mount record in the run dir (plain mounts and on-demand /cvmfs daemons), live or not. */
export async function listMountRecords(dir: string): Promise<MountRecord[]> {
  let names: string[];
  try { names = (await readdir(dir)).filter((n) => n.endsWith('.json')); } catch { return []; }
  const out: MountRecord[] = [];
  for (const n of names) {
    try { out.push(JSON.parse(await readFile(join(dir, n), 'utf8')) as MountRecord); } catch { /* being written or removed */ }
  }
  return out;
}

/** The live daemon serving `fqrn`: its own mount first, else an on-demand /cvmfs that lists it. */
export async function daemonFor(dir: string, fqrn: string): Promise<MountRecord | undefined> {
  const live = (await listMountRecords(dir)).filter((r) => isAlive(r.pid));
  return live.find((r) => r.fqrn === fqrn) ?? live.find((r) => r.fqrn === AUTOMOUNT_FQRN);
}
