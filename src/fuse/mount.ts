// Mount helpers for a FUSE session: mount(8) with an inherited /dev/fuse fd (as root, or as root of a
// user+mount namespace), asynchronous unmount, stale-mount detection, and argv builders for running a
// program inside such a namespace. It never serves requests and never unmounts synchronously.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadNativeAddon } from '../plumbing/native-addon.js';
import { GridboxError, q } from '../errors.js';

export interface MountOptions {
  /** Mount source shown by mount(8) and df (e.g. the repository name). */
  fsname: string;
  /** Type suffix: the mount shows as `fuse.<subtype>`. */
  subtype: string;
  /** Let other users (in a user namespace: other processes of that namespace) see the files. */
  allowOther?: boolean;
  /** Let the kernel check permissions from the attrs (default true; then ACCESS is never sent). */
  defaultPermissions?: boolean;
  /** Read-only mount (default true). */
  readOnly?: boolean;
  /** Extra `-o` options passed through (e.g. "max_read=131072"); no commas inside one option. */
  options?: string[];
}

export interface FuseMount {
  /** The /dev/fuse fd to hand to startSession(); the session owns it from then on. */
  fd: number;
  mountpoint: string;
  /** unmountFuse(mountpoint, opts): asynchronous, safe to await from the serving process. */
  unmount(opts?: UnmountOptions): Promise<void>;
}

export interface UnmountOptions {
  /** Detach now even if busy (umount -l / fusermount3 -z). */
  lazy?: boolean;
  /** Give up (and kill the helper) after this long; default 30 s. */
  timeoutMs?: number;
}

const FUSE_DEVICE = '/dev/fuse';

function isRoot(): boolean {
  return typeof process.geteuid === 'function' && process.geteuid() === 0;
}

interface RunResult { code: number | null; stderr: string }

/** Runs a helper asynchronously: a synchronous umount would deadlock against our own STATFS (spec notes 1.4). */
function runHelper(command: string, args: string[], opts: SpawnOptions, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { ...opts, stdio: opts.stdio ?? ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 4096) stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => { clearTimeout(timer); resolvePromise({ code, stderr: stderr.trim() }); });
  });
}

/** Options mount(8) turns into mount(2) flags; every other option of ours is the FUSE data string's. */
const MOUNT_FLAGS: Record<string, number> = { ro: 1 /* MS_RDONLY */, nosuid: 2, nodev: 4, noexec: 8 };

/**
 * mount(2) through the native addon, as mount(8) -i would call it (`fd=3` becomes our own fd number):
 * true when mounted. False, for mount(8) to do it and explain any failure, when the addon or its mount is
 * missing, an option is not one of ours, or the kernel refused.
 */
export function mountDirect(source: string, target: string, fstype: string, fd: number, options: string[]): boolean {
  const mount = loadNativeAddon()?.mount;
  if (mount === undefined) return false;
  let flags = 0;
  const data: string[] = [];
  for (const opt of options) {
    if (opt in MOUNT_FLAGS) flags |= MOUNT_FLAGS[opt];
    else if (opt === 'fd=3') data.push(`fd=${fd}`);
    else if (/^(rootmode|user_id|group_id|max_read|blksize)=\d+$|^(default_permissions|allow_other)$/.test(opt)) data.push(opt);
    else return false;
  }
  return mount(source, target, fstype, flags, data.join(',')) === 0;
}

/**
 * Opens /dev/fuse and mounts it at `mountpoint` with mount(2) through the native addon, else with mount(8)
 * -i (no mount.fuse helper), the fd passed as fd 3. Needs root, or root in a user+mount namespace that
 * opened /dev/fuse itself (see userNamespaceCommand). The kernel queues INIT; start the session right
 * after this returns.
 */
