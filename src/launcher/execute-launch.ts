// The thin executor: checks that user namespaces are usable, spawns /usr/bin/bwrap with a LaunchSpec, feeds the
// small data files through pipes, forwards signals to the payload and maps the exit status (runtime-contract.md
// §3.7): the payload's code, 128+N for signal N; a setup failure (bwrap never started the command) is thrown.
// bwrap is started with the native addon's posix_spawn when it is built (plumbing/native-addon.ts), else with
// child_process, which is then loaded only for this: its module graph (net, streams) and its fork of the whole
// Node process were ~14 ms of a ~120 ms `apptainer exec`, which HTCondor and GlideinWMS call several times a job.
import { closeSync, mkdirSync, read, readFileSync, writeSync, write } from 'node:fs';
import { GridboxError, q } from '../errors.js';
import { errnoName, loadNativeAddon, type NativeAddon } from '../plumbing/native-addon.js';
import { FIRST_DATA_FD, STATUS_FD } from './launch-spec.js';
import type { LaunchSpec } from './launch-spec.js';

export const BWRAP_PATH = '/usr/bin/bwrap';
const FORWARDED: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGALRM', 'SIGCONT', 'SIGWINCH'];
const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGUSR1: 10, SIGUSR2: 12, SIGALRM: 14, SIGTERM: 15, SIGCONT: 18, SIGWINCH: 28, SIGABRT: 6, SIGSEGV: 11, SIGPIPE: 13 };

function readNumber(path: string): number | undefined {
  try { return Number(readFileSync(path, 'utf8').trim()); } catch { return undefined; }
}

/** Throws LAUNCH_NO_USERNS when the kernel forbids unprivileged user namespaces (fuse-and-sandbox-notes.md §3). */
export function checkUserNamespaces(procSys = '/proc/sys', uid = process.getuid?.() ?? 0): void {
  const max = readNumber(`${procSys}/user/max_user_namespaces`);
  if (max === 0) throw new GridboxError('LAUNCH_NO_USERNS', 'Cannot create a user namespace: user.max_user_namespaces is 0 (sysctl user.max_user_namespaces=15000 enables them)');
  // Debian/Ubuntu kernels gate unprivileged use; the file is absent on mainline kernels (as on this machine kind).
  const clone = readNumber(`${procSys}/kernel/unprivileged_userns_clone`);
  if (clone === 0 && uid !== 0) throw new GridboxError('LAUNCH_NO_USERNS', 'Cannot create a user namespace: kernel.unprivileged_userns_clone is 0 (sysctl kernel.unprivileged_userns_clone=1 enables them)');
}

/** The payload: bwrap's child itself, or with a PID namespace the children of bwrap's init. */
function payloadPids(childPid: number, pidNamespace: boolean): number[] {
  if (!pidNamespace) return [childPid];
  try {
    const kids = readFileSync(`/proc/${childPid}/task/${childPid}/children`, 'utf8').trim().split(/\s+/).filter((s) => s !== '').map(Number);
    return kids.length > 0 ? kids : [childPid];
  } catch { return [childPid]; }
}

/** Observers of a launch; `onStarted` fires once, when bwrap reports the sandboxed process (accounting's first instruction). */
export interface LaunchHooks { onStarted?(): void }

/** Runs the spec and resolves with the exit status; setup failures reject with a GridboxError. */
export async function executeLaunch(spec: LaunchSpec, hooks: LaunchHooks = {}, o: { spawner?: 'native' | 'child_process' } = {}): Promise<number> {
  checkUserNamespaces();
  for (const dir of spec.mkdirs) {
    try { mkdirSync(dir, { recursive: true, mode: 0o755 }); } catch (cause) { throw new GridboxError('LAUNCH_FAILED', `Cannot create work directory ${q(dir)}`, { cause, path: dir }); }
  }
  const addon = o.spawner === 'child_process' ? undefined : loadNativeAddon();
  if (addon?.spawnPiped !== undefined && addon.waitPid !== undefined) return launchNative(spec, hooks, addon as NativeSpawn);
  if (o.spawner === 'native') throw new GridboxError('LAUNCH_FAILED', 'the native addon (gridbox-fuse-ioctl) with spawnPiped is not built');
  return launchChildProcess(spec, hooks);
}

/** What both spawners share: bwrap's status pipe read, signals forwarded to the payload, the outcome settled once. */
interface Monitor {
  onStatus(chunk: Buffer): void;
  /** bwrap is gone: its exit status (or signal), unless the status pipe already gave the payload's code. */
  onBwrapExit(code: number | null, signal: number | null): void;
  settle(outcome: number | Error): void;
}

