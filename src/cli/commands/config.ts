// `gridbox config setup|automap|probe|showconfig|chksetup|reload|umount`: cvmfs_config for gridbox. setup
// installs the mount helper (/sbin/mount.gridbox) and the autofs program map (/etc/auto.gridbox, named in
// auto.master); automap is what that map runs; the rest behave as site admins know them from cvmfs_config.
import { constants, existsSync } from 'node:fs';
import { access, chmod, mkdir, readdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GridboxError, describeError, q } from '../../errors.js';
import { isAlive } from '../../plumbing/process-identity.js';
import { writeFileAtomic } from '../../plumbing/atomic-write.js';
import { AUTOMOUNT_FQRN, callControl, listMountRecords, stopDaemon } from '../../mountd/control.js';
import { runDir } from '../../mountd/run-dir.js';
import { loadClientSettings, loadMasterKeys } from '../client-options.js';
import { newCommand, parseCommand, say } from '../options.js';
import { expandTemplates } from '../../client/client-config.js';
import { readMountInfo } from '../../fuse/mount.js';
import { configuredRepositories, effectiveParams, fullName, mountAllowed } from './config-params.js';

export const summary = 'site setup and checks as cvmfs_config: setup, probe, showconfig, chksetup, reload, umount';

const MOUNT_DIR_DEFAULT = '/cvmfs';

function mainScript(): string {
  return fileURLToPath(new URL('../main.js', import.meta.url));
}

/** A /bin/sh wrapper that runs `gridbox <args> "$@"` with this node and this installation. */
function wrapper(args: string[], what: string): string {
  const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  return `#!/bin/sh\n# ${what}; written by gridbox config setup\nexec ${quote(process.execPath)} ${quote(mainScript())} ${args.map(quote).join(' ')} "$@"\n`;
}

async function mountDir(): Promise<string> {
  return (await effectiveParams(undefined)).get('CVMFS_MOUNT_DIR')?.value ?? MOUNT_DIR_DEFAULT;
}

