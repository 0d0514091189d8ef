// `gridbox mount <fqrn> <mountpoint>`: mounts a repository configured the CernVM-FS way (config files,
// --config, CVMFS_* environment, flags). A daemon by default: the parent returns once the mount answers.
// As root a normal mount; otherwise the daemon lives in its own user+mount namespace (enter it with
// `gridbox enter <mountpoint> -- CMD`). Also exports the run-directory helpers umount/status/enter share.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GridboxError, q } from '../../errors.js';
import { addClientFlags, loadClientSettings, loadMasterKeys, openClientFromFlags, type ClientFlags } from '../client-options.js';
import { clearStaleMount, fuseMountState, userNamespaceCommand } from '../../fuse/mount.js';
import { mountRepository } from '../../vfs/mount-repository.js';
import {
  callControl, processAlive, readMountRecord, recordPaths, removeMountRecord, serveControl, writeMountRecord, type MountStatus,
} from '../../vfs/mount-control.js';
import { newCommand, parseCommand, say } from '../options.js';

export const summary = 'mount a repository with FUSE (daemon; --foreground to stay attached)';

const READY_TIMEOUT_MS = 120_000;

/** Where mount records, control sockets and daemon logs live: GRIDBOX_RUN_DIR, else $XDG_RUNTIME_DIR/gridbox, else /tmp/gridbox-<uid>. */
export function runDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.GRIDBOX_RUN_DIR) return resolve(env.GRIDBOX_RUN_DIR);
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'gridbox');
  return join(tmpdir(), `gridbox-${process.getuid?.() ?? 0}`);
}

interface MountFlags extends ClientFlags {
  foreground?: boolean;
  userns?: boolean;
  loop?: 'auto' | 'epoll' | 'threadpool';
  readyFd?: string;
  runDir?: string;
  inUserns?: boolean;
}

function mainScript(): string {
  return fileURLToPath(new URL('../main.js', import.meta.url));
}

export async function run(argv: string[]): Promise<number> {
  let code = 0;
  const cmd = addClientFlags(newCommand('gridbox mount', summary))
    .argument('<fqrn>').argument('<mountpoint>')
    .option('--foreground', 'serve in this process until unmounted (SIGTERM/SIGINT unmount)')
    .option('--userns', 'mount inside a new user+mount namespace even as root (the default for non-root users)')
    .option('--loop <kind>', 'FUSE request loop: auto, epoll or threadpool')
    .option('--ready-fd <n>', 'internal: write "ready" to this fd once mounted')
    .option('--run-dir <dir>', 'internal: directory of mount records (default GRIDBOX_RUN_DIR)')
    .option('--in-userns', 'internal: this process is the namespace\'s root')
    .action(async (fqrn: string, mountpoint: string, o: MountFlags) => {
      code = o.foreground ? await serve(fqrn, resolve(mountpoint), o) : await daemonize(fqrn, resolve(mountpoint), o);
    });
  await parseCommand(cmd, argv);
  return code;
}

/** Starts the daemon (in a user namespace when not root) and waits until it says the mount answers. */
async function daemonize(fqrn: string, mnt: string, o: MountFlags): Promise<number> {
  // Configuration and key errors are reported here, not in a daemon log.
  const settings = await loadClientSettings(fqrn, o);
  await loadMasterKeys(settings);
  let st;
  try { st = statSync(mnt); } catch (e) { throw new GridboxError('MOUNT_FAILED', `Cannot mount at ${q(mnt)}: no such directory`, { cause: e, path: mnt }); }
  if (!st.isDirectory()) throw new GridboxError('MOUNT_FAILED', `Cannot mount at ${q(mnt)}: not a directory`, { path: mnt });
  const dir = o.runDir ? resolve(o.runDir) : runDir();
  const rec = await readMountRecord(dir, mnt);
  if (rec && processAlive(rec.pid)) throw new GridboxError('MOUNT_FAILED', `${q(mnt)} is already mounted by pid ${rec.pid} (${rec.fqrn})`, { path: mnt });
  const userns = Boolean(o.userns) || process.geteuid?.() !== 0;
  if (!userns && (await fuseMountState(mnt)) === 'stale') await clearStaleMount(mnt);

  const args = ['mount', fqrn, mnt, '--foreground', '--ready-fd', '3', '--run-dir', dir];
  // The daemon runs from "/", so every path option is made absolute.
  if (o.server !== undefined) args.push('--server', o.server);
  if (o.proxy !== undefined) args.push('--proxy', o.proxy);
  if (o.config !== undefined) args.push('--config', resolve(o.config));
  if (o.cache !== undefined) args.push('--cache', resolve(o.cache));
  if (o.keys !== undefined) args.push('--keys', resolve(o.keys));
  if (o.key !== undefined) args.push('--key', o.key.split(':').map((k) => resolve(k)).join(':'));
  if (o.loop !== undefined) args.push('--loop', o.loop);
  if (userns) args.push('--in-userns');
  const script = mainScript();
  const { command, args: full } = userns
    ? userNamespaceCommand(script, args)
    : { command: process.execPath, args: [script, ...args] };
  const { log } = recordPaths(dir, mnt);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const logFd = openSync(log, 'a');
  const child = spawn(command, full, { detached: true, cwd: '/', stdio: ['ignore', logFd, logFd, 'pipe'] });
  closeSync(logFd);
  const readyLine = await new Promise<string>((ok, fail) => {
    let buf = '';
    const timer = setTimeout(() => fail(new GridboxError('MOUNT_FAILED', `Mount daemon for ${q(mnt)} did not become ready within ${READY_TIMEOUT_MS / 1000} s; log: ${q(log)}`)), READY_TIMEOUT_MS);
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) { clearTimeout(timer); ok(buf.slice(0, nl)); }
    });
    pipe.on('error', () => undefined);
    child.on('error', (e) => { clearTimeout(timer); fail(new GridboxError('MOUNT_FAILED', `Cannot start the mount daemon (${command})`, { cause: e })); });
    child.on('exit', (c, sig) => {
      clearTimeout(timer);
      fail(new GridboxError('MOUNT_FAILED', `Mount daemon for ${q(mnt)} exited ${c ?? sig} before the mount was ready: ${tail(log)}`, { path: mnt }));
    });
  });
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
  child.removeAllListeners('exit');
  child.unref();
  const info = JSON.parse(readyLine.replace(/^ready /, '')) as { revision: number; pid: number };
  say(`mounted ${fqrn} revision ${info.revision} at ${mnt} (daemon pid ${info.pid}, log ${log})`);
  if (userns) {
    say(`the mount lives in a user+mount namespace; run commands there with:`);
    say(`  gridbox enter ${mnt} -- COMMAND...`);
    say(`  nsenter --target ${info.pid} --user --mount --preserve-credentials -- COMMAND...`);
  }
  return 0;
}

