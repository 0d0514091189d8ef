// A mount daemon's life: started detached by `gridbox mount` (the parent returns once the daemon says
// "ready" on an inherited pipe), serving a mounted repository with a control socket and a run-dir record
// until the kernel connection ends, and stopped by `gridbox umount`. Reads no flags or environment: the
// CLI builds the daemon's command line and opens the client.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { GridboxError, q } from '../errors.js';
import type { Client } from '../client/index.js';
import { mountRepository, type MountedRepository } from '../vfs/mount-repository.js';
import { serveControl, type MountStatus } from './control.js';
import { recordPaths, removeMountRecord, writeMountRecord } from './run-dir.js';

const READY_TIMEOUT_MS = 120_000;

export interface DaemonLaunch {
  /** Program and arguments of the daemon (a `gridbox mount ... --foreground --ready-fd 3`). */
  command: string;
  args: string[];
  mountpoint: string;
  /** The daemon's stdout and stderr go here. */
  log: string;
  timeoutMs?: number;
}

/** What the daemon reports once its mount answers. */
export interface DaemonReady {
  revision: number;
  pid: number;
}

function tail(file: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    return lines.slice(-5).join(' | ');
  } catch {
    return '(no log)';
  }
}

/** Spawns the daemon detached (cwd "/", its fd 3 a pipe) and waits for its "ready" line. */
export async function startDaemon(o: DaemonLaunch): Promise<DaemonReady> {
  const timeoutMs = o.timeoutMs ?? READY_TIMEOUT_MS;
  const logFd = openSync(o.log, 'a');
  const child = spawn(o.command, o.args, { detached: true, cwd: '/', stdio: ['ignore', logFd, logFd, 'pipe'] });
  closeSync(logFd);
  const mnt = o.mountpoint;
  const line = await new Promise<string>((ok, fail) => {
    let buf = '';
    const timer = setTimeout(() => fail(new GridboxError('MOUNT_FAILED', `Mount daemon for ${q(mnt)} did not become ready within ${timeoutMs / 1000} s; log: ${q(o.log)}`)), timeoutMs);
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) { clearTimeout(timer); ok(buf.slice(0, nl)); }
    });
    pipe.on('error', () => undefined);
    child.on('error', (e) => { clearTimeout(timer); fail(new GridboxError('MOUNT_FAILED', `Cannot start the mount daemon (${o.command})`, { cause: e })); });
    child.on('exit', (c, sig) => {
      clearTimeout(timer);
      fail(new GridboxError('MOUNT_FAILED', `Mount daemon for ${q(mnt)} exited ${c ?? sig} before the mount was ready: ${tail(o.log)}`, { path: mnt }));
    });
  });
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
  child.removeAllListeners('exit');
  child.unref();
  return JSON.parse(line.replace(/^ready /, '')) as DaemonReady;
}

export interface ServeOptions {
  fqrn: string;
  mountpoint: string;
  runDir: string;
  /** An open client; the daemon closes it when the mount ends. */
  client: Client;
  /** This process is root of the user+mount namespace the mount lives in. */
  userns: boolean;
  loop?: 'auto' | 'epoll' | 'threadpool';
  /** fd to write the ready line to (then closed); without one, `announce` is called. */
  readyFd?: number;
  log: (line: string) => void;
  announce?: (line: string) => void;
  /** Mounts with this instead of mountRepository (tests, other views). */
  mount?: typeof mountRepository;
}

/** Mounts and serves until the kernel connection ends (umount, SIGTERM/SIGINT, control "unmount"). */
export async function serveMount(o: ServeOptions): Promise<void> {
  const { fqrn, mountpoint: mnt, client, log } = o;
  const paths = recordPaths(o.runDir, mnt);
  await mkdir(o.runDir, { recursive: true, mode: 0o700 });
  const started = Date.now();
  let mounted: MountedRepository;
  try {
    mounted = await (o.mount ?? mountRepository)({
      client, mountpoint: mnt, loop: o.loop, log,
      extraXattrs: () => ({ 'user.pid': String(process.pid), 'user.uptime': String(Math.floor((Date.now() - started) / 60_000)) }),
    });
  } catch (e) {
    await client.close();
    throw e;
  }
  const status = (): MountStatus => {
    const s = client.stats();
    const f = mounted.fsStats();
    return {
      ...s, fqrn, mountpoint: mnt, pid: process.pid, userns: o.userns, openFiles: f.openFiles,
      nodes: f.nodes, ioErrors: f.ioErrors, revisionSwitches: f.revisionSwitches, uptimeS: Math.floor((Date.now() - started) / 1000),
      requests: Object.fromEntries(mounted.session.counts),
    };
  };
  const stop = async (): Promise<void> => {
    try {
      await mounted.unmount();
    } catch (e) {
      log(`unmount of ${q(mnt)} failed: ${(e as Error).message}`);
    }
  };
  const onSignal = (): void => { void stop(); };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  let server;
  try {
    server = await serveControl(paths.socket, { status, unmount: stop });
    await writeMountRecord(o.runDir, { fqrn, mountpoint: mnt, pid: process.pid, userns: o.userns, socket: paths.socket, log: paths.log });
  } catch (e) {
    // Without a control socket nobody could find this mount again: take it down.
    await stop();
    await client.close();
    throw e;
  }
  log(`mounted ${fqrn} revision ${client.revision()} at ${mnt} (${mounted.session.loop} loop)`);
  if (o.readyFd !== undefined) {
    try {
      writeSync(o.readyFd, `ready ${JSON.stringify({ revision: client.revision(), pid: process.pid } satisfies DaemonReady)}\n`);
      closeSync(o.readyFd);
    } catch (e) {
      log(`cannot signal readiness on fd ${o.readyFd}: ${(e as Error).message}`);
    }
  } else {
    o.announce?.(`mounted ${fqrn} revision ${client.revision()} at ${mnt}; SIGINT or gridbox umount to stop`);
  }
  await mounted.closed;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  server.close();
  await removeMountRecord(o.runDir, mnt);
  await client.close();
  log(`unmounted ${mnt}`);
}
