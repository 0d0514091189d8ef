// Finds and tests a container runtime the way GlideinWMS's singularity_locate_bin/singularity_test_bin do
// (runtime-contract.md §2.5): an ordered candidate list, `--version` and `version`, then `cat
// /proc/self/uid_map` run in the test image with the wrapper's flags, whose first line gives the mode.
// The process runner is a parameter, so the order and the verdicts are table-tested without spawning.
import { classifyMode } from './negotiate.js';
import { translateCvmfsPath } from './images.js';

export interface RuntimeCandidate {
  /** GlideinWMS's step name (s_override, s_bin, s_bin_OSG, s_bin_CONDOR, PATH, gridbox). */
  step: string;
  path: string;
}

export interface CandidateInputs {
  /** GLIDEIN_SINGULARITY_BINARY_OVERRIDE: an executable, or a colon list of directories. */
  override?: string;
  /** SINGULARITY_BIN: OSG (default), CONDOR, PATH, GRIDBOX, or a directory. */
  singularityBin?: string;
  osgBinary?: string;
  condorDir?: string;
  pathEnv?: string;
  /** Our own shim (an `apptainer` written by install-shims): the candidate when SINGULARITY_BIN=GRIDBOX (a site's explicit choice). */
  gridboxShim?: string;
  isExecutable: (path: string) => boolean;
}

const OSG_DEFAULT = '/cvmfs/oasis.opensciencegrid.org/mis/singularity/bin/singularity';

function searchDirs(dirs: string, names: string[], isExecutable: (p: string) => boolean): string | undefined {
  // `PATH=dirs command -v name`, each name over all directories before the next name.
  for (const name of names) {
    for (const d of dirs.split(':')) {
      if (d === '') continue;
      const p = `${d.replace(/\/+$/, '')}/${name}`;
      if (isExecutable(p)) return p;
    }
  }
  return undefined;
}

/**
 * The candidates in GlideinWMS's order, each at most once: override, SINGULARITY_BIN (OSG by default),
 * apptainer then singularity in PATH, HTCondor's tarball apptainer, the OSG location. Ours only when the site
 * says SINGULARITY_BIN=GRIDBOX (or points the override or PATH at a shim), never as a silent last resort, so a
 * broken site runtime is reported rather than papered over.
 * Environment modules (steps 6-7 of singularity_locate_bin) are not tried: no `module` command here.
 */
export function runtimeCandidates(i: CandidateInputs): RuntimeCandidate[] {
  const out: RuntimeCandidate[] = [];
  const add = (step: string, path: string | undefined): void => {
    if (path !== undefined && !out.some((c) => c.path === path)) out.push({ step, path });
  };
  const osg = i.osgBinary && i.osgBinary !== '' ? i.osgBinary : OSG_DEFAULT;
  const condorApptainer = `${(i.condorDir ?? 'main/condor').replace(/\/+$/, '')}/usr/libexec/apptainer`;
  const override = i.override?.trim();
  if (override) {
    if (i.isExecutable(override)) add('s_override', override);
    else add('s_override', searchDirs(override, ['singularity', 'apptainer'], i.isExecutable));
  }
  const loc = (i.singularityBin ?? '').trim() === '' ? 'OSG' : i.singularityBin!.trim();
  if (loc === 'GRIDBOX') {
    if (i.gridboxShim && i.isExecutable(i.gridboxShim)) add('gridbox', i.gridboxShim);
  } else if (loc !== 'PATH' && loc !== 'PASS') {
    const dir = loc === 'OSG' ? osg.replace(/\/singularity$/, '') : loc === 'CONDOR' ? condorApptainer.replace(/\/apptainer$/, '') : loc;
    const step = loc === 'OSG' ? 's_bin_OSG' : loc === 'CONDOR' ? 's_bin_CONDOR' : 's_bin';
    add(step, searchDirs(dir, ['apptainer', 'singularity'], i.isExecutable));
  }
  add('PATH', searchDirs(i.pathEnv ?? '', ['apptainer'], i.isExecutable));
  add('PATH', searchDirs(i.pathEnv ?? '', ['singularity'], i.isExecutable));
  if (i.isExecutable(condorApptainer)) add('condor', condorApptainer);
  if (i.isExecutable(osg)) add('osg', osg);
  return out;
}

export interface RunResult { code: number | null; stdout: string; stderr: string }
export type Runner = (argv: string[], opts: { env: Record<string, string>; cwd: string; timeoutMs: number }) => Promise<RunResult>;

export interface ProbeContext {
  /** The image the binary is tested with (a local path; we never pull). */
  testImage?: string;
  /** Where the test runs (bound as /srv). */
  cwd: string;
  env: Record<string, string>;
  cvmfsMountDir?: string;
  disablePidNamespaces?: boolean;
  exists: (path: string) => boolean;
  run: Runner;
  timeoutMs?: number;
}

