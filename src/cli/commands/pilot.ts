// `gridbox pilot`: the GlideinWMS-style pieces a glidein runs.
//   pilot setup GLIDEIN_CONFIG  the glidein's container setup: negotiate, check images, test a runtime, advertise
//   pilot negotiate            print the combined container policy (GLIDEIN_Singularity_Use x GLIDEIN_SINGULARITY_REQUIRE)
//   pilot job [opts] -- CMD..  the user-job wrapper: pick the image, run CMD in it, pass back its exit code
// Inputs come from the environment, glidein_config (--glidein-config or $GLIDEIN_CONFIG) and the
// job ClassAd ($_CONDOR_JOB_AD or --job-ad), as in GlideinWMS.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, realpathSync, appendFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants } from 'node:os';
import { Command } from 'commander';
import { combineRequirements, effectiveStatus, mayFallBack, type Negotiated } from '../../pilot/negotiate.js';
import { parseImagesDict, selectImage, translateCvmfsPath } from '../../pilot/images.js';
import { adString, parseClassAd, parseGlideinConfig, type ClassAd } from '../../pilot/classad.js';
import { buildJobInvocation } from '../../pilot/job-invocation.js';
import { setupCommand } from './pilot-setup.js';

function readOptional(path: string | undefined): string {
  return path !== undefined && path !== '' && existsSync(path) ? readFileSync(path, 'utf8') : '';
}

function envRecord(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) out[k] = v;
  return out;
}

/** Our own runtime, reached without PATH: the compiled CLI with the node running us now. */
function defaultRuntime(): string[] {
  const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'main.js');
  return [process.execPath, main];
}

async function runJob(cmd: string[], opts: { glideinConfig?: string; jobAd?: string; runtime?: string; status?: string }): Promise<number> {
  const env = envRecord();
  const gc = parseGlideinConfig(readOptional(opts.glideinConfig ?? env.GLIDEIN_CONFIG));
  const jobAd: ClassAd = parseClassAd(readOptional(opts.jobAd ?? env._CONDOR_JOB_AD));
  const machineAd: ClassAd = parseClassAd(readOptional(env._CONDOR_MACHINE_AD));
  const fail = (msg: string): number => {
    process.stderr.write(`gridbox pilot: ${msg}\n`);
    if (env._CONDOR_WRAPPER_ERROR_FILE) appendFileSync(env._CONDOR_WRAPPER_ERROR_FILE, `${msg}\n`);
    return 1;
  };

  let status = (opts.status ?? adString(machineAd, 'GWMS_SINGULARITY_STATUS') ?? env.GWMS_SINGULARITY_STATUS) as Negotiated | undefined;
  if (status === undefined) {
    const n = combineRequirements(env.GLIDEIN_Singularity_Use ?? gc.get('GLIDEIN_Singularity_Use'), env.GLIDEIN_SINGULARITY_REQUIRE ?? gc.get('GLIDEIN_SINGULARITY_REQUIRE'));
    if (n.result === 'FAIL') return fail(`container negotiation failed: ${n.reason}`);
    status = n.result;
  }
  const runDirect = (): Promise<number> => spawnAndWait(cmd, env);
  if (status === 'NEVER' || status === 'DISABLE') return runDirect();

  const jobImage = adString(jobAd, 'SingularityImage');
  const effective = effectiveStatus(status, jobImage !== undefined);
  const dict = parseImagesDict(env.SINGULARITY_IMAGES_DICT, env);
  const choice = selectImage({
    jobImage, dict, glideinRequiredOs: adString(machineAd, 'GLIDEIN_REQUIRED_OS') ?? 'any', jobRequiredOs: adString(jobAd, 'REQUIRED_OS'),
    restrictions: (env.SINGULARITY_IMAGE_RESTRICTIONS ?? gc.get('SINGULARITY_IMAGE_RESTRICTIONS') ?? 'cvmfs').split(','),
    cvmfsRoot: '/cvmfs',
  });
  const cvmfsMountDir = env.CVMFS_MOUNT_DIR ?? gc.get('CVMFS_MOUNT_DIR');
  let image: string | undefined;
  let problem: string | undefined;
  if (!choice.ok) problem = choice.reason;
  else {
    const local = translateCvmfsPath(choice.image, cvmfsMountDir);
    if (!existsSync(local)) problem = `Unable to access the Singularity image "${choice.image}" (${local})`;
    // Pin the physical tree so a moving tag symlink cannot swap the image under a running job.
    else image = realpathSync(local);
  }
  if (image === undefined) {
    if (mayFallBack(status, effective)) {
      process.stderr.write(`gridbox pilot: ${problem}; running without a container (status ${status})\n`);
      return runDirect();
    }
    return fail(`${problem} (status ${effective})`);
  }
  const runtime = opts.runtime ?? env.GWMS_SINGULARITY_PATH ?? adString(machineAd, 'SINGULARITY_PATH');
  const runtimeArgv = runtime !== undefined ? [runtime] : defaultRuntime();
  const inv = buildJobInvocation({
    runtime: runtimeArgv[runtimeArgv.length - 1], image, command: cmd, cwd: process.cwd(), env, glideinConfig: gc,
    exists: (p) => existsSync(p), gpus: Number(adString(machineAd, 'GPUs') ?? 0),
  });
  // The image was already resolved to its local path; keep it as is in argv.
  const argv = [...runtimeArgv.slice(0, -1), ...inv.argv];
  if (env.GLIDEIN_DEBUG_OUTPUT) process.stderr.write(`gridbox pilot: ${argv.join(' ')}\n`);
  return spawnAndWait(argv, runtime === undefined ? { ...inv.env, GRIDBOX_ARGV0: 'apptainer' } : inv.env);
}

