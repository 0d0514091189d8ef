// Replication benchmark (issue 12): `gridbox snapshot` of a repository of ~50k objects from a loopback
// `gridbox serve` against `rsync -a` of the same srv/ tree and, when /var/tmp/cvmfs-ref holds the stock
// build, against stock `cvmfs_swissknife pull` (what `cvmfs_server snapshot` runs) from the same server:
// first a new replica, then after republishing 20 changed files. One run, side by side; objects/s and MB/s.
// Not a test.
// The published repository is built once into a cache dir and copied per run (the republish changes it).
// Knobs: GRIDBOX_BENCH_REPLICATE_FILES (default 50000), GRIDBOX_BENCH_REPLICATE_CACHE (cache dir).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const FQRN = 'replicate.bench.local';
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const DIRS = 100;
/** Every tenth directory is its own nested catalog, as software areas are. */
const NESTED_EVERY = 10;
const CHANGED_FILES = 20;

function gridbox(args: string[]): string {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`gridbox ${args[0]} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** Deterministic small files (1-8 KiB, incompressible), so each becomes one object of about that size. */
function fileBytes(i: number, salt = 0): Buffer {
  const n = 1024 + ((i * 2654435761 + salt) >>> 0) % 7168;
  const b = Buffer.alloc(n);
  let x = (i * 7919 + salt * 104729 + 1) >>> 0 || 1;
  for (let k = 0; k < n; k++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; b[k] = x & 0xff; }
  return b;
}

async function writeTree(src: string, files: number): Promise<void> {
  const per = Math.ceil(files / DIRS);
  for (let d = 0; d < DIRS; d++) {
    const dir = join(src, `dir${String(d).padStart(3, '0')}`);
    await mkdir(dir, { recursive: true });
    if (d % NESTED_EVERY === 0) await writeFile(join(dir, '.cvmfscatalog'), '');
    for (let f = 0; f < per && d * per + f < files; f++) await writeFile(join(dir, `f${f}`), fileBytes(d * per + f));
  }
}

/** The published stratum 0 (keys, srv/), built once into a temp name and renamed when complete. */
async function cachedStratum0(cache: string, files: number): Promise<string> {
  if (existsSync(join(cache, 'done'))) return cache;
  const partial = `${cache}.partial`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  const src = join(partial, 'src');
  await writeTree(src, files);
  gridbox(['mkfs', FQRN, '--root', join(partial, 'root')]);
  gridbox(['publish', FQRN, src, '--root', join(partial, 'root')]);
  await writeFile(join(partial, 'done'), `${files}\n`);
  await rm(cache, { recursive: true, force: true });
  await rename(partial, cache);
  return cache;
}

async function startServe(root: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [MAIN, 'serve', '--root', root, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (c) => reject(new Error(`gridbox serve exited ${c}`)));
  });
  return { url: line.replace(/^serving /, ''), child };
}

function timed(fn: () => string): { s: number; out: string } {
  const t0 = process.hrtime.bigint();
  const out = fn();
  return { s: Number(process.hrtime.bigint() - t0) / 1e9, out };
}

function rsync(from: string, to: string): { s: number; files: number; bytes: number } {
  const t = timed(() => {
    const r = spawnSync('rsync', ['-a', '--delete', '--stats', `${from}/`, `${to}/`], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`rsync failed: ${r.stderr}`);
    return r.stdout;
  });
  const files = Number(/Number of regular files transferred: ([\d,]+)/.exec(t.out)?.[1].replace(/,/g, '') ?? NaN);
  const bytes = Number(/Total transferred file size: ([\d,]+)/.exec(t.out)?.[1].replace(/,/g, '') ?? NaN);
  return { s: t.s, files, bytes };
}

const row = (what: string, who: string, s: number, objects: number, bytes: number) =>
  `${what.padEnd(12)} ${who.padEnd(26)} ${s.toFixed(2).padStart(7)} s ${(objects / s).toFixed(0).padStart(8)} objects/s ${(bytes / 1e6 / s).toFixed(1).padStart(7)} MB/s  (${objects} objects, ${(bytes / 1e6).toFixed(1)} MB)`;

const loadavg = async (): Promise<string> => (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');

/** The stock CernVM-FS build (tests never need it; the bench adds a row when it is there). */
const STOCK_ENV = '/var/tmp/cvmfs-ref/env.sh';

/**
 * Stock `cvmfs_swissknife pull` with the flags `cvmfs_server snapshot` passes (cvmfs_server_snapshot.sh:
 * -n $CVMFS_NUM_WORKERS (16, add-replica's default), -t 10, -a 3, -R <reflog checksum>; -i on the first snapshot, -p after),
 * into a local upstream laid out as `cvmfs_server add-replica` makes it (data/00..ff, data/txn).
 */
async function stockPull(url: string, dest: string, pubKey: string, initial: boolean): Promise<{ s: number; objects: number }> {
  const data = join(dest, 'data');
  if (initial) {
    await mkdir(join(data, 'txn'), { recursive: true });
    for (let i = 0; i < 256; i++) await mkdir(join(data, i.toString(16).padStart(2, '0')), { recursive: true });
  }
  const tmp = join(dest, '..', 'stock-tmp');
  await mkdir(tmp, { recursive: true });
  const args = ['pull', '-m', FQRN, '-u', url, '-w', `file://${dest}`, '-r', `local,${join(data, 'txn')},${dest}`, '-x', tmp, '-k', pubKey,
    '-n', '16', '-t', '10', '-a', '3', initial ? '-i' : '-p',
    // -w is the stratum 1's own URL (pull reads its reflog there after the first run); this replica is only on disk.
    // cvmfs_server snapshot always names the reflog checksum file (its spool dir's reflog.chksum); pull asserts on it.
    '-R', join(dest, '..', 'stock-reflog.chksum')];
  const t = timed(() => {
    const r = spawnSync('bash', ['-c', `source ${STOCK_ENV} && exec cvmfs_swissknife "$@"`, 'pull', ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.status !== 0) throw new Error(`cvmfs_swissknife pull failed (${r.status}): ${r.stderr.slice(-2000)}`);
    return r.stdout + r.stderr;
  });
  // Stock prints "Fetched N new chunks out of M processed chunks" per catalog; catalogs themselves come on top.
  let objects = 0;
  for (const m of t.out.matchAll(/Fetched (\d+) new chunks/g)) objects += Number(m[1]);
  return { s: t.s, objects };
}

