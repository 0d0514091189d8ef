// `gridbox automount <dir>`: an on-demand /cvmfs without autofs or root. One FUSE mount whose root lists
// the configured repositories (CVMFS_REPOSITORIES or config.d, or --repositories); each is attached on
// first use and released after --idle seconds unused. As root a normal mount; otherwise the daemon lives
// in its own user+mount namespace (cvmfsexec's case: enter it with `gridbox enter <dir> -- CMD`).
import { statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GridboxError, q } from '../../errors.js';
import { isAlive } from '../../plumbing/process-identity.js';
import { addClientFlags, clientFlagArgs, openClientFromFlags, type ClientFlags } from '../client-options.js';
import { userNamespaceCommand } from '../../fuse/mount.js';
import { startDaemon } from '../../mountd/start-daemon.js';
import { assertNotMountPoint } from '../../mountd/mount-holder.js';
import { readMountRecord, recordPaths, runDir as runDirOf } from '../../mountd/run-dir.js';
import { newCommand, parseCommand, say } from '../options.js';
import { configuredRepositories } from './config-params.js';

export const summary = 'mount an on-demand /cvmfs: repositories attach on first access, release when idle';

/** autofs's default timeout. */
const DEFAULT_IDLE_S = 300;

interface AutomountFlags extends ClientFlags {
  repositories?: string;
  idle?: string;
  foreground?: boolean;
  userns?: boolean;
  passthrough?: boolean;
  readyFd?: string;
  runDir?: string;
  inUserns?: boolean;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = addClientFlags(newCommand('gridbox automount', summary))
    .argument('<dir>', 'where the repositories appear (e.g. /cvmfs)')
    .option('--repositories <list>', 'comma-separated repositories (default CVMFS_REPOSITORIES, else config.d/*.conf)')
    .option('--idle <seconds>', `release a repository unused this long (default ${DEFAULT_IDLE_S})`)
    .option('--foreground', 'serve in this process until unmounted')
    .option('--userns', 'mount inside a new user+mount namespace even as root (the default for non-root users)')
    .option('--no-passthrough', 'serve every read from the daemon')
    .option('--ready-fd <n>', 'internal: write "ready" to this fd once mounted')
    .option('--run-dir <dir>', 'internal: directory of mount records')
    .option('--in-userns', 'internal: this process is the namespace\'s root')
    .action(async (dir: string, o: AutomountFlags) => {
      const mnt = resolve(dir);
      const idle = Number(o.idle ?? DEFAULT_IDLE_S);
      if (!Number.isFinite(idle) || idle <= 0) throw new GridboxError('USAGE', `--idle ${q(o.idle ?? '')} is not a positive number of seconds`);
      const runDir = o.runDir ? resolve(o.runDir) : runDirOf(process.env);
      if (o.foreground) await serve(mnt, runDir, idle, o);
      else await daemonize(mnt, runDir, idle, o);
    });
  await parseCommand(cmd, argv);
  return 0;
}

const repositoryList = (o: AutomountFlags) => async (): Promise<string[]> =>
  o.repositories !== undefined ? o.repositories.split(',').map((r) => r.trim()).filter((r) => r !== '') : configuredRepositories({ config: o.config });

async function daemonize(mnt: string, dir: string, idle: number, o: AutomountFlags): Promise<void> {
  let st;
  try { st = statSync(mnt); } catch (e) { throw new GridboxError('MOUNT_FAILED', `Cannot mount at ${q(mnt)}: no such directory`, { cause: e, path: mnt }); }
  if (!st.isDirectory()) throw new GridboxError('MOUNT_FAILED', `Cannot mount at ${q(mnt)}: not a directory`, { path: mnt });
  const rec = await readMountRecord(dir, mnt);
  if (rec && isAlive(rec.pid)) throw new GridboxError('MOUNT_POINT_BUSY', `${q(mnt)} is already mounted by pid ${rec.pid} (${rec.fqrn})`, { path: mnt });
  await assertNotMountPoint(mnt);
  const repos = await repositoryList(o)();
  if (repos.length === 0) say(`warning: no repositories configured (CVMFS_REPOSITORIES, config.d or --repositories); ${mnt} stays empty until gridbox config reload`);
  const userns = Boolean(o.userns) || process.geteuid?.() !== 0;
  const args = ['automount', mnt, '--foreground', '--ready-fd', '3', '--run-dir', dir, '--idle', String(idle)];
  if (o.repositories !== undefined) args.push('--repositories', o.repositories);
  args.push(...clientFlagArgs(o));
  if (o.passthrough === false) args.push('--no-passthrough');
  if (userns) args.push('--in-userns');
  const script = fileURLToPath(new URL('../main.js', import.meta.url));
  const { command, args: full } = userns ? userNamespaceCommand(script, args) : { command: process.execPath, args: [script, ...args] };
  const { log } = recordPaths(dir, mnt);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await startDaemon({ command, args: full, mountpoint: mnt, log });
  say(`serving ${mnt} on demand: ${repos.join(' ') || '(none yet)'} (daemon pid ${info.pid}, log ${log}, idle release after ${idle} s)`);
  if (userns) say(`the mount lives in a user+mount namespace; run commands there with: gridbox enter ${mnt} -- COMMAND...`);
}

async function serve(mnt: string, dir: string, idle: number, o: AutomountFlags): Promise<void> {
  const log = (line: string): void => { process.stderr.write(`${new Date().toISOString()} ${line}\n`); };
  if (o.readyFd === undefined) await assertNotMountPoint(mnt);
  const { serveAutomount } = await import('../../mountd/serve-automount.js');
  await serveAutomount({
    mountpoint: mnt, runDir: dir, idleMs: idle * 1000, userns: Boolean(o.inUserns), passthrough: o.passthrough !== false, log,
    repositories: repositoryList(o),
    openClient: (fqrn) => openClientFromFlags(fqrn, o, log),
    readyFd: o.readyFd === undefined ? undefined : Number(o.readyFd), announce: say,
  });
}