/** Runs argv with signals forwarded; resolves to its exit status (128+N for signal N). */
function spawnAndWait(argv: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: 'inherit', env });
    const forward = (sig: NodeJS.Signals): void => { child.kill(sig); };
    const sigs: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGQUIT'];
    for (const s of sigs) process.on(s, forward);
    child.on('error', (e) => { process.stderr.write(`gridbox pilot: cannot run ${argv[0]}: ${e.message}\n`); resolve(127); });
    child.on('exit', (code, signal) => {
      for (const s of sigs) process.off(s, forward);
      resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
    });
  });
}

export async function run(argv: string[]): Promise<number> {
  let code = 0;
  const program = new Command('gridbox pilot').exitOverride();
  program.command('negotiate').description('print the negotiated container policy').action(() => {
    const gc = parseGlideinConfig(readOptional(process.env.GLIDEIN_CONFIG));
    const n = combineRequirements(process.env.GLIDEIN_Singularity_Use ?? gc.get('GLIDEIN_Singularity_Use'), process.env.GLIDEIN_SINGULARITY_REQUIRE ?? gc.get('GLIDEIN_SINGULARITY_REQUIRE'));
    process.stdout.write(`${n.result}\n`);
    code = n.result === 'FAIL' ? 1 : 0;
  });
  program.command('setup').description("the glidein's container setup (GlideinWMS singularity_setup.sh): negotiate, check images, find and test a runtime, advertise")
    .argument('<glidein_config>')
    .option('--json <file>', 'where to write the JSON record (default: gridbox-setup.json beside glidein_config)')
    .option('--shim-dir <dir>', "where to write gridbox's own apptainer shim (default: gridbox-bin/ beside glidein_config)")
    .option('--quiet', 'no decision log on stdout')
    .action(async (configPath: string, opts) => { code = await setupCommand(configPath, opts); });
  program.command('job').description('run a job command inside the image the job asked for')
    .option('--glidein-config <file>').option('--job-ad <file>').option('--runtime <path>').option('--status <status>')
    .argument('<command...>')
    .action(async (cmd: string[], opts) => { code = await runJob(cmd, opts); });
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    return (e as { exitCode?: number }).exitCode ?? 2;
  }
  return code;
}
