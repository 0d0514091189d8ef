// The pure core of the runtime: options + host environment + image + host facts → LaunchSpec (the bwrap argv,
// environment and messages), following Apptainer's mount order (runtime-contract.md §3.3) and identity rules
// (§3.2). Reads the filesystem only through the FsViews it is given; never spawns or mounts anything.
import { posix } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { ACTION_SCRIPT, DEFAULT_PATH, flattenEnv, parseEnvFile, planEnv, shellEnv } from './container-env.js';
import { FIRST_DATA_FD, STATUS_FD } from './launch-spec.js';
import type { DataFile, EntryType, FsView, HostFacts, ImageInfo, LaunchOptions, LaunchSpec, Message } from './launch-spec.js';
import { fileMountBlocker, resolveInImage, withoutEntries } from './resolve-in-image.js';
import { planRootfs } from './underlay.js';

/**
 * How a default system file (/etc/localtime, /etc/hosts, /etc/resolv.conf, /etc/passwd, /etc/group, /etc/hostname)
 * is placed when the image has a symlink there. `replace`: the symlink itself becomes the mount point, as
 * Apptainer's session layer does for /etc/localtime (copyHostLocaltime: "so the bind mount does not overwrite the
 * default timezone in the container, which is likely at a different path due to a symlink"). `follow`: mounted
 * on the symlink's target inside the image, created by the underlay when missing (mountGeneric's EvalRelative).
 * Either way a system file that cannot be placed is skipped with a verbose message, never a FATAL.
 */
type SystemFile = 'replace' | 'follow';

type Mount =
  | { kind: 'bind' | 'ro-bind' | 'dev-bind'; source: string; dest: string; system?: SystemFile }
  | { kind: 'tmpfs'; dest: string; perms?: string; system?: undefined }
  | { kind: 'proc' | 'mqueue'; dest: string; system?: undefined }
  | { kind: 'symlink'; target: string; dest: string; system?: undefined }
  | { kind: 'data'; dest: string; content: string; system?: SystemFile };

const SYSTEM_DIRS = ['/etc', '/bin', '/usr', '/var', '/opt', '/sbin', '/lib', '/lib64', '/mnt'];
const under = (path: string, dir: string): boolean => dir === '/' || path === dir || path.startsWith(`${dir}/`);

