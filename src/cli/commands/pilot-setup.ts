// `gridbox pilot setup <glidein_config>`: GlideinWMS's singularity_setup.sh for a glidein. Reads
// glidein_config, runs the setup decision (src/pilot/setup.ts) against the real file system and real
// runtimes, writes what it advertises back into glidein_config (and condor_vars.lst when the config names
// one) and a JSON record. Exit 1 fails the glidein, with the reason on stderr.
import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { GridboxError, q } from '../../errors.js';
import { writeFileAtomicSync } from '../../plumbing/atomic-write.js';
import { addCondorVarsLines, addConfigLines, classAdLine, parseGlideinConfig } from '../../pilot/glidein-config.js';
import type { RunResult, Runner } from '../../pilot/runtime-probe.js';
import { runSetup, type SetupOutcome } from '../../pilot/setup.js';
import { runtimeScript, shimText } from './install-shims.js';

const MAX_PROBE_OUTPUT_BYTES = 64 * 1024;

/** Runs argv to completion with a time limit, output capped (a runtime under test is untrusted). */
export const runProcess: Runner = (argv, opts) => new Promise<RunResult>((resolveRun, reject) => {
  const child = spawn(argv[0], argv.slice(1), { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  const take = (cur: string, d: Buffer): string => (cur.length < MAX_PROBE_OUTPUT_BYTES ? cur + d.toString('utf8') : cur);
  child.stdout.on('data', (d: Buffer) => { stdout = take(stdout, d); });
  child.stderr.on('data', (d: Buffer) => { stderr = take(stderr, d); });
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
  child.on('error', (e) => { clearTimeout(timer); reject(e); });
  child.on('close', (code) => { clearTimeout(timer); resolveRun({ code, stdout, stderr }); });
});

export function isExecutable(p: string): boolean {
  try { accessSync(p, fsConstants.X_OK); return statSync(p).isFile(); } catch { return false; }
}

export function hasEntries(dir: string): boolean {
  try { return readdirSync(dir).length > 0; } catch { return false; }
}

export function envRecord(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) out[k] = v;
  return out;
}

/** glidein_config and friends are replaced whole (temp file beside, then rename), keeping the file's mode. */
export function writeAtomic(path: string, text: string, mode?: number): void {
  if (mode === undefined) {
    mode = 0o644;
    try { mode = statSync(path).mode & 0o7777; } catch { /* new file */ }
  }
  writeFileAtomicSync(path, text, { mode });
}

/** Our runtime under the name apptainer, written into the glidein's directory so it can be advertised by path. */
async function writeGridboxShim(dir: string): Promise<string> {
  const mainJs = await runtimeScript(dir);
  const file = join(dir, 'apptainer');
  const text = shimText('apptainer', process.execPath, mainJs);
  if (!isExecutable(file) || readFileSync(file, 'utf8') !== text) writeAtomic(file, text, 0o755);
  return file;
}

export interface SetupCommandOptions { json?: string; shimDir?: string; quiet?: boolean }

export async function setupCommand(configPath: string, o: SetupCommandOptions): Promise<number> {
  const path = resolve(configPath);
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (cause) { throw new GridboxError('NOT_FOUND', `Cannot read glidein_config ${q(path)}`, { cause, path }); }
  const config = parseGlideinConfig(text);
  const workDir = config.get('GLIDEIN_WORK_DIR') || dirname(path);
  let shim: string | undefined;
  try {
    const shimDir = o.shimDir ?? join(dirname(path), 'gridbox-bin');
    mkdirSync(shimDir, { recursive: true });
    shim = await writeGridboxShim(shimDir);
  } catch { shim = undefined; /* a read-only glidein dir: ours is then simply not a candidate */ }
  const outcome = await runSetup({
    config, env: envRecord(), workDir, gridboxShim: shim, exists: existsSync, isExecutable, hasEntries, run: runProcess,
  });
  writeBack(path, config, outcome);
  const jsonPath = o.json ?? join(dirname(path), 'gridbox-setup.json');
  writeAtomic(jsonPath, `${JSON.stringify(setupRecord(outcome), null, 2)}\n`);
  if (!o.quiet) {
    for (const d of outcome.decisions) process.stdout.write(`gridbox pilot setup: ${d}\n`);
    for (const a of outcome.advertise) process.stdout.write(`${classAdLine(a)}\n`);
  }
  runErrorGen(config, outcome);
  if (outcome.exitCode !== 0) process.stderr.write(`gridbox pilot setup: the glidein fails: ${outcome.reason}\n`);
  return outcome.exitCode;
}

/** The JSON record: the outcome without the raw argv noise. */
export function setupRecord(o: SetupOutcome): Record<string, unknown> {
  return {
    exitCode: o.exitCode, status: o.status, containers: o.containers, reason: o.reason,
    advertised: Object.fromEntries(o.advertise.map((a) => [a.key, a.value])),
    images: o.images, testImage: o.testImage ?? null,
    runtime: o.runtime ? { path: o.runtime.candidate.path, step: o.runtime.candidate.step, version: o.runtime.version, fullVersion: o.runtime.fullVersion, mode: o.runtime.mode } : null,
    tried: o.tried.map((t) => ({ path: t.candidate.path, step: t.candidate.step, ok: t.ok, detail: t.detail })),
    decisions: o.decisions,
  };
}

function writeBack(path: string, config: Map<string, string>, outcome: SetupOutcome): void {
  if (outcome.advertise.length === 0) return;
  writeAtomic(path, addConfigLines(readFileSync(path, 'utf8'), outcome.advertise));
  const vars = config.get('CONDOR_VARS_FILE');
  if (vars) {
    const old = existsSync(vars) ? readFileSync(vars, 'utf8') : '';
    writeAtomic(vars, addCondorVarsLines(old, outcome.advertise));
  }
}

/** GlideinWMS's error_gen (ERROR_GEN_PATH in glidein_config), called as singularity_setup.sh calls it. */
function runErrorGen(config: Map<string, string>, o: SetupOutcome): void {
  const gen = config.get('ERROR_GEN_PATH');
  if (!gen || !isExecutable(gen)) return;
  const args = o.exitCode !== 0
    ? ['-error', 'singularity_setup.sh', o.status === 'FAIL' ? 'VO_Config' : 'WN_Resource', o.reason]
    : ['-ok', 'singularity_setup.sh', 'use_singularity', o.status === 'DISABLE' ? 'Undefined' : o.containers ? 'True' : 'False'];
  spawn(gen, args, { stdio: 'ignore' }).on('error', () => { /* error_gen is best effort */ });
}
