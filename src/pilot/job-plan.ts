// What the GlideinWMS user-job wrapper decides for one job (default_singularity_wrapper.sh with
// singularity_lib.sh, runtime-contract.md §2.2-2.4, 2.9): container or not, which image, the repositories the
// job needs, and why — each step recorded for `gridbox pilot explain`. File-system facts come in as
// functions, so the decisions are table-tested; the CLI runs the plan.
import { adString, propBool, propStr, type ClassAd } from './classad.js';
import { combineRequirements, effectiveStatus, mayFallBack, type Negotiated } from './negotiate.js';
import { desiredOs, parseImagesDict, selectImage, translateCvmfsPath } from './images.js';
import { buildJobInvocation, type JobInvocation } from './job-invocation.js';

export interface JobPlanInputs {
  command: string[];
  cwd: string;
  env: Record<string, string>;
  glideinConfig: Map<string, string>;
  jobAd: ClassAd;
  machineAd: ClassAd;
  /** Whether a machine ad was given (without one, the policy comes from glidein_config as in a test run). */
  haveMachineAd: boolean;
  /** Runtime path from the command line; otherwise the machine ad's SINGULARITY_PATH. */
  runtime?: string;
  statusOverride?: string;
  exists: (path: string) => boolean;
  /** The physical path (GlideinWMS pins the image with `cd; pwd -P`). */
  realpath: (path: string) => string;
  hasEntries: (dir: string) => boolean;
  pid?: number;
}

export type JobPlan =
  | { action: 'container'; decisions: string[]; status: string; image: string; imageHuman: string; imageKey?: string; runtime?: string; invocation: JobInvocation }
  | { action: 'direct'; decisions: string[]; status: string; reason: string }
  | { action: 'fail'; decisions: string[]; status: string; reason: string };