export function buildLaunchSpec(options: LaunchOptions, env: Record<string, string | undefined>, image: ImageInfo, host: HostFacts): LaunchSpec {
  const messages: Message[] = [...options.notes];
  const abs = (p: string): string => posix.resolve(host.cwd, p);
  const mounts: Mount[] = [];
  const mkdirs: string[] = [];
  const workdir = options.workdir !== undefined ? abs(options.workdir) : undefined;
  const backing = (name: string): string => {
    const dir = posix.join(workdir as string, name);
    mkdirs.push(dir);
    return dir;
  };

  // Home: --home src[:dst] is bound even under --contain; otherwise the passwd home, staged empty when contained.
  let homeDest = host.home;
  let homeSource: string | undefined;
  if (options.home !== undefined) {
    const [src, dst] = options.home.split(':');
    homeSource = abs(src);
    homeDest = dst ?? homeSource;
    if (!homeDest.startsWith('/')) throw new GridboxError('LAUNCH_BAD_OPTION', `Cannot use home ${q(options.home)}: destination is not absolute`);
    if (host.fs.typeOf(homeSource) === undefined) throw new GridboxError('LAUNCH_BIND_SOURCE', `mount source ${homeSource} doesn't exist`, { path: homeSource });
  } else if (!options.contain) {
    if (host.fs.typeOf(host.home) === 'dir') homeSource = host.home;
    else messages.push({ level: 'VERBOSE', text: `Home directory ${q(host.home)} does not exist on the host: not bound` });
  }

  if (options.contain) mounts.push(...minimalDev(host, options.ipc));
  else mounts.push({ kind: 'dev-bind', source: '/dev', dest: '/dev' });
  // A host system file that is missing or a dangling link is skipped (Apptainer binds these "skip-on-error").
  const hostFile = (f: string): boolean => {
    if (host.fs.typeOf(f) === undefined) return false;
    if (host.fs.read(f) !== undefined) return true;
    messages.push({ level: 'VERBOSE', text: `Skipping mount of ${f}: not a readable file on the host` });
    return false;
  };
  for (const f of ['/etc/localtime', '/etc/hosts']) {
    if (hostFile(f)) mounts.push({ kind: 'ro-bind', source: f, dest: f, system: f === '/etc/localtime' ? 'replace' : 'follow' });
  }
  mounts.push(options.pid ? { kind: 'proc', dest: '/proc' } : { kind: 'bind', source: '/proc', dest: '/proc' });
  if (host.fs.typeOf('/sys') === 'dir') mounts.push({ kind: 'ro-bind', source: '/sys', dest: '/sys' });
  if (!options.noHome && homeDest !== '/') {
    if (homeSource !== undefined) mounts.push({ kind: 'bind', source: homeSource, dest: homeDest });
    else if (options.contain) mounts.push(workdir ? { kind: 'bind', source: backing('home'), dest: homeDest } : { kind: 'tmpfs', dest: homeDest });
  }
  if (options.contain) {
    mounts.push(workdir ? { kind: 'bind', source: backing('tmp'), dest: '/tmp' } : { kind: 'tmpfs', dest: '/tmp', perms: '1777' });
    mounts.push(workdir ? { kind: 'bind', source: backing('var_tmp'), dest: '/var/tmp' } : { kind: 'tmpfs', dest: '/var/tmp', perms: '1777' });
  } else {
    for (const d of ['/tmp', '/var/tmp']) if (host.fs.typeOf(d) === 'dir') mounts.push({ kind: 'bind', source: d, dest: d });
  }
  // Scratch dirs: `<workdir>/scratch/<full path>` so /tmp and /var/tmp never share a backing directory.
  for (const dir of options.scratch) {
    const dest = abs(dir);
    mounts.push(workdir ? { kind: 'bind', source: backing(posix.join('scratch', dest)), dest } : { kind: 'tmpfs', dest, perms: '1777' });
  }

  // Identity files: the image's own passwd/group with the caller's entries (§3.2); none when the image has none.
  // Read through symlinks resolved inside the image: a host-side read would follow an absolute link to the host's file.
  const imageFile = (p: string): string | undefined => {
    const r = resolveInImage(image.fs, p);
    return !r.loop && image.fs.typeOf(r.path) === 'file' ? image.fs.read(r.path) : undefined;
  };
  const passwd = imageFile('/etc/passwd');
  const group = imageFile('/etc/group');
  if (passwd !== undefined) mounts.push({ kind: 'data', dest: '/etc/passwd', content: passwdWithCaller(passwd, host, homeDest), system: 'follow' });
  else messages.push({ level: 'VERBOSE', text: '/etc/passwd does not exist in the container: no passwd entry for the caller' });
  if (group !== undefined) mounts.push({ kind: 'data', dest: '/etc/group', content: groupWithCaller(group, host), system: 'follow' });
  const etc = resolveInImage(image.fs, '/etc');
  if (image.fs.typeOf(etc.path) === 'dir' && hostFile('/etc/resolv.conf')) mounts.push({ kind: 'ro-bind', source: '/etc/resolv.conf', dest: '/etc/resolv.conf', system: 'follow' });
  if (options.uts && options.hostname !== undefined) mounts.push({ kind: 'data', dest: '/etc/hostname', content: `${options.hostname}\n`, system: 'follow' });

  if (options.nv) {
    if (host.nvidia.libs.length === 0) messages.push({ level: 'WARNING', text: 'Could not find any nv libraries on this host!' });
    for (const lib of host.nvidia.libs) mounts.push({ kind: 'ro-bind', source: lib, dest: posix.join('/.singularity.d/libs', posix.basename(lib)) });
    for (const bin of host.nvidia.bins) mounts.push({ kind: 'ro-bind', source: bin, dest: posix.join('/usr/bin', posix.basename(bin)) });
    for (const dev of host.nvidia.devices) mounts.push({ kind: 'dev-bind', source: dev, dest: dev });
  }

  // User binds: sources must exist; the first bind on a destination wins, later ones warn; sorted by destination.
  const userBinds: Mount[] = [];
  const seen = new Set<string>();
  for (const b of options.binds) {
    const source = abs(b.source);
    const dest = posix.normalize(b.dest);
    if (host.fs.typeOf(source) === undefined) throw new GridboxError('LAUNCH_BIND_SOURCE', `mount source ${source} doesn't exist`, { path: source });
    if (seen.has(dest)) { messages.push({ level: 'WARNING', text: `destination ${dest} is already in the mount point list` }); continue; }
    seen.add(dest);
    userBinds.push({ kind: b.readOnly ? 'ro-bind' : under(dest, '/dev') ? 'dev-bind' : 'bind', source, dest });
  }
  userBinds.sort((a, b) => (a.dest < b.dest ? -1 : a.dest > b.dest ? 1 : 0));
  mounts.push(...userBinds);

  // The host cwd, unless contained, a system directory, or already visible through another mount.
  const cwdVisible = mounts.some((m) => m.kind !== 'data' && m.kind !== 'tmpfs' && 'source' in m && m.dest !== '/dev' && under(host.cwd, m.dest) && m.dest !== '/proc');
  const cwdSystem = host.cwd === '/' || SYSTEM_DIRS.some((d) => under(host.cwd, d)) || ['/proc', '/sys', '/dev'].some((d) => under(host.cwd, d));
  if (!options.contain && !cwdSystem && !cwdVisible && host.fs.typeOf(host.cwd) === 'dir') mounts.push({ kind: 'bind', source: host.cwd, dest: host.cwd });

  // Destinations resolved inside the image (symlinks followed there, not on the host); system files that cannot
  // be placed are dropped here. `view` is the image as the underlay sees it (replaced symlinks gone).
  const placed = placeMounts(mounts, image.fs, messages);
  mounts.splice(0, mounts.length, ...placed.mounts);
  const view = placed.view;

  // A mount nested in another must come after it (e.g. --home under a contained /tmp): a stable sort by depth
  // keeps Apptainer's order otherwise, including "later covers earlier" on the same destination.
  const depthOf = (p: string): number => p.split('/').filter((x) => x !== '').length;
  mounts.sort((a, b) => depthOf(a.dest) - depthOf(b.dest));
  const typeInside = (path: string): EntryType | undefined => typeInContainer(path, mounts, view, host);

  // Working directory (§3.3): --pwd must exist; run honours the image's WorkingDir; else home (contain) or cwd.
  let pwd: string;
  const wanted = options.pwd ?? (options.action === 'run' ? image.workdir : undefined);
  if (wanted !== undefined) {
    pwd = posix.resolve('/', wanted);
    if (typeInside(pwd) !== 'dir') throw new GridboxError('LAUNCH_FAILED', `failed to set working directory: ${q(pwd)} does not exist in the container`, { path: pwd });
  } else if (!options.contain && typeInside(host.cwd) === 'dir') {
    pwd = host.cwd;
  } else if (typeInside(homeDest) === 'dir') {
    pwd = homeDest;
    if (!options.contain) messages.push({ level: 'WARNING', text: `Current directory ${host.cwd} is not visible in the container: using ${homeDest}` });
  } else {
    pwd = '/';
  }

  // The command (§3.6).
  let command: string[];
  let exitWithoutLaunch: number | undefined;
  switch (options.action) {
    case 'exec': command = options.args; break;
    case 'test':
      if (image.testScript === undefined) {
        messages.push({ level: 'INFO', text: 'No test script found in container, exiting' });
        exitWithoutLaunch = 0;
      }
      command = [image.testScript ?? '/bin/true', ...options.args];
      break;
    case 'run':
      if (image.runscript !== undefined) command = [image.runscript, ...options.args];
      else if (image.fs.isExecutable('/apptainer')) command = ['/apptainer', ...options.args];
      else if (image.hasShell) {
        messages.push({ level: 'INFO', text: 'No runscript found in container, executing /bin/sh' });
        command = ['/bin/sh', ...options.args];
      } else {
        messages.push({ level: 'ERROR', text: 'No runscript and no /bin/sh executable found in container, aborting' });
        command = [];
        exitWithoutLaunch = 1;
      }
      break;
    case 'shell': {
      const shell = options.shell ?? (image.fs.isExecutable('/bin/bash') ? '/bin/bash' : image.hasShell ? '/bin/sh' : undefined);
      if (shell === undefined) {
        messages.push({ level: 'ERROR', text: 'No shell found in container (/bin/bash, /bin/sh), aborting' });
        command = [];
        exitWithoutLaunch = 1;
      } else command = shell === '/bin/bash' ? [shell, '--norc', ...options.args] : [shell, ...options.args];
      break;
    }
  }

  // Environment (§3.4).
  const fixed: Record<string, string> = {
    HOME: homeDest, PWD: pwd, PS1: 'Apptainer> ',
    APPTAINER_CONTAINER: image.path, SINGULARITY_CONTAINER: image.path,
    APPTAINER_NAME: posix.basename(image.path), SINGULARITY_NAME: posix.basename(image.path),
    APPTAINER_BIND: userBinds.map((m) => m.dest).join(','), SINGULARITY_BIND: userBinds.map((m) => m.dest).join(','),
    APPTAINER_APPNAME: '', SINGULARITY_APPNAME: '',
    APPTAINER_ENVIRONMENT: '/.singularity.d/env/91-environment.sh', SINGULARITY_ENVIRONMENT: '/.singularity.d/env/91-environment.sh',
    APPTAINER_COMMAND: options.action, SINGULARITY_COMMAND: options.action,
  };
  const explicit: Array<[string, string]> = [
    ...options.envs.map((e): [string, string] => { const i = e.indexOf('='); return i < 0 ? [e, env[e] ?? ''] : [e.slice(0, i), e.slice(i + 1)]; }),
    ...options.envFiles.flatMap(parseEnvFile),
  ];
  const plan = planEnv({ hostEnv: env, cleanEnv: options.cleanEnv, explicit, fixed });
  messages.push(...plan.messages);
  const { PS1: _ps1, ...fixedNoPs1 } = fixed;
  if (!('PS1' in plan.overrides)) plan.overrides.PS1 = _ps1;

  let tail: string[];
  let launchEnv: Record<string, string>;
  if (image.hasShell && command.length > 0) {
    tail = ['/bin/sh', '-c', ACTION_SCRIPT, `/.singularity.d/actions/${options.action}`, ...command];
    launchEnv = shellEnv(plan, fixedNoPs1);
  } else {
    launchEnv = flattenEnv(plan, fixedNoPs1);
    tail = command.length > 0 && exitWithoutLaunch === undefined ? [resolveCommand(command[0], launchEnv.PATH ?? DEFAULT_PATH, typeInside, image, mounts, host), ...command.slice(1)] : command;
  }

  // Namespaces (§3.2): always user + mount, the caller's uid/gid mapped to themselves.
  const argv: string[] = ['--unshare-user', '--uid', String(host.uid), '--gid', String(host.gid)];
  if (options.pid) argv.push('--unshare-pid');
  if (options.ipc) argv.push('--unshare-ipc');
  if (options.net) argv.push('--unshare-net');
  if (options.uts) argv.push('--unshare-uts', ...(options.hostname !== undefined ? ['--hostname', options.hostname] : []));
  argv.push('--die-with-parent', '--json-status-fd', String(STATUS_FD));

  // Only destinations that no other mount contains can diverge from the image; the rest get their mount
  // points inside that mount (a tmpfs or a host directory), never in a read-only underlay layer.
  const dests = [...mounts.map((m) => m.dest), pwd];
  const inAnother = (d: string): boolean => mounts.some((m) => m.dest !== d && m.dest !== '/' && under(d, m.dest));
  const rootfs = planRootfs(view, image.root, dests.filter((d) => !inAnother(d)));
  argv.push(...rootfs.argv);
  const files: DataFile[] = [];
  for (const m of mounts) {
    switch (m.kind) {
      case 'bind': case 'ro-bind': case 'dev-bind': argv.push(`--${m.kind}`, m.source, m.dest); break;
      case 'tmpfs': argv.push(...(m.perms ? ['--perms', m.perms] : []), '--tmpfs', m.dest); break;
      case 'proc': case 'mqueue': argv.push(`--${m.kind}`, m.dest); break;
      case 'symlink': argv.push('--symlink', m.target, m.dest); break;
      case 'data':
        argv.push('--ro-bind-data', String(FIRST_DATA_FD + files.length), m.dest);
        files.push({ dest: m.dest, content: m.content });
        break;
    }
  }
  for (const dir of rootfs.remountReadOnly) argv.push('--remount-ro', dir);
  argv.push('--chdir', pwd, '--', ...tail);
  return { argv, env: launchEnv, files, mkdirs, messages, exitWithoutLaunch, pidNamespace: options.pid };
}