export async function run(argv: string[]): Promise<number> {
  let code = 0;
  const cmd = newCommand('gridbox config', summary);
  cmd.command('setup').description('install the mount helper and the autofs map')
    .option('--sbin <dir>', 'where mount(8) looks for helpers', '/sbin')
    .option('--type <name>', 'the filesystem type: mount -t <name> runs <sbin>/mount.<name>', 'gridbox')
    .option('--map <file>', 'the autofs program map', '/etc/auto.gridbox')
    .option('--master <file>', 'the autofs master map file to name the map in (default /etc/auto.master.d/gridbox.autofs if auto.master.d exists, else /etc/auto.master)')
    .option('--no-autofs', 'install only the mount helper')
    .action(async (o: { sbin: string; type: string; map: string; master?: string; autofs: boolean }) => {
      if (!/^[A-Za-z0-9._-]+$/.test(o.type)) throw new GridboxError('USAGE', `--type ${q(o.type)} is not a filesystem type name`);
      const helper = join(resolve(o.sbin), `mount.${o.type}`);
      await writeExecutable(helper, wrapper(['mount-helper'], `mount -t ${o.type} helper`));
      say(`installed ${helper}`);
      if (!o.autofs) return;
      const map = resolve(o.map);
      await writeExecutable(map, wrapper(['config', 'automap', '--type', o.type], 'autofs program map: key = repository name'));
      say(`installed ${map}`);
      const master = o.master ? resolve(o.master) : existsSync('/etc/auto.master.d') ? '/etc/auto.master.d/gridbox.autofs' : '/etc/auto.master';
      const dir = await mountDir();
      const line = `${dir} ${map}`;
      let text = '';
      try { text = await readFile(master, 'utf8'); } catch { /* new file */ }
      if (text.split('\n').some((l) => l.trim().split(/\s+/)[0] === dir)) say(`${master} already has an entry for ${dir}`);
      else {
        await mkdir(dirname(master), { recursive: true });
        await writeFileAtomic(master, `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}${line}\n`);
        say(`added "${line}" to ${master} (reload autofs to use it)`);
      }
    });
  cmd.command('automap').description('autofs program map: prints the map entry for a key (a repository name)')
    .argument('<key>').option('--type <name>', 'the filesystem type of the entry', 'gridbox')
    .action(async (key: string, o: { type: string }) => {
      // As auto.cvmfs: any well-formed dotted name (a domain configuration may serve it); under
      // CVMFS_STRICT_MOUNT only the listed ones. Anything else prints nothing: autofs answers ENOENT.
      if (!/^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+$/.test(key) || !(await mountAllowed(key))) { code = 1; return; }
      say(`-fstype=${o.type},nodev,nosuid,ro :${key}`);
    });
  cmd.command('probe').description('access each repository under the mount dir and print OK or Failed')
    .argument('[repositories...]').option('--mount-dir <dir>', 'where repositories appear (default CVMFS_MOUNT_DIR or /cvmfs)')
    .action(async (repos: string[], o: { mountDir?: string }) => {
      const dir = o.mountDir ?? await mountDir();
      const list = repos.length ? repos : await configuredRepositories();
      if (list.length === 0) throw new GridboxError('CONFIG_INVALID', 'No repositories to probe: set CVMFS_REPOSITORIES or name them');
      const domain = (await effectiveParams(undefined)).get('CVMFS_DEFAULT_DOMAIN')?.value;
      for (const r of list) {
        const path = join(dir, fullName(r, domain));
        // As cvmfs_config: the listing triggers the mount, then the path must be on a gridbox mount (df).
        let failure: string | undefined;
        try {
          await readdir(path);
          const fstype = await fstypeOf(path);
          if (fstype !== 'fuse.gridbox') failure = `not a gridbox mount (${fstype})`;
        } catch (e) {
          failure = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
        }
        say(`Probing ${path}... ${failure === undefined ? 'OK' : `Failed! (${failure})`}`);
        if (failure !== undefined) code = 1;
      }
    });
  cmd.command('showconfig').description('the effective parameters of a repository and where each comes from')
    .argument('[repositories...]').option('--config <file>', 'an extra config file, as the mount commands take it').option('-s, --set', 'only parameters set by a file or the environment')
    .action(async (repos: string[], o: { config?: string; set?: boolean }) => {
      const domain = (await effectiveParams(undefined, { config: o.config })).get('CVMFS_DEFAULT_DOMAIN')?.value;
      const list = repos.length ? repos.map((r) => fullName(r, domain)) : await configuredRepositories({ config: o.config });
      if (list.length === 0) list.push('');
      for (const r of list) {
        if (list.length > 1) say(`\nRunning gridbox config showconfig ${r}:`);
        const p = await effectiveParams(r === '' ? undefined : r, { config: o.config });
        if (r !== '') say(`CVMFS_REPOSITORY_NAME=${r}`);
        for (const k of [...p.keys()].sort()) {
          const v = p.get(k)!;
          if (o.set && v.from === 'built-in default') continue;
          // Values as the repository sees them: @fqrn@ and @org@ expanded, as cvmfs_config shows them.
          say(`${k}=${r === '' ? v.value : expandTemplates(v.value, r)}    # from ${v.from}`);
        }
      }
    });
  cmd.command('chksetup').description('check FUSE, mount, user namespaces, cache and configuration; prints OK or the problems')
    .action(async () => {
      const problems = await chksetup();
      for (const p of problems) say(p);
      if (problems.some((p) => p.startsWith('Error'))) code = 1;
      else say('OK');
    });
  cmd.command('reload').description('make running mounts re-read their configuration').argument('[repositories...]')
    .action(async (repos: string[]) => {
      const recs = (await listMountRecords(runDir(process.env))).filter((r) => isAlive(r.pid) && (repos.length === 0 || repos.includes(r.fqrn) || r.fqrn === AUTOMOUNT_FQRN));
      if (recs.length === 0) say('no running gridbox mounts');
      for (const r of recs) {
        const ans = await callControl(r.socket, { op: 'reload' }, 60_000).catch((e: unknown) => ({ ok: false, error: describeError(e), text: undefined }));
        say(`Reloading ${r.mountpoint}${r.fqrn === AUTOMOUNT_FQRN ? '' : ` (${r.fqrn})`}: ${ans.ok ? 'OK' : `Failed! ${ans.error ?? ''}`}`);
        if (ans.text) say(ans.text.split('\n').map((l) => `  ${l}`).join('\n'));
        if (!ans.ok) code = 1;
      }
    });
  cmd.command('umount').description('unmount every gridbox mount of this run dir')
    .action(async () => {
      const recs = (await listMountRecords(runDir(process.env))).filter((r) => isAlive(r.pid));
      for (const r of recs) {
        try {
          await stopDaemon(r, 30_000);
          say(`Unmounting ${r.mountpoint}: OK`);
        } catch (e) {
          say(`Unmounting ${r.mountpoint}: Failed! (${describeError(e)})`);
          code = 1;
        }
      }
    });
  await parseCommand(cmd, argv);
  return code;
}