export async function mountFuse(mountpoint: string, opts: MountOptions): Promise<FuseMount> {
  const mnt = resolve(mountpoint);
  let st;
  try {
    st = await stat(mnt);
  } catch (e) {
    throw new GridboxError('MOUNT_FAILED', `Cannot mount FUSE at ${q(mnt)}: mountpoint is not accessible`, { cause: e, path: mnt });
  }
  if (!st.isDirectory()) throw new GridboxError('MOUNT_FAILED', `Cannot mount FUSE at ${q(mnt)}: not a directory`, { path: mnt });
  for (const [k, v] of [['fsname', opts.fsname], ['subtype', opts.subtype]] as const) {
    if (!/^[A-Za-z0-9._@:+-]+$/.test(v)) throw new GridboxError('USAGE', `Cannot mount FUSE: ${k} ${q(v)} has characters outside [A-Za-z0-9._@:+-]`);
  }
  let fd: number;
  try {
    fd = openSync(FUSE_DEVICE, 'r+');
  } catch (e) {
    throw new GridboxError('FUSE_UNAVAILABLE', `Cannot open ${FUSE_DEVICE} to mount ${q(mnt)}`, { cause: e, path: FUSE_DEVICE });
  }
  const uid = process.getuid?.() ?? 0, gid = process.getgid?.() ?? 0;
  const o = [`fd=3`, `rootmode=${(st.mode & 0o170000).toString(8)}`, `user_id=${uid}`, `group_id=${gid}`];
  if (opts.defaultPermissions ?? true) o.push('default_permissions');
  if (opts.allowOther) o.push('allow_other');
  if (opts.readOnly ?? true) o.push('ro');
  for (const extra of opts.options ?? []) {
    if (extra.includes(',')) { closeSync(fd); throw new GridboxError('USAGE', `Cannot mount FUSE: option ${q(extra)} contains a comma`); }
    o.push(extra);
  }
  if (mountDirect(opts.fsname, mnt, `fuse.${opts.subtype}`, fd, o)) return { fd, mountpoint: mnt, unmount: (u) => unmountFuse(mnt, u) };
  let r: RunResult;
  try {
    r = await runHelper('mount', ['-i', '-t', `fuse.${opts.subtype}`, '-o', o.join(','), opts.fsname, mnt],
      { stdio: ['ignore', 'ignore', 'pipe', fd] }, 30_000);
  } catch (e) {
    closeSync(fd);
    throw new GridboxError('MOUNT_FAILED', `Cannot run mount(8) for ${q(mnt)}`, { cause: e, path: mnt });
  }
  if (r.code !== 0) {
    closeSync(fd);
    const hint = isRoot() ? '' : ' (not root: run inside a user namespace, see userNamespaceCommand)';
    throw new GridboxError('MOUNT_FAILED', `Cannot mount FUSE at ${q(mnt)}: mount exited ${r.code}: ${q(r.stderr)}${hint}`, { path: mnt });
  }
  return { fd, mountpoint: mnt, unmount: (u) => unmountFuse(mnt, u) };
}

/**
 * Takes down a mount whose session never started: closing the fd aborts the connection (requests then fail
 * with ENOTCONN instead of waiting for an INIT answer), then a lazy unmount detaches it.
 */
export async function abandonFuseMount(m: FuseMount): Promise<void> {
  try { closeSync(m.fd); } catch { /* already closed */ }
  await unmountFuse(m.mountpoint, { lazy: true }).catch(() => undefined);
}

/**
 * Unmounts asynchronously with umount(8) when (namespace-)root, else fusermount3 -u. The serving process
 * may await this: it keeps answering the STATFS umount sends, then sees ENODEV and closes.
 */
export async function unmountFuse(mountpoint: string, opts: UnmountOptions = {}): Promise<void> {
  const mnt = resolve(mountpoint);
  const [command, args] = isRoot()
    ? ['umount', [...(opts.lazy ? ['-l'] : []), mnt]]
    : ['fusermount3', ['-u', ...(opts.lazy ? ['-z'] : []), mnt]];
  let r: RunResult;
  try {
    r = await runHelper(command, args, {}, opts.timeoutMs ?? 30_000);
  } catch (e) {
    throw new GridboxError('MOUNT_FAILED', `Cannot run ${command} to unmount ${q(mnt)}`, { cause: e, path: mnt });
  }
  if (r.code !== 0) {
    throw new GridboxError('MOUNT_FAILED', `Cannot unmount ${q(mnt)}: ${command} exited ${r.code ?? 'on timeout'}: ${q(r.stderr)}`, { path: mnt });
  }
}

/** One line of /proc/self/mountinfo, the fields we use. */
export interface MountInfo {
  mountId: number;
  /** "major:minor"; for FUSE the minor is the connection number under /sys/fs/fuse/connections. */
  device: string;
  mountpoint: string;
  fstype: string;
  source: string;
  options: string;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mounts visible in this process's mount namespace. */
export async function readMountInfo(): Promise<MountInfo[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0) continue;
    out.push({ mountId: Number(f[0]), device: f[2], mountpoint: unescapeMountinfo(f[4]), options: f[5], fstype: f[sep + 1], source: unescapeMountinfo(f[sep + 2]) });
  }
  return out;
}