/**
 * The contained /dev (§3.3) without bwrap's `--dev`: that option makes bwrap map the caller to uid 0 in an
 * intermediate user namespace (for devpts), so /proc/self/uid_map would read `<uid> 0 1` instead of `<uid> <uid> 1`.
 */
function minimalDev(host: HostFacts, ipc: boolean): Mount[] {
  const out: Mount[] = [{ kind: 'tmpfs', dest: '/dev' }];
  for (const n of ['null', 'zero', 'full', 'random', 'urandom', 'tty']) {
    if (host.fs.typeOf(`/dev/${n}`) !== undefined) out.push({ kind: 'dev-bind', source: `/dev/${n}`, dest: `/dev/${n}` });
  }
  if (host.fs.typeOf('/dev/pts') === 'dir') {
    out.push({ kind: 'dev-bind', source: '/dev/pts', dest: '/dev/pts' }, { kind: 'symlink', target: 'pts/ptmx', dest: '/dev/ptmx' });
  }
  out.push({ kind: 'tmpfs', dest: '/dev/shm', perms: '1777' });
  for (const [i, n] of ['stdin', 'stdout', 'stderr'].entries()) out.push({ kind: 'symlink', target: `/proc/self/fd/${i}`, dest: `/dev/${n}` });
  out.push({ kind: 'symlink', target: '/proc/self/fd', dest: '/dev/fd' });
  if (ipc) out.push({ kind: 'mqueue', dest: '/dev/mqueue' });
  return out;
}

