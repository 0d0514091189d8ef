// The glidein-side container setup (GlideinWMS's singularity_setup.sh, runtime-contract.md §2.2-2.5):
// negotiate GLIDEIN_Singularity_Use x GLIDEIN_SINGULARITY_REQUIRE, check the image dictionary on the
// repository mount, find and test a runtime, and say what to advertise. Returns plain data; the CLI
// writes glidein_config, condor_vars.lst and the JSON. Not the job wrapper (see job-invocation.ts).
import type { Advertised } from './glidein-config.js';
import { combineRequirements, type Negotiated } from './negotiate.js';
import { formatImagesDict, lookupImage, parseImagesDict, translateCvmfsPath } from './images.js';
import { locateRuntime, runtimeCandidates, type ProbeResult, type Runner } from './runtime-probe.js';

/** The platform list singularity_setup.sh selects the glidein's default image with. */
export const SETUP_PLATFORMS = ['default', 'rhel9', 'rhel7', 'rhel6', 'rhel8'];

export interface ImageCheck {
  key: string;
  image: string;
  /** Where it is on this node (CVMFS_MOUNT_DIR applied). */
  local: string;
  ok: boolean;
  problem?: string;
}

export interface SetupInputs {
  config: Map<string, string>;
  env: Record<string, string>;
  /** Directory the binary test runs in (bound as /srv), normally the glidein's work dir. */
  workDir: string;
  gridboxShim?: string;
  exists: (path: string) => boolean;
  isExecutable: (path: string) => boolean;
  /** True when a directory has entries (an unmounted repository is an empty mountpoint, or absent). */
  hasEntries: (dir: string) => boolean;
  run: Runner;
}

export interface SetupOutcome {
  /** 0: the glidein goes on; 1: the glidein fails (error_gen -error). */
  exitCode: 0 | 1;
  status: Negotiated;
  /** Whether jobs get containers (HAS_SINGULARITY). */
  containers: boolean;
  reason: string;
  advertise: Advertised[];
  images: ImageCheck[];
  testImage?: string;
  runtime?: ProbeResult;
  tried: ProbeResult[];
  /** Each decision and why, in order (for `pilot explain` and the log). */
  decisions: string[];
}

