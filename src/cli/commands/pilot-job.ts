// `gridbox pilot job` and `gridbox pilot explain`: gather the wrapper's inputs (environment, glidein_config,
// HTCondor's job and machine ads), let planJob() decide, then run the job in its container (or directly, or
// fail the way GlideinWMS's exit_wrapper does) and pass its exit status back.
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants } from 'node:os';
import { GridboxError, q } from '../../errors.js';
import { MAX_CLASSAD_BYTES, parseClassAd } from '../../pilot/classad.js';
import { parseGlideinConfig } from '../../pilot/glidein-config.js';
import { planJob, type JobPlan } from '../../pilot/job-plan.js';
import { envRecord, hasEntries } from './pilot-setup.js';
import { beginStart } from './report-meter.js';

export interface JobOptions {
  glideinConfig?: string; jobAd?: string; machineAd?: string; runtime?: string; status?: string;
  exitSleep?: string; accounting?: boolean;
}

export function readOptional(path: string | undefined): string {
  if (path === undefined || path === '' || path === 'NONE' || !existsSync(path)) return '';
  const text = readFileSync(path, 'utf8');
  if (text.length > MAX_CLASSAD_BYTES) throw new GridboxError('CONFIG_INVALID', `${q(path)} is larger than ${MAX_CLASSAD_BYTES} bytes`, { path });
  return text;
}

/** Our own runtime, reached without PATH: the compiled CLI with the node running us now. */
export function builtinRuntime(): string[] {
  return [process.execPath, join(dirname(fileURLToPath(import.meta.url)), '..', 'main.js')];
}

export function planFromEnvironment(cmd: string[], o: JobOptions): JobPlan {
  const env = envRecord();
  const machineAdPath = o.machineAd ?? env._CONDOR_MACHINE_AD;
  const machineText = readOptional(machineAdPath);
  return planJob({
    command: cmd, cwd: process.cwd(), env,
    glideinConfig: parseGlideinConfig(readOptional(o.glideinConfig ?? env.GLIDEIN_CONFIG)),
    jobAd: parseClassAd(readOptional(o.jobAd ?? env._CONDOR_JOB_AD)),
    machineAd: parseClassAd(machineText), haveMachineAd: machineText !== '',
    runtime: o.runtime, statusOverride: o.status,
    exists: existsSync, realpath: realpathSync, hasEntries, pid: process.pid,
  });
}

export function explainCommand(cmd: string[], o: JobOptions): number {
  const plan = planFromEnvironment(cmd, o);
  plan.decisions.forEach((d, n) => process.stdout.write(`${String(n + 1).padStart(2)}. ${d}\n`));
  if (plan.action === 'container') {
    const argv = plan.runtime === undefined ? [...builtinRuntime(), ...plan.invocation.argv.slice(1)] : plan.invocation.argv;
    process.stdout.write(`=> container: ${argv.join(' ')}\n`);
  } else process.stdout.write(`=> ${plan.action}: ${plan.reason}\n`);
  return plan.action === 'fail' ? 1 : 0;
}


export async function jobCommand(cmd: string[], o: JobOptions): Promise<number> {
  const env = envRecord();
  const plan = planFromEnvironment(cmd, o);
  if (env.GLIDEIN_DEBUG_OUTPUT) for (const d of plan.decisions) process.stderr.write(`gridbox pilot: ${d}\n`);
  if (plan.action === 'fail') {
    const msg = `gridbox pilot: ${plan.reason}`;
    process.stderr.write(`${msg}\n`);
    // HTCondor requeues the job when this file exists at exit (runtime-contract.md §1.6).
    if (env._CONDOR_WRAPPER_ERROR_FILE) appendFileSync(env._CONDOR_WRAPPER_ERROR_FILE, `${msg}\n`);
    const sleepS = Number(o.exitSleep ?? 0);
    if (sleepS > 0) await new Promise((r) => setTimeout(r, sleepS * 1000));
    return 1;
  }
  if (plan.action === 'direct') {
    process.stderr.write(`gridbox pilot: ${plan.reason}; running without a container\n`);
    return spawnAndWait(cmd, env);
  }
  const inv = plan.invocation;
  const argv = plan.runtime === undefined ? [...builtinRuntime(), ...inv.argv.slice(1)] : inv.argv;
  // Our runtime records the start itself (it sees the sandbox's first process); tell it who started it and
  // the image's public name, since it only sees the pinned .images/ path. Another runtime is timed from here.
  const childEnv: Record<string, string> = { ...inv.env, GRIDBOX_ACCOUNTING_VIA: 'pilot', GRIDBOX_ACCOUNTING_IMAGE: plan.imageHuman };
  if (plan.runtime === undefined) childEnv.GRIDBOX_ARGV0 = 'apptainer';
  if (o.accounting === false) childEnv.GRIDBOX_ACCOUNTING = 'off';
  const ours = plan.runtime === undefined || isGridboxShim(plan.runtime);
  if (ours && env.GRIDBOX_PILOT_SPAWN_RUNTIME !== '1') {
    // Our runtime runs in this process, as if the wrapper had exec'ed it (GlideinWMS does exec): one Node
    // start-up less per job. It reads its options from process.env, so that becomes the runtime's environment.
    for (const k of Object.keys(process.env)) delete process.env[k];
    Object.assign(process.env, childEnv);
    delete process.env.GRIDBOX_ARGV0;
    const runtime = (await import('./apptainer.js')) as { run(argv: string[]): Promise<number> };
    return runtime.run(inv.argv.slice(1));
  }
  const meter = ours || o.accounting === false ? undefined : await beginStart(plan.image, { ...env, GRIDBOX_ACCOUNTING_IMAGE: plan.imageHuman }, 'pilot');
  if (env.GLIDEIN_DEBUG_OUTPUT) process.stderr.write(`gridbox pilot: ${argv.join(' ')}\n`);
  const code = await spawnAndWait(argv, childEnv);
  await meter?.finish(code);
  return code;
}

/** Whether a runtime path is a shim written by `gridbox install-shims` (our runtime, which keeps its own accounting). */
function isGridboxShim(path: string): boolean {
  try { return readFileSync(path, 'utf8').slice(0, 512).includes('gridbox install-shims'); } catch { return false; }
}

/** Runs argv with signals forwarded; resolves to its exit status (128+N for signal N). */
export function spawnAndWait(argv: string[], env: Record<string, string>): Promise<number> {
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