/**
 * Resolves every destination inside the image and places the system files (see SystemFile). Destinations of
 * kernel filesystems and of the staged /dev are taken as they are; so is anything below another mount's
 * destination, which is not the image's content.
 */
function placeMounts(mounts: Mount[], image: FsView, messages: Message[]): { mounts: Mount[]; view: FsView } {
  const literal = new Set(mounts.filter((m) => m.system === undefined).map((m) => m.dest));
  const hidden = new Set<string>();
  const out: Array<Mount | undefined> = [];
  const kernel = (d: string): boolean => ['/dev', '/proc', '/sys'].some((k) => under(d, k));
  const stopFor = (m: Mount) => (p: string): boolean => p !== m.dest && literal.has(p);
  const skip = (m: Mount, why: string): void => {
    messages.push({ level: 'VERBOSE', text: `Skipping mount of ${'source' in m ? m.source : 'generated file'} at ${m.dest}: ${why}` });
  };
  // System files first: a replaced symlink is gone before the other destinations are resolved, as in Apptainer,
  // where the session layer's /etc/localtime file exists before a user bind of /etc/localtime is mounted.
  mounts.forEach((m, i) => {
    if (m.system === undefined) return;
    let dest: string;
    if (m.system === 'replace') {
      const parent = resolveInImage(image, posix.dirname(m.dest), stopFor(m));
      if (parent.loop) { skip(m, `too many levels of symbolic links at ${parent.path}`); return; }
      dest = posix.join(parent.path, posix.basename(m.dest));
      if (image.typeOf(dest) === 'link') hidden.add(dest);
    } else {
      const r = resolveInImage(withoutEntries(image, hidden), m.dest, stopFor(m));
      if (r.loop) { skip(m, `too many levels of symbolic links at ${r.path}`); return; }
      dest = r.path;
    }
    const blocker = fileMountBlocker(withoutEntries(image, hidden), dest);
    if (blocker !== undefined) {
      hidden.delete(dest);
      skip(m, blocker);
      return;
    }
    if (dest !== m.dest) {
      messages.push({ level: 'DEBUG', text: `${m.dest} is a symlink in the container: ${hidden.has(dest) ? 'replaced by the mount' : `mounting on ${dest}`}` });
    }
    out[i] = { ...m, dest };
  });
  const view = withoutEntries(image, hidden);
  mounts.forEach((m, i) => {
    if (m.system !== undefined) return;
    if (m.kind === 'proc' || m.kind === 'mqueue' || m.kind === 'symlink' || kernel(m.dest)) { out[i] = m; return; }
    const r = resolveInImage(view, m.dest, stopFor(m));
    out[i] = r.loop || r.path === m.dest ? m : { ...m, dest: r.path };
  });
  return { mounts: out.filter((m): m is Mount => m !== undefined), view };
}

