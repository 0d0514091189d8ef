// A mount daemon's control channel and its record on disk: a Unix socket answering one JSON request per
// connection ("status", "unmount"), and a small JSON file per mountpoint naming the daemon's pid, socket
// and namespace, so `gridbox umount/status/enter` find it even when the mount lives in a user namespace.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { join, resolve } from 'node:path';
import { GridboxError, q } from '../errors.js';
import type { ClientStats } from '../client/index.js';

/** What `gridbox status` shows. */
export interface MountStatus extends ClientStats {
  fqrn: string;
  mountpoint: string;
  pid: number;
  userns: boolean;
  nodes: number;
  ioErrors: number;
  revisionSwitches: number;
  uptimeS: number;
  /** FUSE requests received per opcode. */
  requests: Record<string, number>;
}

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

export interface ControlHandlers {
  status(): MountStatus;
  /** Starts the unmount; the daemon exits once done. */
  unmount(): Promise<void>;
}

const MAX_REQUEST_BYTES = 4096;

/** File names for `mountpoint` under the run directory. */
export function recordPaths(runDir: string, mountpoint: string): { record: string; socket: string; log: string } {
  const key = createHash('sha256').update(resolve(mountpoint)).digest('hex').slice(0, 16);
  return { record: join(runDir, `${key}.json`), socket: join(runDir, `${key}.sock`), log: join(runDir, `${key}.log`) };
}

export async function writeMountRecord(runDir: string, rec: MountRecord): Promise<void> {
  await mkdir(runDir, { recursive: true, mode: 0o700 });
  const { record } = recordPaths(runDir, rec.mountpoint);
  await writeFile(`${record}.tmp`, JSON.stringify(rec) + '\n');
  await rename(`${record}.tmp`, record);
}

export async function readMountRecord(runDir: string, mountpoint: string): Promise<MountRecord | undefined> {
  try {
    return JSON.parse(await readFile(recordPaths(runDir, mountpoint).record, 'utf8')) as MountRecord;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new GridboxError('CONFIG_INVALID', `Cannot read the mount record of ${q(mountpoint)}`, { cause: e, path: mountpoint });
  }
}

/** Removes the record and socket (the log stays for post-mortems). */
export async function removeMountRecord(runDir: string, mountpoint: string): Promise<void> {
  const p = recordPaths(runDir, mountpoint);
  await rm(p.record, { force: true });
  await rm(p.socket, { force: true });
}

/** Whether a process with this pid exists (signal 0). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

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
export function callControl(socketPath: string, request: 'status' | 'unmount', timeoutMs = 5000): Promise<{ ok: boolean; status?: MountStatus; error?: string }> {
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
