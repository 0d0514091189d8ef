// `gridbox mount <fqrn> <mountpoint>`: mounts a repository configured the CernVM-FS way (config files,
// --config, CVMFS_* environment, flags). A daemon by default: the parent returns once the mount answers.
// As root a normal mount; otherwise the daemon lives in its own user+mount namespace (enter it with
// `gridbox enter <mountpoint> -- CMD`). The daemon's plumbing is in mountd/.
import { spawn } from 'node:child_process';
import { closeSync, statSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GridboxError, q } from '../../errors.js';
import { isAlive } from '../../plumbing/process-identity.js';
import { absoluteClientFlags, addClientFlags, clientFlagArgs, openClientFromFlags, type ClientFlags } from '../client-options.js';
import { abandonFuseMount, clearStaleMount, fuseMountState, mountFuse, userNamespaceCommand } from '../../fuse/mount.js';
import { daemonStatus, type MountStatus } from '../../mountd/control.js';
import { startDaemon } from '../../mountd/start-daemon.js';
import { failReport } from '../../mountd/daemon-report.js';
import { writeOutputTo } from '../../mountd/daemon-output.js';
import { repositoryMountOptions } from '../../vfs/mount-options.js';
import { assertNotMountPoint } from '../../mountd/mount-holder.js';
import { readMountRecord, recordPaths, runDir as runDirOf } from '../../mountd/run-dir.js';
import { newCommand, parseCommand, say } from '../options.js';

export const summary = 'mount a repository with FUSE (daemon; --foreground to stay attached)';

/** Where mount records, control sockets and daemon logs live (GRIDBOX_RUN_DIR, XDG_RUNTIME_DIR/gridbox, /tmp/gridbox-<uid>). */
export function runDir(env: NodeJS.ProcessEnv = process.env): string {
  return runDirOf(env);
}

interface MountFlags extends ClientFlags {
  foreground?: boolean;
  userns?: boolean;
  loop?: 'auto' | 'epoll' | 'threadpool';
  readyFd?: string;
  runDir?: string;
  inUserns?: boolean;
  passthrough?: boolean;
  fastRead?: boolean;
  metricsListen?: string;
}

function mainScript(): string {
  return fileURLToPath(new URL('../main.js', import.meta.url));
}

/** How long a daemon may take to mount before it gives up and says so. */
const READY_TIMEOUT_MS = 120_000;

// Not a literal: the daemon's bundle contains this file, and esbuild would otherwise bundle the bundler too.
const MOUNTD_BUNDLE_MODULE = new URL('./mountd-bundle.js', import.meta.url).href;
type MountdBundles = typeof import('./mountd-bundle.js');

export async function run(argv: string[]): Promise<number> {
  let code = 0;
  const cmd = addClientFlags(newCommand('gridbox mount', summary))
    .argument('<fqrn>').argument('<mountpoint>')
    .option('--foreground', 'serve in this process until unmounted (SIGTERM/SIGINT unmount)')
    .option('--userns', 'mount inside a new user+mount namespace even as root (the default for non-root users)')
    .option('--metrics-listen <host:port>', 'also serve Prometheus metrics on http://HOST:PORT/metrics (the control socket answers "metrics" anyway)')
    .option('--loop <kind>', 'FUSE request loop: auto, epoll or threadpool')
    .option('--passthrough', 'open cached whole files with FUSE passthrough (every open then asks the daemon; reads do not)')
    .option('--no-passthrough', 'no FUSE passthrough: the kernel opens files without asking the daemon (the default)')
    .option('--no-fast-read', 'answer every READ in JavaScript, also those the addon answers from cache files (for comparisons)')
    .option('--ready-fd <n>', 'internal: a daemon started by a front: report ready or the failure on this fd, log to the run dir')
    .option('--run-dir <dir>', 'internal: directory of mount records (default GRIDBOX_RUN_DIR)')
    .option('--in-userns', 'internal: this process is the namespace\'s root')
    .action(async (fqrn: string, mountpoint: string, o: MountFlags) => {
      code = o.foreground ? await serve(fqrn, resolve(mountpoint), o) : await daemonize(fqrn, resolve(mountpoint), o);
    });
  await parseCommand(cmd, argv);
  return code;
}