/** What `path` is inside the assembled container: the last mount covering it decides. */
function typeInContainer(path: string, mounts: Mount[], image: FsView, host: HostFacts): EntryType | undefined {
  let best: Mount | undefined;
  for (const m of mounts) if (under(path, m.dest) && (best === undefined || m.dest.length >= best.dest.length)) best = m;
  const mountPoint = mounts.some((m) => m.dest.startsWith(path === '/' ? '/' : `${path}/`));
  if (best === undefined) {
    const r = resolveInImage(image, path);
    if (r.path !== path && !r.loop) return typeInContainer(r.path, mounts, image, host);
    return image.typeOf(path) ?? (mountPoint ? 'dir' : undefined);
  }
  const rest = path.slice(best.dest.length);
  if (best.kind === 'data') return rest === '' ? 'file' : undefined;
  if (best.kind === 'symlink') return rest === '' ? 'link' : undefined;
  if ('source' in best) {
    const t = host.fs.typeOf(best.source + rest);
    return t === 'link' ? host.fs.read(best.source + rest) !== undefined ? 'file' : 'dir' : t ?? (mountPoint ? 'dir' : undefined);
  }
  return rest === '' || mountPoint ? 'dir' : best.kind === 'proc' ? 'other' : undefined;
}

/** Without a shell in the image the runtime resolves the command itself (Apptainer's LookPath, §3.4 step 6). */
function resolveCommand(cmd: string, path: string, typeInside: (p: string) => EntryType | undefined, image: ImageInfo, mounts: Mount[], host: HostFacts): string {
  const isExec = (p: string): boolean => {
    const t = typeInside(p);
    if (t === undefined || t === 'dir') return false;
    const m = [...mounts].reverse().find((x) => under(p, x.dest) && 'source' in x) as { source: string; dest: string } | undefined;
    return m ? host.fs.isExecutable(m.source + p.slice(m.dest.length)) : image.fs.isExecutable(p);
  };
  if (cmd.includes('/')) {
    if (!isExec(cmd)) throw new GridboxError('LAUNCH_NO_COMMAND', `exec ${cmd} failed: no such executable file in the container`, { path: cmd });
    return cmd;
  }
  for (const dir of path.split(':').filter((d) => d.startsWith('/'))) {
    const candidate = posix.join(dir, cmd);
    if (isExec(candidate)) return candidate;
  }
  throw new GridboxError('LAUNCH_NO_COMMAND', `"${cmd}": executable file not found in $PATH`);
}