function tail(file: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    return lines.slice(-5).join(' | ');
  } catch {
    return '(no log)';
  }
}

/** Mounts and serves in this process until the kernel connection ends. */
async function serve(fqrn: string, mnt: string, o: MountFlags): Promise<number> {
  const log = (line: string): void => { process.stderr.write(`${new Date().toISOString()} ${line}\n`); };
  const dir = o.runDir ? resolve(o.runDir) : runDir();
  const paths = recordPaths(dir, mnt);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const client = await openClientFromFlags(fqrn, o, log);
  const started = Date.now();
  let m;
  try {
    m = await mountRepository({
      client, mountpoint: mnt, loop: o.loop, log,
      extraXattrs: () => ({ 'user.pid': String(process.pid), 'user.uptime': String(Math.floor((Date.now() - started) / 60_000)) }),
    });
  } catch (e) {
    await client.close();
    throw e;
  }
  const mounted = m;
  const userns = Boolean(o.inUserns);
  const status = (): MountStatus => {
    const s = client.stats();
    const f = mounted.fsStats();
    return {
      fqrn, mountpoint: mnt, pid: process.pid, userns, revision: s.revision, rootHash: s.rootHash, offline: s.offline,
      host: s.host, proxy: s.proxy, cacheBytes: s.cacheBytes, cacheLimit: s.cacheLimit, cacheObjects: s.cacheObjects,
      evictions: s.evictions, hits: s.hits, misses: s.misses, bytesOnWire: s.bytesOnWire, bytesInflated: s.bytesInflated, openFiles: f.openFiles,
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
    await writeMountRecord(dir, { fqrn, mountpoint: mnt, pid: process.pid, userns, socket: paths.socket, log: paths.log });
  } catch (e) {
    // Without a control socket nobody could find this mount again: take it down.
    await stop();
    await client.close();
    throw e;
  }
  log(`mounted ${fqrn} revision ${client.revision()} at ${mnt} (${mounted.session.loop} loop)`);
  if (o.readyFd !== undefined) {
    const fd = Number(o.readyFd);
    try {
      writeSync(fd, `ready ${JSON.stringify({ revision: client.revision(), pid: process.pid })}\n`);
      closeSync(fd);
    } catch (e) {
      log(`cannot signal readiness on fd ${fd}: ${(e as Error).message}`);
    }
  } else {
    say(`mounted ${fqrn} revision ${client.revision()} at ${mnt}; SIGINT or gridbox umount to stop`);
  }
  await mounted.closed;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  server.close();
  await client.close();
  await removeMountRecord(dir, mnt);
  log(`unmounted ${mnt}`);
  return 0;
}

/** The daemon's status, for status and tests. */
export async function mountStatus(mnt: string, dir = runDir()): Promise<MountStatus> {
  const rec = await readMountRecord(dir, mnt);
  if (rec === undefined || !processAlive(rec.pid)) throw new GridboxError('NOT_FOUND', `No gridbox mount daemon for ${q(resolve(mnt))}`, { path: mnt });
  const r = await callControl(rec.socket, 'status');
  if (!r.ok || r.status === undefined) throw new GridboxError('MOUNT_FAILED', `Mount daemon of ${q(mnt)} refused status: ${r.error ?? ''}`);
  return r.status;
}