export interface ProbeResult {
  ok: boolean;
  candidate: RuntimeCandidate;
  /** `version` output, or `--version` with its "apptainer version " prefix removed. */
  version?: string;
  fullVersion?: string;
  mode?: 'privileged' | 'fakeroot' | 'unprivileged' | 'unknown';
  /** Why the candidate was rejected, or what the test printed. */
  detail: string;
  argv?: string[];
}

const words = (s: string | undefined): string[] => (s ?? '').split(/\s+/).filter((w) => w !== '');
// eslint-disable-next-line no-control-regex
const stripAnsi = (s: string): string => s.replace(/\x1b\[[0-9;]*m?/g, '').replace(/\x1b[()][A-Z0-9]/g, '');

/** `singularity_exec_simple`'s argv for the binary test (binds: /cvmfs, /etc/hosts, /etc/localtime if they exist). */
export function testExecArgv(bin: string, image: string, ctx: Pick<ProbeContext, 'cwd' | 'env' | 'cvmfsMountDir' | 'disablePidNamespaces' | 'exists'>): string[] {
  const mountDir = ctx.cvmfsMountDir && ctx.cvmfsMountDir !== '/cvmfs' ? ctx.cvmfsMountDir : undefined;
  const binds = [mountDir ? `${mountDir}:/cvmfs` : '/cvmfs', '/etc/hosts', '/etc/localtime']
    .filter((b) => ctx.exists(b.split(':')[0]));
  const global = [...(ctx.env.GLIDEIN_DEBUG_OUTPUT ? ['-vvv', '-d'] : []), ...words(ctx.env.GLIDEIN_SINGULARITY_GLOBAL_OPTS)];
  const extra = words(ctx.env.GLIDEIN_SINGULARITY_OPTS);
  const clearAll = /(^|,)(clearall|clear)(,|$)/.test(ctx.env.GLIDEIN_CONTAINER_ENV ?? '');
  return [
    bin, ...global, 'exec', '--home', `${ctx.cwd}:/srv`, '--pwd', '/srv', '--ipc', '--contain', ...extra,
    ...(ctx.disablePidNamespaces ? [] : ['--pid']), ...(clearAll ? ['--cleanenv'] : []),
    ...(binds.length > 0 ? ['--bind', binds.join(',')] : []),
    translateCvmfsPath(image, ctx.cvmfsMountDir), 'cat', '/proc/self/uid_map',
  ];
}

/** `singularity_test_bin`: version probes, then the uid_map test in the test image. */
export async function probeRuntime(candidate: RuntimeCandidate, ctx: ProbeContext): Promise<ProbeResult> {
  const timeoutMs = ctx.timeoutMs ?? 120_000;
  const opts = { env: ctx.env, cwd: ctx.cwd, timeoutMs };
  let full: RunResult;
  try {
    full = await ctx.run([candidate.path, '--version'], opts);
  } catch (e) {
    return { ok: false, candidate, detail: `cannot run ${candidate.path}: ${(e as Error).message}` };
  }
  const fullVersion = full.stdout.trim();
  const v = await ctx.run([candidate.path, 'version'], opts).catch(() => ({ code: 1, stdout: '', stderr: '' }) as RunResult);
  const version = v.code === 0 ? v.stdout.trim() : fullVersion.replace(/^singularity version /, '').replace(/^apptainer version /, '');
  if (version === '') return { ok: false, candidate, fullVersion, detail: `"${candidate.path} --version" printed no version (exit ${full.code}${full.stderr.trim() ? `: ${full.stderr.trim().split('\n').at(-1)}` : ''})` };
  if (ctx.testImage === undefined) return { ok: true, candidate, version, fullVersion, mode: 'unknown', detail: 'version only, no test image' };
  const argv = testExecArgv(candidate.path, ctx.testImage, ctx);
  const r = await ctx.run(argv, opts);
  const first = stripAnsi(r.stdout).split('\n')[0] ?? '';
  const mode = classifyMode(first);
  const errLine = r.stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '').at(-1);
  if (r.code !== 0) return { ok: false, candidate, version, fullVersion, argv, detail: `test in ${ctx.testImage} failed (exit ${r.code ?? 'killed'})${errLine ? `: ${errLine}` : ''}` };
  if (mode === undefined) return { ok: false, candidate, version, fullVersion, argv, detail: `test in ${ctx.testImage} exited 0 but printed unexpected output ${JSON.stringify(first)}` };
  return { ok: true, candidate, version, fullVersion, mode, argv, detail: `uid_map ${JSON.stringify(first.trim().replace(/\s+/g, ' '))} -> ${mode}` };
}

/** `singularity_locate_bin`: the first candidate that passes, with every attempt kept for the explanation. */
export async function locateRuntime(candidates: RuntimeCandidate[], ctx: ProbeContext): Promise<{ found?: ProbeResult; tried: ProbeResult[] }> {
  const tried: ProbeResult[] = [];
  for (const c of candidates) {
    const r = await probeRuntime(c, ctx);
    tried.push(r);
    if (r.ok) return { found: r, tried };
  }
  return { tried };
}
