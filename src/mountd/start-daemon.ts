// Starts a mount daemon detached (cwd "/", stdout/stderr to its log, fd 3 a pipe) and waits for the report
// (daemon-report.ts) it writes on fd 3 once its mount answers or fails. Light on purpose: `gridbox mount`'s
// node front loads only this.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { GridboxError, q } from '../errors.js';
import { extraCaMovedAside } from '../plumbing/extra-ca.js';
import { parseReport, type DaemonReady } from './daemon-report.js';

export type { DaemonReady };

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

function tail(file: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    return lines.slice(-5).join(' | ');
  } catch {
    return '(no log)';
  }
}

/**
 * Spawns the daemon detached and waits until it closes fd 3: resolves with its "ready" report (the lines
 * that follow it are the daemon's to print), throws the error of a "fail" report, or names the log when
 * the daemon stopped without a report.
 */
export async function startDaemon(o: DaemonLaunch): Promise<DaemonReady & { lines: string[] }> {
  const timeoutMs = o.timeoutMs ?? READY_TIMEOUT_MS;
  const logFd = openSync(o.log, 'a');
  // The daemon is one of our entry points: it loads NODE_EXTRA_CA_CERTS itself if it ever speaks TLS.
  const child = spawn(o.command, o.args, { detached: true, cwd: '/', env: extraCaMovedAside(process.env), stdio: ['ignore', logFd, logFd, 'pipe'] });
  closeSync(logFd);
  const mnt = o.mountpoint;
  const text = await new Promise<string>((ok, fail) => {
    let buf = '';
    const timer = setTimeout(() => fail(new GridboxError('MOUNT_FAILED', `Mount daemon for ${q(mnt)} did not become ready within ${timeoutMs / 1000} s; log: ${q(o.log)}`)), timeoutMs);
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => { buf += d; });
    // The daemon closes the pipe after its report, or by exiting: either way the report is whole here.
    pipe.on('end', () => { clearTimeout(timer); ok(buf); });
    pipe.on('error', () => undefined);
    child.on('error', (e) => { clearTimeout(timer); fail(new GridboxError('MOUNT_FAILED', `Cannot start the mount daemon (${o.command})`, { cause: e })); });
  });
  child.unref();
  const report = parseReport(text);
  if (report === undefined) {
    // Give the exit status a moment to arrive, for the message.
    const status = await new Promise<string>((ok) => {
      if (child.exitCode !== null || child.signalCode !== null) { ok(String(child.exitCode ?? child.signalCode)); return; }
      const t = setTimeout(() => ok('without a report'), 200);
      child.once('exit', (c, sig) => { clearTimeout(t); ok(String(c ?? sig)); });
    });
    throw new GridboxError('MOUNT_FAILED', `Mount daemon for ${q(mnt)} exited ${status} before the mount was ready: ${tail(o.log)}`, { path: mnt });
  }
  child.removeAllListeners('exit');
  if (!report.ok) throw report.error;
  return { ...report.ready, lines: report.lines };
}