function monitor(spec: LaunchSpec, hooks: LaunchHooks, bwrapPid: () => number | undefined, resolve: (code: number) => void, reject: (e: Error) => void): Monitor {
  let status = '';
  let childPid: number | undefined;
  let exitCode: number | undefined;
  const forward = (sig: NodeJS.Signals): void => {
    if (sig === 'SIGINT' && process.stdin.isTTY) return; // the terminal already signals the whole group
    const bwrap = bwrapPid();
    const targets = childPid === undefined ? (bwrap === undefined ? [] : [bwrap]) : payloadPids(childPid, spec.pidNamespace);
    for (const pid of targets) { try { process.kill(pid, sig); } catch { /* already gone */ } }
  };
  for (const sig of FORWARDED) process.on(sig, forward);
  let settled = false;
  const settle = (outcome: number | Error): void => {
    if (settled) return;
    settled = true;
    for (const sig of FORWARDED) process.off(sig, forward);
    if (typeof outcome === 'number') resolve(outcome);
    else reject(outcome);
  };
  return {
    settle,
    onStatus(chunk) {
      status += chunk.toString('utf8');
      const hadPid = childPid !== undefined;
      for (const m of status.matchAll(/"child-pid":\s*(\d+)/g)) childPid = Number(m[1]);
      if (!hadPid && childPid !== undefined) hooks.onStarted?.();
      // The closing brace: a number cut between two reads is not taken for a shorter one.
      for (const m of status.matchAll(/"exit-code":\s*(\d+)\s*}/g)) exitCode = Number(m[1]);
      // bwrap writes the exit code once the sandbox is empty (with a PID namespace, once its init is gone) and has
      // nothing left to do but exit itself: the caller gets the status now, not after bwrap's exit and the pipes'
      // close reach us (milliseconds per start, issue 11). bwrap exits with this very code.
      if (exitCode !== undefined) settle(exitCode);
    },
    onBwrapExit(code, signal) {
      if (exitCode !== undefined) settle(exitCode);
      else if (signal !== null) settle(128 + signal);
      else settle(new GridboxError('LAUNCH_FAILED', `container setup failed: bwrap exited with status ${code} before starting the command`));
    },
  };
}

type NativeSpawn = Required<Pick<NativeAddon, 'spawnPiped' | 'waitPid'>>;

function launchNative(spec: LaunchSpec, hooks: LaunchHooks, addon: NativeSpawn): Promise<number> {
  const env = Object.entries(spec.env).map(([k, v]) => `${k}=${v}`);
  const r = addon.spawnPiped(BWRAP_PATH, [BWRAP_PATH, ...spec.argv], env, STATUS_FD, spec.files.length);
  if (r[0] < 0) {
    const code = errnoName(-r[0]) ?? `errno ${-r[0]}`;
    const cause = Object.assign(new Error(`${code}: exec ${BWRAP_PATH}`), { code });
    return Promise.reject(new GridboxError('LAUNCH_NO_BWRAP', `Cannot start ${BWRAP_PATH}`, { cause, path: BWRAP_PATH }));
  }
  const [pid, statusFd] = r;
  const n = spec.files.length;
  return new Promise<number>((resolve, reject) => {
    const m = monitor(spec, hooks, () => pid, resolve, reject);
    spec.files.forEach((f, i) => {
      const fd = r[2 + i];
      const data = Buffer.from(f.content);
      // What fits the pipe is written at once; a larger file through the threadpool, where a write that waits for
      // bwrap to read blocks a worker thread and not the loop that reads bwrap's status.
      if (data.length <= r[2 + n + i]) {
        try { writeSync(fd, data); } catch { /* bwrap failed before reading; its own error is reported */ }
        closeSync(fd);
        return;
      }
      const rest = (at: number): void => {
        if (at >= data.length) { closeSync(fd); return; }
        write(fd, data, at, data.length - at, null, (e, wrote) => { if (e) closeSync(fd); else rest(at + wrote); });
      };
      rest(0);
    });
    // The status pipe, read in the threadpool until bwrap closes it (exits); then bwrap is reaped.
    const buf = Buffer.allocUnsafe(4096);
    const next = (): void => {
      read(statusFd, buf, 0, buf.length, null, (e, got) => {
        if (!e && got > 0) { m.onStatus(Buffer.from(buf.subarray(0, got))); next(); return; }
        closeSync(statusFd);
        const [code, signal] = addon.waitPid(pid);
        m.onBwrapExit(code < 0 ? null : code, signal > 0 ? signal : null);
      });
    };
    next();
  });
}

async function launchChildProcess(spec: LaunchSpec, hooks: LaunchHooks): Promise<number> {
  const { spawn } = await import('node:child_process');
  const stdio: Array<'inherit' | 'pipe'> = ['inherit', 'inherit', 'inherit', 'pipe'];
  for (let i = 0; i < spec.files.length; i++) stdio.push('pipe');
  return new Promise<number>((resolve, reject) => {
    const child = spawn(BWRAP_PATH, spec.argv, { env: spec.env, stdio });
    const m = monitor(spec, hooks, () => child.pid, resolve, reject);
    (child.stdio[STATUS_FD] as NodeJS.ReadableStream).on('data', (c: Buffer) => m.onStatus(c));
    spec.files.forEach((f, i) => {
      const w = child.stdio[FIRST_DATA_FD + i] as NodeJS.WritableStream;
      w.on('error', () => { /* bwrap failed before reading; its own error is reported */ });
      w.end(f.content);
    });
    child.on('error', (cause) => m.settle(new GridboxError('LAUNCH_NO_BWRAP', `Cannot start ${BWRAP_PATH}`, { cause, path: BWRAP_PATH })));
    child.on('close', (code, signal) => m.onBwrapExit(code, signal === null ? null : (SIGNAL_NUMBERS[signal] ?? 0)));
  });
}
