// A mount daemon's control channel: a Unix socket answering one JSON request per connection ("status",
// "unmount"), and the callers' side (status, stop and wait for exit). Light on purpose: umount and status
// load this, not the daemon. Not the records that name the socket (run-dir.ts).
import { rm } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { GridboxError, q } from '../errors.js';
import type { ClientStats } from '../client/index.js';
import { processAlive, type MountRecord } from './run-dir.js';

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
  uptimeS: number;
  /** FUSE requests received per opcode. */
  requests: Record<string, number>;
}

export interface ControlHandlers {
  status(): MountStatus;
  /** Starts the unmount; the daemon exits once done. */
  unmount(): Promise<void>;
  /** Prometheus text of the daemon's metrics (mount-metrics.ts), for the "metrics" request. */
  metrics?(): Promise<string>;
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
      if (cmd === 'status') reply({ ok: true, status: h.status() });
      else if (cmd === 'metrics' && h.metrics) h.metrics().then((metrics) => reply({ ok: true, metrics }), (e: unknown) => reply({ ok: false, error: String(e) }));
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
export function callControl(socketPath: string, request: 'status' | 'unmount' | 'metrics', timeoutMs = 5000): Promise<{ ok: boolean; status?: MountStatus; metrics?: string; error?: string }> {
  return new Promise((ok, fail) => {
    const conn = createConnection(socketPath);
    let buf = '';
    const timer = setTimeout(() => { conn.destroy(); fail(new GridboxError('MOUNT_FAILED', `No answer from mount daemon at ${q(socketPath)} within ${timeoutMs} ms`)); }, timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${request}\n`));
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
  if (rec === undefined || !processAlive(rec.pid)) throw new GridboxError('NOT_FOUND', `No gridbox mount daemon for ${q(mountpoint)} (run dir ${q(dir)})`, { path: mountpoint });
  const r = await callControl(rec.socket, 'status');
  if (!r.ok || r.status === undefined) throw new GridboxError('MOUNT_FAILED', `Mount daemon of ${q(mountpoint)} refused status: ${r.error ?? ''}`);
  return r.status;
}

/** Waits until `pid` is gone; false on timeout. Polls fast at first: a daemon usually exits within milliseconds. */
export async function waitExit(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  let step = 2;
  while (Date.now() < until) {
    if (!processAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, step));
    step = Math.min(50, step * 2);
  }
  return !processAlive(pid);
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