/** The topmost FUSE mount at `mountpoint`, if any. */
export async function findFuseMount(mountpoint: string): Promise<MountInfo | undefined> {
  const mnt = resolve(mountpoint);
  const all = (await readMountInfo()).filter((m) => m.mountpoint === mnt && (m.fstype === 'fuse' || m.fstype.startsWith('fuse.')));
  return all.at(-1);
}

/**
 * 'none' (no FUSE mount there), 'live', or 'stale' (its server died: "Transport endpoint is not
 * connected"). Uses an async stat, so it is safe even from the serving process.
 */
export async function fuseMountState(mountpoint: string): Promise<'none' | 'live' | 'stale'> {
  if (!(await findFuseMount(mountpoint))) return 'none';
  try {
    await stat(resolve(mountpoint));
    return 'live';
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTCONN' || (e as NodeJS.ErrnoException).code === 'ECONNABORTED') return 'stale';
    throw new GridboxError('MOUNT_FAILED', `Cannot check FUSE mount ${q(mountpoint)}`, { cause: e, path: mountpoint });
  }
}

/** Unmounts a stale FUSE mount (lazily if a plain unmount fails); returns whether there was one. */
export async function clearStaleMount(mountpoint: string): Promise<boolean> {
  if ((await fuseMountState(mountpoint)) !== 'stale') return false;
  try {
    await unmountFuse(mountpoint);
  } catch {
    await unmountFuse(mountpoint, { lazy: true });
  }
  return true;
}

/**
 * Aborts the FUSE connection of a mount through fusectl (root only): every pending and future request
 * fails. The way out of a server that is hung; mounts fusectl if needed.
 */
export async function abortFuseConnection(mountpoint: string): Promise<void> {
  const m = await findFuseMount(mountpoint);
  if (!m) throw new GridboxError('MOUNT_FAILED', `Cannot abort FUSE connection: nothing mounted at ${q(mountpoint)}`, { path: mountpoint });
  const minor = m.device.split(':')[1];
  const ctl = `/sys/fs/fuse/connections/${minor}/abort`;
  try {
    await writeFile(ctl, '1');
  } catch {
    await runHelper('mount', ['-t', 'fusectl', 'none', '/sys/fs/fuse/connections'], {}, 10_000).catch(() => undefined);
    try {
      await writeFile(ctl, '1');
    } catch (e) {
      throw new GridboxError('MOUNT_FAILED', `Cannot abort FUSE connection of ${q(mountpoint)} via ${q(ctl)}`, { cause: e, path: mountpoint });
    }
  }
}

/** A program and its arguments, ready for spawn(). */
export interface CommandLine {
  command: string;
  args: string[];
}

/**
 * Runs `node <script> ...args` as root of a new user+mount namespace (unshare -Urm, private
 * propagation), so its FUSE mount lives and dies with that namespace. unshare execs node directly: the
 * spawned pid IS the namespace's node process, the pid to give enterCommand(). /dev/fuse must be 0666.
 */
export function userNamespaceCommand(script: string, args: readonly string[] = [], node = process.execPath): CommandLine {
  return { command: 'unshare', args: ['--user', '--map-root-user', '--mount', '--propagation', 'private', node, script, ...args] };
}

/**
 * Runs `argv` inside the user+mount namespace of process `pid` (a process started by
 * userNamespaceCommand), keeping the caller's uid/gid so files it creates are the caller's.
 */
export function enterCommand(pid: number, argv: readonly string[]): CommandLine {
  if (!Number.isInteger(pid) || pid <= 0) throw new GridboxError('USAGE', `Cannot enter namespace of pid ${q(pid)}: not a pid`);
  if (argv.length === 0) throw new GridboxError('USAGE', 'Cannot enter namespace: no command given');
  return { command: 'nsenter', args: ['--target', String(pid), '--user', '--mount', '--preserve-credentials', '--', ...argv] };
}

/** spawn() of a CommandLine, for callers that want the process. */
export function spawnCommand(cmd: CommandLine, opts: SpawnOptions = {}): ChildProcess {
  return spawn(cmd.command, cmd.args, opts);
}