/** The filesystem type of the mount holding `path` (the longest mount point above it). */
async function fstypeOf(path: string): Promise<string> {
  const real = await realpath(path);
  let best = { mountpoint: '', fstype: 'unknown' };
  for (const m of await readMountInfo()) {
    const under = real === m.mountpoint || real.startsWith(m.mountpoint.endsWith('/') ? m.mountpoint : `${m.mountpoint}/`);
    if (under && m.mountpoint.length >= best.mountpoint.length) best = m;
  }
  return best.fstype;
}

async function writeExecutable(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, text);
  await chmod(path, 0o755);
}

/** cvmfs_config chksetup: one line per problem, "Error: …" for what breaks mounts, "Warning: …" otherwise. */
async function chksetup(): Promise<string[]> {
  const out: string[] = [];
  const root = process.geteuid?.() === 0;
  try { await access('/dev/fuse', constants.R_OK | constants.W_OK); } catch {
    out.push(existsSync('/dev/fuse') ? `Error: /dev/fuse is not read-writable for uid ${process.geteuid?.()}${root ? '' : ' (unprivileged mounts need it 0666)'}` : 'Error: /dev/fuse is missing (modprobe fuse)');
  }
  const path = (process.env.PATH ?? '').split(':');
  const have = (b: string): boolean => path.some((d) => existsSync(join(d, b)));
  if (!have('mount')) out.push('Error: mount(8) is not on PATH');
  if (!root) {
    if (!have('unshare') || !have('nsenter')) out.push('Error: unshare/nsenter (util-linux) are needed for unprivileged mounts');
    try {
      const max = Number((await readFile('/proc/sys/user/max_user_namespaces', 'utf8')).trim());
      if (max === 0) out.push('Error: user namespaces are disabled (user.max_user_namespaces = 0)');
    } catch { /* not Linux-like: mount will say */ }
  } else if (!existsSync('/sbin/mount.gridbox')) out.push('Warning: /sbin/mount.gridbox is missing: mount -t gridbox and autofs need it (gridbox config setup)');
  const repos = await configuredRepositories().catch((e: unknown) => { out.push(`Error: ${describeError(e)}`); return []; });
  if (repos.length === 0) out.push('Warning: no repositories configured (CVMFS_REPOSITORIES or config.d)');
  const caches = new Set<string>();
  for (const r of repos) {
    try {
      const s = await loadClientSettings(r, {});
      await loadMasterKeys(s);
      caches.add(s.cacheBase);
    } catch (e) {
      out.push(`Error: ${r}: ${describeError(e)}`);
    }
  }
  for (const c of caches) {
    try {
      await mkdir(c, { recursive: true });
      await access(c, constants.W_OK | constants.X_OK);
      const probe = join(c, `.chksetup-${process.pid}`);
      await writeFile(probe, '');
      await rm(probe);
    } catch (e) {
      out.push(`Error: cache directory ${q(c)} is not writable: ${(e as Error).message}`);
    }
  }
  return out;
}