/**
 * The node front: starts the daemon (in a user namespace when not root) and prints what it reports once its
 * mount answers or fails. bin/gridbox's shell front does the same without this node start (the daemon is
 * the one doing the checks); this path serves main.js, mount.gridbox, the flags the shell leaves to it and a
 * missing bundle.
 */
async function daemonize(fqrn: string, mnt: string, o: MountFlags): Promise<number> {
  const dir = o.runDir ? resolve(o.runDir) : runDir();
  const userns = Boolean(o.userns) || process.geteuid?.() !== 0;
  const args = ['mount', fqrn, mnt, '--foreground', '--ready-fd', '3', '--run-dir', dir];
  // The daemon runs from "/", so every path option is made absolute.
  args.push(...clientFlagArgs(o));
  if (o.metricsListen !== undefined) args.push('--metrics-listen', o.metricsListen);
  if (o.loop !== undefined) args.push('--loop', o.loop);
  if (o.passthrough === true) args.push('--passthrough');
  if (o.fastRead === false) args.push('--no-fast-read');
  if (userns) args.push('--in-userns');
  // The daemon starts from its CommonJS bundle when there is one (a stale bundle runs main.js itself, and the
  // daemon then builds a new one once it is ready); otherwise from main.js.
  const bundles = (await import(MOUNTD_BUNDLE_MODULE)) as MountdBundles;
  const script = bundles.existingMountdBundle(dir) ?? mainScript();
  const { command, args: full } = userns
    ? userNamespaceCommand(script, args)
    : { command: process.execPath, args: [...process.execArgv, script, ...args] };
  const { log } = recordPaths(dir, mnt);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await startDaemon({ command, args: full, mountpoint: mnt, log });
  for (const line of info.lines) say(line);
  return 0;
}

/**
 * What a front checked before the daemon existed, now done by the daemon itself so that a front needs no
 * node: the mountpoint is a directory, no live daemon's record names it, a stale FUSE mount left there by a
 * killed daemon is cleared (outside a user namespace), and nothing else is mounted on it.
 */
async function assertMountable(mnt: string, dir: string, inUserns: boolean): Promise<void> {
  let st;
  try { st = statSync(mnt); } catch (e) { throw new GridboxError('MOUNT_FAILED', `Cannot mount at ${q(mnt)}: no such directory`, { cause: e, path: mnt }); }
  if (!st.isDirectory()) throw new GridboxError('MOUNT_FAILED', `Cannot mount at ${q(mnt)}: not a directory`, { path: mnt });
  const rec = await readMountRecord(dir, mnt);
  if (rec && rec.pid !== process.pid && isAlive(rec.pid)) throw new GridboxError('MOUNT_POINT_BUSY', `${q(mnt)} is already mounted by pid ${rec.pid} (${rec.fqrn})`, { path: mnt });
  if (!inUserns && process.geteuid?.() === 0 && (await fuseMountState(mnt)) === 'stale') await clearStaleMount(mnt);
  await assertNotMountPoint(mnt);
}

/**
 * Mounts and serves in this process until the kernel connection ends. With --ready-fd this is a daemon a
 * front started: it logs to its own file, reports ready or the failure on that fd, and runs from "/".
 */