const truthy = (v: string | undefined): boolean => /^(true|t|yes|y|[1-9]\d*)$/i.test((v ?? '').replace(/[\s"']/g, ''));

/** Checks one image: under /cvmfs when restricted, its repository mounted, the path present. */
export function checkImage(key: string, image: string, o: { restrictions: string[]; cvmfsMountDir?: string; exists: (p: string) => boolean; hasEntries: (d: string) => boolean }): ImageCheck {
  const local = translateCvmfsPath(image, o.cvmfsMountDir);
  const base = { key, image, local };
  if (/^[a-z]+:\/\//.test(image)) {
    return o.restrictions.includes('remote') ? { ...base, ok: true } : { ...base, ok: false, problem: `remote image ${JSON.stringify(image)} is not allowed (restrictions ${o.restrictions.join(',')})` };
  }
  const inCvmfs = image === '/cvmfs' || image.startsWith('/cvmfs/');
  if (o.restrictions.includes('cvmfs') && !inCvmfs) return { ...base, ok: false, problem: `image ${JSON.stringify(image)} is not in CVMFS as requested` };
  if (inCvmfs) {
    const repo = image.split('/')[2] ?? '';
    const repoDir = translateCvmfsPath(`/cvmfs/${repo}`, o.cvmfsMountDir);
    if (repo === '' || !o.hasEntries(repoDir)) return { ...base, ok: false, problem: `repository ${repo} is not mounted at ${repoDir}` };
  }
  if (!o.exists(local)) return { ...base, ok: false, problem: `image ${JSON.stringify(image)} does not exist (${local})` };
  return { ...base, ok: true };
}

export async function runSetup(i: SetupInputs): Promise<SetupOutcome> {
  const cfg = (k: string): string | undefined => i.config.get(k);
  const fromEnvOrCfg = (k: string): string | undefined => i.env[k] ?? cfg(k);
  const decisions: string[] = [];
  const advertise: Advertised[] = [];
  const ad = (key: string, value: string, type: Advertised['type']): void => { advertise.push({ key, value, type }); };
  const use = cfg('GLIDEIN_Singularity_Use');
  const req = cfg('GLIDEIN_SINGULARITY_REQUIRE');
  const n = combineRequirements(use, req);
  decisions.push(`policy: ${n.reason}${(use ?? '') === '' ? ' (GLIDEIN_Singularity_Use unset: DISABLE_GWMS)' : ''}${(req ?? '') === '' ? ' (GLIDEIN_SINGULARITY_REQUIRE unset: OPTIONAL)' : ''}`);
  const base = { status: n.result, images: [] as ImageCheck[], tried: [] as ProbeResult[], decisions, advertise };
  if (n.result === 'FAIL') return { ...base, exitCode: 1, containers: false, reason: n.reason };
  if (n.result === 'DISABLE') {
    decisions.push('DISABLE: the VO manages containers itself; nothing advertised');
    return { ...base, exitCode: 0, containers: false, reason: 'containers left to the VO (DISABLE_GWMS)' };
  }
  const noContainers = (reason: string): SetupOutcome => {
    ad('HAS_SINGULARITY', 'False', 'C');
    return { ...base, exitCode: 0, containers: false, reason };
  };
  if (n.result === 'NEVER') {
    decisions.push('NEVER: advertise HAS_SINGULARITY False');
    return noContainers('containers not used (NEVER)');
  }
  const status = n.result;
  /** no_singularity_fail_or_exit: REQUIRED fails the glidein, PREFERRED advertises no containers. */
  const failOrNoContainers = (why: string, extra: Partial<SetupOutcome>): SetupOutcome => {
    if (status === 'REQUIRED') {
      decisions.push(`REQUIRED and ${why}: the glidein fails`);
      return { ...base, ...extra, exitCode: 1, containers: false, reason: why };
    }
    decisions.push(`PREFERRED and ${why}: no containers (HAS_SINGULARITY False)`);
    return { ...noContainers(why), ...extra };
  };

  const restrictions = (cfg('SINGULARITY_IMAGE_RESTRICTIONS') || 'cvmfs').split(',').map((s) => s.trim()).filter((s) => s !== '');
  const dict = parseImagesDict(cfg('SINGULARITY_IMAGES_DICT'), {
    SINGULARITY_IMAGE_DEFAULT6: cfg('SINGULARITY_IMAGE_DEFAULT6'), SINGULARITY_IMAGE_DEFAULT7: cfg('SINGULARITY_IMAGE_DEFAULT7'), SINGULARITY_IMAGE_DEFAULT: cfg('SINGULARITY_IMAGE_DEFAULT'),
  });
  const cvmfsMountDir = fromEnvOrCfg('CVMFS_MOUNT_DIR');
  const checkOpts = { restrictions, cvmfsMountDir, exists: i.exists, hasEntries: i.hasEntries };
  const images = dict.keys.filter((k) => (dict.values.get(k) ?? '') !== '').map((k) => checkImage(k, dict.values.get(k)!, checkOpts));
  base.images = images;
  for (const c of images) decisions.push(`image ${c.key}: ${c.image} ${c.ok ? `present at ${c.local}` : `NOT usable: ${c.problem}`}`);

  const chosen = lookupImage(dict, SETUP_PLATFORMS);
  const chosenCheck = chosen === undefined ? undefined : images.find((c) => c.image === chosen);
  let testImage: string | undefined;
  if (chosenCheck?.ok) {
    testImage = chosenCheck.image;
    decisions.push(`default image for ${SETUP_PLATFORMS.join(',')}: ${chosenCheck.image}`);
  } else {
    const why = chosen === undefined
      ? `no Singularity image for the default platforms (${SETUP_PLATFORMS.join(',')}) in SINGULARITY_IMAGES_DICT`
      : `the default image ${chosen} is not usable: ${chosenCheck?.problem ?? 'unknown'}`;
    if (truthy(cfg('SINGULARITY_IMAGE_REQUIRED'))) return failOrNoContainers(`${why} (SINGULARITY_IMAGE_REQUIRED)`, { images });
    decisions.push(`${why}; SINGULARITY_IMAGE_REQUIRED is false, so only a warning`);
    // The test image: GWMS_SINGULARITY_IMAGE_DEFAULT, then APPTAINER_TEST_IMAGE, if readable. We never pull
    // GlideinWMS's last resort (oras://ghcr.io/apptainer/alpine:latest).
    for (const name of ['GWMS_SINGULARITY_IMAGE_DEFAULT', 'APPTAINER_TEST_IMAGE']) {
      const v = fromEnvOrCfg(name);
      if (v && i.exists(translateCvmfsPath(v, cvmfsMountDir))) { testImage = v; decisions.push(`test image from ${name}: ${v}`); break; }
    }
  }
  if (testImage === undefined) decisions.push('no readable test image: a runtime cannot be tested');

  const candidates = runtimeCandidates({
    override: fromEnvOrCfg('GLIDEIN_SINGULARITY_BINARY_OVERRIDE'), singularityBin: cfg('SINGULARITY_BIN')?.trim(),
    osgBinary: cfg('OSG_SINGULARITY_BINARY') || i.env.OSG_SINGULARITY_BINARY, condorDir: cfg('CONDOR_DIR'),
    pathEnv: i.env.PATH, gridboxShim: i.gridboxShim, isExecutable: i.isExecutable,
  });
  decisions.push(`runtime candidates: ${candidates.length === 0 ? 'none' : candidates.map((c) => `${c.step}:${c.path}`).join(' ')}`);
  const located = testImage === undefined
    ? { tried: [] as ProbeResult[], found: undefined }
    : await locateRuntime(candidates, {
      testImage, cwd: i.workDir, env: i.env, cvmfsMountDir, exists: i.exists, run: i.run,
      disablePidNamespaces: cfg('SINGULARITY_DISABLE_PID_NAMESPACES') === '1',
    });
  base.tried = located.tried;
  for (const t of located.tried) decisions.push(`runtime ${t.candidate.path}: ${t.ok ? 'works' : 'rejected'}, ${t.detail}`);
  const rt = located.found;
  if (rt === undefined) {
    const last = located.tried.at(-1);
    const why = testImage === undefined
      ? 'no image to test a runtime with'
      : candidates.length === 0 ? 'no apptainer or singularity found' : `no working runtime (${last ? `${last.candidate.path}: ${last.detail}` : 'none tried'})`;
    return failOrNoContainers(why, { images, testImage });
  }
  const mode = rt.mode ?? 'unknown';
  ad('HAS_SINGULARITY', 'True', 'C');
  ad('GWMS_SINGULARITY_STATUS', status, 'S');
  for (const [k, v] of [['PATH', rt.candidate.path], ['VERSION', rt.version ?? ''], ['MODE', mode]] as const) {
    ad(`SINGULARITY_${k}`, v, 'S');
    ad(`GWMS_SINGULARITY_${k}`, v, 'S');
  }
  ad('SINGULARITY_FULL_VERSION', rt.fullVersion ?? '', 'S');
  for (const [k, v] of [['PATH', rt.candidate.path], ['VERSION', rt.version ?? ''], ['FULL_VERSION', rt.fullVersion ?? ''], ['MODE', mode]] as const) {
    ad(`GWMS_CONTAINERSW_${k}`, v, 'S');
  }
  ad('SINGULARITY_IMAGES_DICT', formatImagesDict(dict), 'S');
  ad('GLIDEIN_REQUIRED_OS', 'any', 'S');
  const debug = cfg('GLIDEIN_DEBUG_OUTPUT');
  if (debug) ad('GLIDEIN_DEBUG_OUTPUT', debug, 'S');
  const provides = cfg('GLIDEIN_PROVIDES');
  ad('GLIDEIN_PROVIDES', `${provides ? `${provides},` : ''}singularity/${mode}`, 'S');
  decisions.push(`containers on (${status}): ${rt.candidate.path} version ${rt.version}, ${mode} mode`);
  return { ...base, exitCode: 0, containers: true, reason: `using ${rt.candidate.path} (${status})`, images, testImage, runtime: rt };
}
