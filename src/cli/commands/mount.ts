// `gridbox mount <fqrn> <mountpoint>`: mounts a repository configured the CernVM-FS way (config files,
// --config, CVMFS_* environment, flags). A daemon by default: the parent returns once the mount answers.
// As root a normal mount; otherwise the daemon lives in its own user+mount namespace (enter it with
// `gridbox enter <mountpoint> -- CMD`). The daemon's plumbing is in mountd/.
import { statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GridboxError, q } from '../../errors.js';
import { isAlive } from '../../plumbing/process-identity.js';
import { addClientFlags, clientFlagArgs, loadClientSettings, loadMasterKeys, openClientFromFlags, type ClientFlags } from '../client-options.js';
import { abandonFuseMount, clearStaleMount, fuseMountState, mountFuse, userNamespaceCommand } from '../../fuse/mount.js';
import { daemonStatus, type MountStatus } from '../../mountd/control.js';
import { startDaemon } from '../../mountd/start-daemon.js';
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
  metricsListen?: string;
}

function mainScript(): string {
  return fileURLToPath(new URL('../main.js', import.meta.url));
}

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
  let st;
  try { st = statSync(mnt); } catch (e) { throw new GridboxError('MOUNT_FAILED', `Cannot mount at ${q(mnt)}: no such directory`, { cause: e, path: mnt }); }
  if (!st.isDirectory()) throw new GridboxError('MOUNT_FAILED', `Cannot mount at ${q(mnt)}: not a directory`, { path: mnt });
  const dir = o.runDir ? resolve(o.runDir) : runDir();
  const rec = await readMountRecord(dir, mnt);
  if (rec && isAlive(rec.pid)) throw new GridboxError('MOUNT_POINT_BUSY', `${q(mnt)} is already mounted by pid ${rec.pid} (${rec.fqrn})`, { path: mnt });
  const userns = Boolean(o.userns) || process.geteuid?.() !== 0;
  if (!userns && (await fuseMountState(mnt)) === 'stale') await clearStaleMount(mnt);
  await assertNotMountPoint(mnt);
  // Configuration and key errors are reported here, not in a daemon log. The daemon starts meanwhile (a node
  // start is most of a mount): it reads the same files and fails the same way, and then this error wins.
  const checks = loadClientSettings(fqrn, o).then((settings) => loadMasterKeys(settings));
  checks.catch(() => undefined);

  const args = ['mount', fqrn, mnt, '--foreground', '--ready-fd', '3', '--run-dir', dir];
  // The daemon runs from "/", so every path option is made absolute.
  args.push(...clientFlagArgs(o));
  if (o.metricsListen !== undefined) args.push('--metrics-listen', o.metricsListen);
  if (o.loop !== undefined) args.push('--loop', o.loop);
  if (o.passthrough === true) args.push('--passthrough');
  if (userns) args.push('--in-userns');
  // The daemon starts from its CommonJS bundle when there is one (a stale bundle runs main.js itself);
  // otherwise from main.js. Whether the bundle is up to date is checked while the daemon boots, and a missing
  // or stale one is built once this mount is ready: the mount already serves, only this command's return waits
  // on esbuild, once per install or upgrade.
  const bundles = (await import(MOUNTD_BUNDLE_MODULE)) as MountdBundles;
  const bundle = bundles.existingMountdBundle(dir);
  const script = bundle ?? mainScript();
  const { command, args: full } = userns
    ? userNamespaceCommand(script, args)
    : { command: process.execPath, args: [...process.execArgv, script, ...args] };
  const { log } = recordPaths(dir, mnt);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let info;
  let bundleFresh: Promise<boolean> | undefined;
  try {
    const starting = startDaemon({ command, args: full, mountpoint: mnt, log }); // spawned by now
    bundleFresh = new Promise<boolean>((ok) => { setImmediate(() => ok(bundle !== undefined && bundles.bundleIsFresh(bundle))); });
    info = await starting;
  } catch (e) {
    await checks;
    throw e;
  }
  try {
    await checks;
  } catch (e) {
    // The daemon accepted what this process refuses (cannot happen with the same files): take it down.
    process.kill(info.pid, 'SIGTERM');
    throw e;
  }
  if (!(await bundleFresh)) await bundles.buildMountdBundle(dir);
  say(`mounted ${fqrn} revision ${info.revision} at ${mnt} (daemon pid ${info.pid}, log ${log})`);
  if (userns) {
    say(`the mount lives in a user+mount namespace; run commands there with:`);
    say(`  gridbox enter ${mnt} -- COMMAND...`);
    say(`  nsenter --target ${info.pid} --user --mount --preserve-credentials -- COMMAND...`);
  }
  return 0;
}

/** Mounts and serves in this process until the kernel connection ends. */
async function serve(fqrn: string, mnt: string, o: MountFlags): Promise<number> {
  const log = (line: string): void => { process.stderr.write(`${new Date().toISOString()} ${line}\n`); };
  const dir = o.runDir ? resolve(o.runDir) : runDir();
  // The daemon's parent checked already; a foreground mount checks here (in the namespace it mounts in).
  if (o.readyFd === undefined) await assertNotMountPoint(mnt);
  // mount(8) runs while the client loads its modules, fetches and verifies the manifest and root catalog:
  // the kernel queues its INIT until the session starts, so nothing waits on an unopened client.
  const early = mountFuse(mnt, repositoryMountOptions(fqrn));
  early.catch(() => undefined);
  const opening = openClientFromFlags(fqrn, o, log);
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
    readyFd: o.readyFd === undefined ? undefined : Number(o.readyFd), announce: say,
    mount: (opts) => mountRepository({ ...opts, fuse, passthrough: o.passthrough === true, profileDir: join(dir, 'start-profiles') }),
  });
  return 0;
}

/** The daemon's status, for status and tests. */
export async function mountStatus(mountpoint: string, dir = runDir()): Promise<MountStatus> {
  const mnt = resolve(mountpoint);
  return daemonStatus(dir, await readMountRecord(dir, mnt), mnt);
}