async function serve(fqrn: string, mnt: string, o: MountFlags): Promise<number> {
  const dir = o.runDir ? resolve(o.runDir) : runDir();
  const readyFd = o.readyFd === undefined ? undefined : Number(o.readyFd);
  if (readyFd === undefined) return serveHere(fqrn, mnt, o, dir);
  const { log } = recordPaths(dir, mnt);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  writeOutputTo(log);
  const flags: MountFlags = { ...o, ...absoluteClientFlags(o) };
  process.chdir('/');
  let reported = false;
  const report = (text: string): void => {
    if (reported) return;
    reported = true;
    try { writeSync(readyFd, text); closeSync(readyFd); } catch { /* the front is gone: nobody to tell */ }
  };
  const timer = setTimeout(() => {
    report(failReport(new GridboxError('MOUNT_FAILED', `Mount daemon for ${q(mnt)} did not become ready within ${READY_TIMEOUT_MS / 1000} s; log: ${q(log)}`)));
    process.exit(1);
  }, READY_TIMEOUT_MS);
  const readyLines = (revision: number): string[] => {
    clearTimeout(timer);
    reported = true;
    setImmediate(() => rebuildBundleUnlessRunningFromOne(dir));
    const lines = [`mounted ${fqrn} revision ${revision} at ${mnt} (daemon pid ${process.pid}, log ${log})`];
    if (o.inUserns) {
      lines.push('the mount lives in a user+mount namespace; run commands there with:',
        `  gridbox enter ${mnt} -- COMMAND...`, `  nsenter --target ${process.pid} --user --mount --preserve-credentials -- COMMAND...`);
    }
    return lines;
  };
  try {
    return await serveHere(fqrn, mnt, flags, dir, readyFd, readyLines);
  } catch (e) {
    clearTimeout(timer);
    report(failReport(e));
    throw e;
  }
}

async function serveHere(fqrn: string, mnt: string, o: MountFlags, dir: string, readyFd?: number, readyLines?: (revision: number) => string[]): Promise<number> {
  const log = (line: string): void => { process.stderr.write(`${new Date().toISOString()} ${line}\n`); };
  // The FUSE mount is made while the client loads its modules, fetches and verifies the manifest and root
  // catalog: the kernel queues its INIT until the session starts, so nothing waits on an unopened client.
  // A refused mountpoint is refused before any network or key work (a few ms of stat and mountinfo).
  const checked = assertMountable(mnt, dir, Boolean(o.inUserns));
  const early = checked.then(() => mountFuse(mnt, repositoryMountOptions(fqrn)));
  early.catch(() => undefined);
  const opening = checked.then(() => openClientFromFlags(fqrn, o, log));
  opening.catch(() => undefined);
  // The daemon's own modules are loaded only here: the parent that starts it needs none of them.
  const [{ serveMount }, { mountRepository }] = await Promise.all([import('../../mountd/serve-mount.js'), import('../../vfs/mount-repository.js')]);
  let client;
  try {
    client = await opening;
  } catch (e) {
    await early.then((m) => abandonFuseMount(m), () => undefined);
    throw e;
  }
  let fuse;
  try {
    fuse = await early;
  } catch (e) {
    await client.close();
    throw e;
  }
  await serveMount({
    fqrn, mountpoint: mnt, runDir: dir, client, userns: Boolean(o.inUserns), loop: o.loop, log, metricsListen: o.metricsListen,
    readyFd, readyLines, announce: say,
    mount: (opts) => mountRepository({ ...opts, fuse, passthrough: o.passthrough === true, fastRead: o.fastRead !== false, profileDir: join(dir, 'start-profiles') }),
  });
  return 0;
}

/**
 * A daemon that is not running from a fresh bundle (none yet, or the compiled sources changed since) has one
 * built for the next mount, in a detached process: esbuild and the bundle's smoke test must not hold up this
 * daemon's FUSE thread, and the command that started it has returned already.
 */
function rebuildBundleUnlessRunningFromOne(dir: string): void {
  if ((globalThis as { __gridboxBundle?: string }).__gridboxBundle !== undefined || process.env.GRIDBOX_MOUNTD_BUNDLE === '0') return;
  const builder = fileURLToPath(new URL('../build-mountd-bundle.js', import.meta.url));
  try {
    spawn(process.execPath, [builder, dir], { detached: true, cwd: '/', stdio: 'ignore' }).unref();
  } catch { /* no bundle: the next daemon starts from main.js again */ }
}

/** The daemon's status, for status and tests. */
export async function mountStatus(mountpoint: string, dir = runDir()): Promise<MountStatus> {
  const mnt = resolve(mountpoint);
  return daemonStatus(dir, await readMountRecord(dir, mnt), mnt);
}
