// Starts a mount daemon detached (cwd "/", stdout/stderr to its log, fd 3 a pipe) and waits for the
// "ready" line it writes once its mount answers. Light on purpose: `gridbox mount`'s parent loads only this.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { GridboxError, q } from '../errors.js';

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