/** The image's passwd with the caller's line rewritten (host name, gecos, container home, image shell) or appended. */
export function passwdWithCaller(text: string, host: HostFacts, homeDest: string): string {
  const lines = text.split('\n').filter((l, i, all) => l !== '' || i < all.length - 1);
  let found = false;
  const out = lines.map((line) => {
    const f = line.split(':');
    if (f.length < 7 || f[2] !== String(host.uid)) return line;
    found = true;
    return `${host.user}:x:${host.uid}:${host.gid}:${host.gecos}:${homeDest}:${f[6] || '/bin/sh'}`;
  });
  if (!found) out.push(`${host.user}:x:${host.uid}:${host.gid}:${host.gecos}:${homeDest}:/bin/sh`);
  return `${out.join('\n')}\n`;
}

/** The image's group file plus `name:x:gid:user` for each of the caller's groups not already there by gid. */
export function groupWithCaller(text: string, host: HostFacts): string {
  const lines = text.split('\n').filter((l) => l !== '');
  const gids = new Set(lines.map((l) => l.split(':')[2]));
  for (const g of host.groups) {
    if (gids.has(String(g.gid))) continue;
    gids.add(String(g.gid));
    lines.push(`${g.name}:x:${g.gid}:${host.user}`);
  }
  return `${lines.join('\n')}\n`;
}
