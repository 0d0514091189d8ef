// Builds the runtime invocation the GlideinWMS job wrapper makes for a user job
// (runtime-contract.md §2.4, §2.6, §2.7): bind list, options, environment, argument rewriting.
// A pure function: the pilot CLI gathers the inputs, this returns plain data, the CLI runs it.
import { translateCvmfsPath } from './images.js';

export interface JobInvocationInput {
  /** Absolute path of the runtime (our apptainer shim, or a real apptainer). */
  runtime: string;
  image: string;
  /** The job's command and arguments as HTCondor passes them to the wrapper. */
  command: string[];
  /** The job's working directory outside (becomes /srv inside). */
  cwd: string;
  /** The wrapper's environment (job environment plus what the glidein published). */
  env: Record<string, string>;
  /** Values that fall back to glidein_config when absent from env. */
  glideinConfig: Map<string, string>;
  /** Host paths that exist; bind sources not in here are dropped (GlideinWMS's `e` check). */
  exists: (path: string) => boolean;
  gpus?: number;
  pid?: number;
}

export interface JobInvocation {
  argv: string[];
  env: Record<string, string>;
  binds: string[];
  dropped: string[];
}

const DEFAULT_JOB_BINDS = ['/hadoop', '/ceph', '/hdfs', '/lizard', '/mnt/hadoop', '/mnt/hdfs', '/etc/hosts', '/etc/localtime'];
const CLEARED_PATHS = ['LD_LIBRARY_PATH', 'PYTHONPATH', 'LD_PRELOAD'];

function setting(input: JobInvocationInput, name: string): string | undefined {
  return input.env[name] ?? input.glideinConfig.get(name);
}

/** Splits unquoted option strings the way the shell's word splitting does in the wrapper. */
function words(s: string | undefined): string[] {
  return (s ?? '').split(/\s+/).filter((w) => w !== '');
}

export function buildJobInvocation(input: JobInvocationInput): JobInvocation {
  const env = { ...input.env };
  const cvmfsMountDir = setting(input, 'CVMFS_MOUNT_DIR');
  const containerEnv = (setting(input, 'GLIDEIN_CONTAINER_ENV') ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  const envOpts = containerEnv.length === 0 ? ['clearpaths'] : containerEnv;
  const clearAll = envOpts.includes('clearall') || envOpts.includes('clear');

  // Bind list: override, frontend, factory, then the defaults; sources that do not exist are dropped.
  const candidates: string[] = [
    ...(env.GWMS_SINGULARITY_WRAPPER_BINDPATHS_OVERRIDE ?? '').split(','),
    ...(env.GLIDEIN_SINGULARITY_BINDPATH ?? '').split(','),
    ...(env.GLIDEIN_SINGULARITY_BINDPATH_DEFAULT ?? '').split(','),
    ...DEFAULT_JOB_BINDS,
  ].map((b) => b.trim()).filter((b) => b !== '');
  const bindCvmfs = (env.GWMS_SINGULARITY_BIND_CVMFS ?? '1') === '1' || input.image.startsWith('/cvmfs/');
  if (bindCvmfs) candidates.push(cvmfsMountDir && cvmfsMountDir !== '/cvmfs' ? `${cvmfsMountDir}:/cvmfs` : '/cvmfs');
  if ((input.gpus ?? 0) > 0 || env.GPU_USE === '1') candidates.push('/etc/OpenCL/vendors:/etc/OpenCL/vendors');
  const binds: string[] = [];
  const dropped: string[] = [];
  for (const b of candidates) {
    const src = translateCvmfsPath(b.split(':')[0], cvmfsMountDir);
    if (input.exists(src)) binds.push(b); else dropped.push(b);
  }

  const extraOpts = words(env.GLIDEIN_SINGULARITY_OPTS);
  if ((input.gpus ?? 0) > 0) extraOpts.push('--nv');
  const disablePid = setting(input, 'SINGULARITY_DISABLE_PID_NAMESPACES') === '1';
  const argv = [
    input.runtime,
    ...words(env.GWMS_SINGULARITY_GLOBAL_OPTS),
    'exec', '--home', `${input.cwd}:/srv`, '--pwd', '/srv', '--ipc', '--contain',
    ...extraOpts,
    ...(disablePid ? [] : ['--pid']),
    ...(clearAll ? ['--cleanenv'] : []),
    ...(binds.length > 0 ? ['--bind', binds.join(',')] : []),
    translateCvmfsPath(input.image, cvmfsMountDir),
    ...input.command.map((a) => rewritePath(a, input.cwd)),
  ];

  // Environment: clearpaths/clearall reset PATH and drop library paths, saving the old values.
  if (clearAll || envOpts.includes('clearpaths')) {
    for (const name of ['PATH', ...CLEARED_PATHS, ...words((setting(input, 'GLIDEIN_CONTAINER_ENV_CLEARLIST') ?? '').replaceAll(',', ' '))]) {
      if (env[name] !== undefined) env[`GWMS_OLDENV_${name}`] = env[name];
      delete env[name];
    }
    env.PATH = '/usr/bin:/bin';
  }
  const localTmp = setting(input, 'GLIDEIN_LOCAL_TMP_DIR');
  if (localTmp !== undefined) {
    for (const [k, sub] of [['APPTAINER_CACHEDIR', 'cache'], ['APPTAINER_TMPDIR', 'tmp'], ['SINGULARITY_CACHEDIR', 'cache'], ['SINGULARITY_TMPDIR', 'tmp']] as const) {
      env[k] ??= `${localTmp}/apptainer/${sub}`;
    }
  }
  const tmpDir = setting(input, 'GLIDEIN_Tmp_Dir');
  if (tmpDir !== undefined) {
    const work = `${tmpDir}/singularity-work.${input.pid ?? process.pid}`;
    env.APPTAINER_WORKDIR = work;
    env.SINGULARITY_WORKDIR = work;
  }
  env.GWMS_SINGULARITY_REEXEC = '1';
  return { argv, env, binds, dropped };
}

/** An argument equal to or under the outside working directory becomes the same path under /srv. */
export function rewritePath(arg: string, cwd: string): string {
  const base = cwd.replace(/\/+$/, '');
  if (arg === base) return '/srv';
  if (arg.startsWith(`${base}/`)) return `/srv/${arg.slice(base.length + 1)}`;
  return arg;
}