export function planJob(i: JobPlanInputs): JobPlan {
  const decisions: string[] = [];
  const cfg = (k: string): string | undefined => i.env[k] ?? i.glideinConfig.get(k);
  const cvmfsMountDir = cfg('CVMFS_MOUNT_DIR');

  // Status: the machine ad (what setup advertised), else negotiate from glidein_config / environment.
  let status: string;
  const adStatus = i.haveMachineAd ? propStr(i.machineAd, 'GWMS_SINGULARITY_STATUS') : '';
  if (i.statusOverride) { status = i.statusOverride; decisions.push(`status ${status} (--status)`); } else if (adStatus !== '') {
    status = adStatus;
    decisions.push(`status ${status} from the machine ad GWMS_SINGULARITY_STATUS`);
  } else if (i.env.GWMS_SINGULARITY_STATUS) {
    status = i.env.GWMS_SINGULARITY_STATUS;
    decisions.push(`status ${status} from the environment GWMS_SINGULARITY_STATUS`);
  } else {
    const n = combineRequirements(cfg('GLIDEIN_Singularity_Use'), cfg('GLIDEIN_SINGULARITY_REQUIRE'));
    decisions.push(`status ${n.result}: ${n.reason}`);
    if (n.result === 'FAIL') return { action: 'fail', decisions, status: n.result, reason: `container negotiation failed: ${n.reason}` };
    status = n.result;
  }
  const jobImage = propStr(i.jobAd, 'SingularityImage');
  const effective = effectiveStatus(status as Negotiated, jobImage !== '');
  if (jobImage !== '') decisions.push(`the job names its image (+SingularityImage = ${jobImage}): containers required for it, no fallback`);
  const fail = (reason: string): JobPlan => { decisions.push(`fail: ${reason}`); return { action: 'fail', decisions, status: effective, reason }; };
  const direct = (reason: string): JobPlan => { decisions.push(`run without a container: ${reason}`); return { action: 'direct', decisions, status: effective, reason }; };
  const fallBackOrFail = (problem: string): JobPlan => (mayFallBack(status as Negotiated, effective) ? direct(`${problem} (PREFERRED allows the fallback)`) : fail(`${problem} (status ${effective})`));

  // CVMFSReposList: every repository the job lists must be there (opened, as the wrapper does), fallback or not.
  const repos = propStr(i.jobAd, 'CVMFSReposList').split(',').map((r) => r.trim()).filter((r) => r !== '');
  for (const repo of repos) {
    const dir = translateCvmfsPath(`/cvmfs/${repo}`, cvmfsMountDir);
    if (!i.hasEntries(dir)) return fail(`CVMFS repository ${repo} required by the job (CVMFSReposList) is not mounted at ${dir}`);
    decisions.push(`repository ${repo} (CVMFSReposList) is mounted at ${dir}`);
  }

  if (status === 'NEVER' || status === 'DISABLE') {
    return jobImage !== '' ? fail(`the job wants image ${jobImage} but this glidein does not run containers (${status})`) : direct(`status ${status}`);
  }
  if (i.haveMachineAd && !propBool(i.machineAd, 'HAS_SINGULARITY', false)) {
    return fallBackOrFail('the machine ad says HAS_SINGULARITY is false (no working runtime on this glidein)');
  }

  const dictText = i.env.SINGULARITY_IMAGES_DICT ?? i.glideinConfig.get('SINGULARITY_IMAGES_DICT');
  const dict = parseImagesDict(dictText, i.env);
  const glideinOs = (i.haveMachineAd ? propStr(i.machineAd, 'GLIDEIN_REQUIRED_OS') : '') || 'any';
  const jobOs = propStr(i.jobAd, 'REQUIRED_OS') || 'any';
  if (jobImage === '') decisions.push(`platforms: glidein ${glideinOs} x job REQUIRED_OS ${jobOs} -> ${desiredOs(glideinOs, jobOs).join(',') || '(none in common)'}`);
  const restrictions = (cfg('SINGULARITY_IMAGE_RESTRICTIONS') || 'cvmfs').split(',').map((s) => s.trim());
  const choice = selectImage({ jobImage: jobImage || undefined, dict, glideinRequiredOs: glideinOs, jobRequiredOs: jobOs, restrictions, cvmfsRoot: '/cvmfs' });
  if (!choice.ok) return fallBackOrFail(choice.reason);
  const key = choice.source === 'dict' ? dict.keys.find((k) => dict.values.get(k) === choice.image) : undefined;
  decisions.push(choice.source === 'job' ? `image ${choice.image} from the job ad` : `image ${choice.image} from SINGULARITY_IMAGES_DICT key ${key}`);
  const local = translateCvmfsPath(choice.image, cvmfsMountDir);
  if (choice.image.startsWith('/cvmfs/')) {
    const repo = choice.image.split('/')[2];
    const repoDir = translateCvmfsPath(`/cvmfs/${repo}`, cvmfsMountDir);
    if (!i.hasEntries(repoDir)) return fallBackOrFail(`Unable to access the Singularity image ${choice.image}: repository ${repo} is not mounted at ${repoDir}`);
  }
  if (!i.exists(local)) return fallBackOrFail(`Unable to access the Singularity image ${choice.image} (${local})`);
  // Pin the physical tree so a moving tag symlink cannot swap the image under a running job.
  const image = i.realpath(local);
  if (image !== local) decisions.push(`image pinned to its physical path ${image}`);

  const runtime = i.runtime ?? (i.haveMachineAd ? propStr(i.machineAd, 'SINGULARITY_PATH') || undefined : undefined) ?? i.env.GWMS_SINGULARITY_PATH;
  decisions.push(`runtime: ${runtime ?? 'gridbox (built in)'}`);
  const invocation = buildJobInvocation({
    runtime: runtime ?? 'apptainer', image, command: i.command, cwd: i.cwd, env: i.env, glideinConfig: i.glideinConfig,
    exists: i.exists, gpus: Number(adString(i.machineAd, 'GPUs') ?? 0) || 0, pid: i.pid,
  });
  if (invocation.dropped.length > 0) decisions.push(`binds dropped (source missing on this node): ${invocation.dropped.join(',')}`);
  decisions.push(`run in a container (${effective})`);
  return { action: 'container', decisions, status: effective, image, imageHuman: choice.image, imageKey: key, runtime, invocation };
}
