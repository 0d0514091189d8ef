// `gridbox mount-helper`: what util-linux runs as /sbin/mount.gridbox for `mount -t gridbox <fqrn> <dir>`,
// fstab lines and autofs maps: `mount.gridbox spec dir [-sfnv] [-N ns] [-o options] [-t type]`. Generic
// options (ro, nodev, _netdev, noauto, x-*…) are accepted and ignored as mount.cvmfs does; gridbox's own
// are config=, server=, keys=, key=, cache=, proxy=, idle=. The spec `gridbox-automount` mounts the
// on-demand view of every configured repository (an fstab line for /cvmfs without autofs).
import { GridboxError, q } from '../../errors.js';
import { say } from '../options.js';
import { effectiveParams, fullName, mountAllowed } from './config-params.js';

export const summary = 'mount helper for mount -t gridbox (installed as /sbin/mount.gridbox by gridbox config setup)';

/** The spec that mounts the on-demand /cvmfs (every configured repository) instead of one repository. */
export const AUTOMOUNT_SPEC = 'gridbox-automount';

const OWN = new Set(['config', 'server', 'keys', 'key', 'cache', 'proxy', 'idle']);
/** Options mount(8), fstab and autofs pass that mean nothing to a read-only FUSE repository mount. */
const GENERIC = new Set([
  'ro', 'rw', 'defaults', 'auto', 'noauto', 'user', 'nouser', 'users', 'owner', 'group', 'dev', 'nodev', 'suid', 'nosuid',
  'exec', 'noexec', 'sync', 'async', 'atime', 'noatime', 'relatime', 'norelatime', 'nodiratime', 'diratime',
  '_netdev', 'nofail', 'fg', 'bg', 'silent', 'loud', 'allow_other', 'default_permissions', 'userns',
]);

export interface HelperArgs { spec: string; dir: string; fake: boolean; verbose: boolean; own: Record<string, string>; userns: boolean }

/** Parses the helper's command line (spec dir [-sfnv] [-N ns] [-o opts] [-t type], in any order after spec dir). */
export function parseHelperArgs(argv: string[]): HelperArgs {
  const pos: string[] = [];
  let sloppy = false, fake = false, verbose = false;
  const opts: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-o' || a === '-N' || a === '-t') {
      const v = argv[++i];
      if (v === undefined) throw new GridboxError('USAGE', `mount.gridbox: ${a} needs a value`);
      if (a === '-o') opts.push(...v.split(',').filter((x) => x !== ''));
    } else if (/^-[sfnvrw]+$/.test(a)) {
      sloppy ||= a.includes('s'); fake ||= a.includes('f'); verbose ||= a.includes('v');
      if (a.includes('r')) opts.push('ro');
    } else if (a.startsWith('-')) {
      throw new GridboxError('USAGE', `mount.gridbox: unknown flag ${q(a)} (usage: mount.gridbox <fqrn> <dir> [-sfnv] [-o options])`);
    } else pos.push(a);
  }
  if (pos.length !== 2) throw new GridboxError('USAGE', 'usage: mount.gridbox <fqrn> <mountpoint> [-sfnv] [-o options]');
  // autofs passes ":fqrn" for a map entry's location.
  const spec = pos[0].replace(/^:/, '');
  const own: Record<string, string> = {};
  let userns = false;
  for (const o of opts) {
    const eq = o.indexOf('=');
    const k = eq < 0 ? o : o.slice(0, eq);
    if (OWN.has(k) && eq > 0) own[k] = o.slice(eq + 1);
    else if (k === 'userns') userns = true;
    else if (GENERIC.has(k) || k.startsWith('x-') || k.startsWith('comment=') || /^(uid|gid|fsname|subtype|context)$/.test(k)) continue;
    else if (!sloppy) throw new GridboxError('USAGE', `mount.gridbox: unknown option ${q(o)} (gridbox's own: ${[...OWN].map((x) => `${x}=`).join(', ')}, userns; -s ignores unknown ones)`);
  }
  if (spec !== AUTOMOUNT_SPEC && !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(spec)) throw new GridboxError('USAGE', `mount.gridbox: ${q(spec)} is not a repository name`);
  return { spec, dir: pos[1], fake, verbose, own, userns };
}

/** The gridbox command line the helper runs for these arguments. */
export function helperCommand(h: HelperArgs): string[] {
  const flag = (k: string): string[] => (h.own[k] === undefined ? [] : [`--${k}`, h.own[k]]);
  const client = ['config', 'server', 'keys', 'key', 'cache', 'proxy'].flatMap(flag);
  if (h.spec === AUTOMOUNT_SPEC) return ['automount', h.dir, ...client, ...flag('idle'), ...(h.userns ? ['--userns'] : [])];
  if (h.own.idle !== undefined) throw new GridboxError('USAGE', `mount.gridbox: idle= applies to ${AUTOMOUNT_SPEC} only`);
  return ['mount', h.spec, h.dir, ...client, ...(h.userns ? ['--userns'] : [])];
}

export async function run(argv: string[]): Promise<number> {
  const h = parseHelperArgs(argv);
  if (h.spec !== AUTOMOUNT_SPEC) {
    // As mount.cvmfs: a short name gets CVMFS_DEFAULT_DOMAIN; CVMFS_STRICT_MOUNT limits to CVMFS_REPOSITORIES.
    const domain = (await effectiveParams(undefined, { config: h.own.config })).get('CVMFS_DEFAULT_DOMAIN')?.value;
    if (!h.spec.includes('.') && !domain) throw new GridboxError('CONFIG_INVALID', `mount.gridbox: ${q(h.spec)} is not a full name and CVMFS_DEFAULT_DOMAIN is not set`);
    h.spec = fullName(h.spec, domain);
    if (!(await mountAllowed(h.spec, { config: h.own.config }))) throw new GridboxError('CONFIG_INVALID', `Not allowed to mount ${h.spec}, add it to CVMFS_REPOSITORIES (CVMFS_STRICT_MOUNT is on)`);
  }
  const args = helperCommand(h);
  if (h.verbose || h.fake) say(`mount.gridbox: gridbox ${args.join(' ')}`);
  if (h.fake) return 0;
  const mod = (await import(`./${args[0]}.js`)) as { run(a: string[]): Promise<number> };
  return mod.run(args.slice(1));
}
