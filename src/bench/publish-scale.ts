// Publish benchmark at scale (issue 8): the generated 10^6-entry tree (bench/scale-tree.ts, cached under
// /var/tmp/gridbox-test-cache) published by `gridbox publish` (autocatalogs at CernVM-FS's default max of
// 100000) and packed by `mksquashfs -processors N` on the same N cores, page cache warm for both, in one
// run. Prints time, entries/s, the speed ratio and the peak RSS (VmHWM, sampled every 50 ms) of each.
// Knobs: GRIDBOX_BENCH_SCALE_ENTRIES (default 1000000), GRIDBOX_BENCH_SCALE_CORES (default 2),
// GRIDBOX_BENCH_SCALE_PEER_TIMEOUT (seconds mksquashfs may take before it is stopped; default 600).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureScaleTree } from './scale-tree.js';

interface Measured { seconds: number; peakKiB: number; code: number | null; stderr: string; stdout: string; timedOut: boolean }

function vmHwmKiB(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/** Runs a command, sampling its peak RSS (VmHWM is a high-water mark, so the last sample before exit is the peak up to 50 ms). */
function measure(cmd: string, args: string[], timeoutS = Infinity): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let peak = 0, stdout = '', stderr = '', timedOut = false;
    // A peer that takes too long is stopped and reported as "at least this long".
    const cap = Number.isFinite(timeoutS) ? setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutS * 1000) : undefined;
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setInterval(() => { peak = Math.max(peak, vmHwmKiB(child.pid!) ?? 0); }, 50);
    child.on('error', (e) => { clearInterval(timer); reject(e); });
    child.on('exit', () => { peak = Math.max(peak, vmHwmKiB(child.pid!) ?? 0); });
    child.on('close', (code) => {
      clearInterval(timer);
      clearTimeout(cap);
      resolve({ seconds: Number(process.hrtime.bigint() - t0) / 1e9, peakKiB: peak, code, stderr, stdout, timedOut });
    });
  });
}

export async function run(): Promise<string[]> {
  const entries = Number(process.env.GRIDBOX_BENCH_SCALE_ENTRIES ?? 1_000_000);
  const cores = Number(process.env.GRIDBOX_BENCH_SCALE_CORES ?? 2);
  const t0 = Date.now();
  const tree = ensureScaleTree(entries);
  const rows = [`tree: ${tree.dir}: ${tree.entries} entries (${tree.files} files, ${tree.emptyFiles} empty; ${tree.dirs} dirs), ${(tree.bytes / 1e6).toFixed(1)} MB; ready in ${((Date.now() - t0) / 1000).toFixed(0)} s; ${cores} cores for both`];
  const work = await mkdtemp(join(tmpdir(), 'gridbox-bench-scale-'));
  const main = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  const label = entries === 1_000_000 ? 'publish-1e6' : `publish-${entries}`;
  const row = (who: string, m: Measured) =>
    `${label} ${who.padEnd(22)} ${m.seconds.toFixed(1).padStart(7)} s ${(tree.entries / m.seconds).toFixed(0).padStart(7)} entries/s  peak RSS ${(m.peakKiB / 1024).toFixed(0).padStart(5)} MiB`;
  try {
    // Warm the page cache for both (tar reads every file; GNU tar skips the reads when writing to /dev/null, so pipe).
    await measure('bash', ['-c', `tar -C ${JSON.stringify(tree.dir)} -cf - . | cat > /dev/null`]);
    const peerTimeout = Number(process.env.GRIDBOX_BENCH_SCALE_PEER_TIMEOUT ?? 600);
    const sq = await measure('taskset', ['-c', `0-${cores - 1}`, 'mksquashfs', tree.dir, join(work, 'out.sqfs'), '-processors', String(cores), '-noappend', '-no-progress', '-quiet'], peerTimeout);
    if (sq.code !== 0 && !sq.timedOut) throw new Error(`mksquashfs failed: ${sq.stderr}`);
    rows.push(row(`mksquashfs -processors ${cores}`, sq) + (sq.timedOut ? `  (stopped after ${peerTimeout} s, unfinished: time and RSS are lower bounds)` : ''));
    await rm(join(work, 'out.sqfs'), { force: true });
    const root = join(work, 'repo');
    const mk = await measure(process.execPath, [main, 'mkfs', 'bench.scale.local', '--root', root]);
    if (mk.code !== 0) throw new Error(`gridbox mkfs failed: ${mk.stderr}`);
    const gb = await measure('taskset', ['-c', `0-${cores - 1}`, process.execPath, main, 'publish', 'bench.scale.local', tree.dir, '--root', root, '--workers', String(cores), '--autocatalog-max', '100000']);
    if (gb.code !== 0) throw new Error(`gridbox publish failed: ${gb.stderr}`);
    rows.push(row('gridbox publish', gb) + `  (${gb.stdout.trim().split('\n').pop()})`);
    rows.push(`${label} gridbox speed ${sq.timedOut ? '>= ' : ''}${(sq.seconds / gb.seconds).toFixed(2)}x mksquashfs (target >= 0.8x); peak RSS ${(gb.peakKiB / Math.max(1, sq.peakKiB)).toFixed(2)}x mksquashfs's${sq.timedOut ? ' (its peak so far)' : ''}`);
    // The republish of the unchanged tree: every catalog kept unread, the root restamped (the cached tree is never modified).
    const re = await measure('taskset', ['-c', `0-${cores - 1}`, process.execPath, main, 'publish', 'bench.scale.local', tree.dir, '--root', root, '--workers', String(cores), '--autocatalog-max', '100000']);
    if (re.code !== 0) throw new Error(`gridbox republish failed: ${re.stderr}`);
    rows.push(row('gridbox republish (unchanged)', re) + `  ${(100 * re.seconds / gb.seconds).toFixed(1)}% of the publish  (${re.stdout.trim().split('\n').pop()})`);
    return rows;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