export async function run(): Promise<string[]> {
  const files = Number(process.env.GRIDBOX_BENCH_REPLICATE_FILES ?? 50_000);
  const cache = process.env.GRIDBOX_BENCH_REPLICATE_CACHE ?? `/var/tmp/gridbox-bench-replicate-v1-${files}`;
  const built = await cachedStratum0(cache, files);
  const work = await mkdtemp(join(tmpdir(), 'gridbox-bench-replicate-'));
  const rows: string[] = [];
  const stock = existsSync(STOCK_ENV);
  let serve: { url: string; child: ChildProcess } | undefined;
  try {
    const s0 = join(work, 's0');
    if (spawnSync('cp', ['-a', join(built, 'root'), s0]).status !== 0) throw new Error('cannot copy the cached stratum 0');
    serve = await startServe(s0);
    const keys = join(s0, 'keys');
    const url = `${serve.url}${FQRN}`;
    const snap = (): { s: number; objects: number; bytes: number } => {
      const t = timed(() => gridbox(['snapshot', FQRN, '--from', url, '--root', join(work, 's1'), '--keys', keys]));
      const m = /copied (\d+) objects .*?, (\d+) bytes/.exec(t.out);
      return { s: t.s, objects: Number(m?.[1] ?? NaN), bytes: Number(m?.[2] ?? NaN) };
    };
    const stockDir = join(work, 'stock', 'srv', FQRN);
    rows.push(`repository: ${files} files in ${DIRS} directories (${DIRS / NESTED_EVERY} nested catalogs), served by gridbox serve on 127.0.0.1; ` +
      `one run, side by side, on a shared machine (load ${await loadavg()})${stock ? '' : '; stock not built (no /var/tmp/cvmfs-ref)'}`);
    const g1 = snap();
    const r1 = rsync(join(s0, 'srv'), join(work, 'rsync'));
    const k1 = stock ? await stockPull(url, stockDir, join(keys, `${FQRN}.pub`), true) : undefined;
    rows.push(row('initial', 'gridbox snapshot', g1.s, g1.objects, g1.bytes));
    rows.push(row('initial', 'rsync -a', r1.s, r1.files, r1.bytes));
    if (k1) rows.push(row('initial', 'cvmfs_swissknife pull -n 16', k1.s, k1.objects, g1.bytes));
    // Republish one directory with CHANGED_FILES of its files changed.
    const dirName = 'dir007';
    const changed = join(work, dirName);
    await mkdir(changed);
    const names = (await readdir(join(built, 'src', dirName))).filter((n) => n !== '.cvmfscatalog');
    for (const [i, n] of names.entries()) await writeFile(join(changed, n), i < CHANGED_FILES ? fileBytes(i, 99) : await readFile(join(built, 'src', dirName, n)));
    gridbox(['publish', FQRN, changed, '--root', s0, '--at', `/${dirName}`]);
    rows.push(`after republishing ${CHANGED_FILES} files (load ${await loadavg()})`);
    const g2 = snap();
    const r2 = rsync(join(s0, 'srv'), join(work, 'rsync'));
    const k2 = stock ? await stockPull(url, stockDir, join(keys, `${FQRN}.pub`), false) : undefined;
    rows.push(row('incremental', 'gridbox snapshot', g2.s, g2.objects, g2.bytes));
    rows.push(row('incremental', 'rsync -a', r2.s, r2.files, r2.bytes));
    if (k2) rows.push(row('incremental', 'cvmfs_swissknife pull -n 16', k2.s, k2.objects, g2.bytes));
    rows.push(`gridbox/rsync time: initial ${(g1.s / r1.s).toFixed(2)}x, incremental ${(g2.s / r2.s).toFixed(2)}x`);
    if (k1 && k2) {
      rows.push(`gridbox/stock time: initial ${(g1.s / k1.s).toFixed(2)}x, incremental ${(g2.s / k2.s).toFixed(2)}x (target: <= 1.00x on both)`);
    } else {
      rows.push('gridbox/stock: stock not built (target: at or below the stock puller on both)');
    }
    rows.push(`load average at the end: ${await loadavg()}`);
    return rows;
  } finally {
    if (serve !== undefined) { serve.child.kill('SIGTERM'); await new Promise((r) => serve!.child.once('exit', r)); }
    await rm(work, { recursive: true, force: true });
  }
}
