// Serve benchmark (issue 12): `gridbox serve` against Debian nginx (2 workers, sendfile) on the same srv/
// tree of 2,000 random 64 KiB objects, the same wrk command (-t2 -c32, every request a different object
// in turn), both running side by side and measured in alternating rounds, the ratio of requests/s printed. Not a test: nothing asserts on the numbers.
// Knobs: GRIDBOX_BENCH_SERVE_FILES, GRIDBOX_BENCH_SERVE_SECONDS, GRIDBOX_BENCH_SERVE_ROUNDS,
// GRIDBOX_BENCH_SERVE_WORKERS (gridbox --workers), GRIDBOX_BENCH_SERVE_ARGS (replaces gridbox's flags).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import { hashBytes, objectPath } from '../hash/object-id.js';

const FQRN = 'bench.gridbox.local';

interface WrkResult { rps: number; p99Ms: number; mbPerS: number; errors: string; cpuUsPerRequest?: number }

/** CPU seconds (user + system) used so far by a process and its children (nginx or cluster workers). */
function cpuSeconds(pid: number): number {
  const ticks = (p: number): number => {
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8').slice(readFileSync(`/proc/${p}/stat`, 'utf8').lastIndexOf(')') + 2).split(' ');
      return Number(f[11]) + Number(f[12]);
    } catch { return 0; }
  };
  let total = ticks(pid);
  const kids = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l !== '').map(Number);
  for (const k of kids) total += ticks(k);
  return total / 100;
}

/** A measured wrk run with the server's CPU time per request, which a loaded machine distorts less than req/s. */
function measure(baseUrl: string, script: string, seconds: number, serverPid: number): WrkResult {
  const c0 = cpuSeconds(serverPid);
  const r = runWrk(baseUrl, script, seconds);
  return { ...r, cpuUsPerRequest: r.requests > 0 ? ((cpuSeconds(serverPid) - c0) / r.requests) * 1e6 : NaN };
}

/** Each wrk thread walks the object list from its own offset, so both servers get the same request mix. */
function wrkScript(pathsFile: string): string {
  return `
local paths = {}
for line in io.lines("${pathsFile}") do paths[#paths + 1] = line end
local i = 0
local counter = 0
function setup(thread) counter = counter + 1; thread:set("offset", counter * 997) end
function init(args) i = (offset or 0) + (tonumber(args[1]) or 0) end
function request()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
`;
}

function parseWrk(out: string): WrkResult {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s)\b/.exec(out);
  const p99Ms = p99 === null ? NaN : Number(p99[1]) * (p99[2] === 'us' ? 1e-3 : p99[2] === 's' ? 1e3 : 1);
  const tr = /Transfer\/sec:\s+([\d.]+)(KB|MB|GB)/.exec(out);
  const mbPerS = tr === null ? NaN : Number(tr[1]) * (tr[2] === 'KB' ? 1 / 1024 : tr[2] === 'GB' ? 1024 : 1) * 1.048576;
  const errs = [/Socket errors:[^\n]*/.exec(out)?.[0], /Non-2xx or 3xx responses:[^\n]*/.exec(out)?.[0]].filter(Boolean).join('; ');
  return { rps, p99Ms, mbPerS, errors: errs };
}

function runWrk(baseUrl: string, script: string, seconds: number, start = 0): WrkResult & { requests: number } {
  const r = spawnSync('wrk', ['-t2', '-c32', `-d${seconds}s`, '--latency', '-s', script, baseUrl, '--', String(start)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr || String(r.error)}`);
  return { ...parseWrk(r.stdout), requests: Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? 0) };
}

/**
 * The same warm-up for both servers: each wrk thread walks the whole object list about 6 times, every run
 * going on where the last stopped (so no object is left cold: each of gridbox's workers keeps its own
 * copies, and a connection reaches one worker), counted in requests rather than seconds so a loaded
 * machine still warms fully (at most 80 runs of 2 s).
 */
function warmUp(baseUrl: string, script: string, files: number): void {
  let start = 0;
  for (let i = 0; i < 80 && start < 6 * files; i++) start += Math.ceil(runWrk(baseUrl, script, 2, start).requests / 2);
}

/** Starts the real CLI and resolves with its URL (first stdout line). */
async function startGridbox(root: string, extra: string[]): Promise<{ url: string; child: ChildProcess }> {
  const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
  const child = spawn(process.execPath, [main, 'serve', '--root', root, '--listen', '127.0.0.1:0', ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (c) => reject(new Error(`gridbox serve exited ${c}`)));
  });
  const m = /^serving (\S+)$/.exec(line);
  if (m === null) throw new Error(`gridbox serve said ${JSON.stringify(line)}`);
  return { url: m[1], child };
}

/** Debian nginx as a stratum 0 would run it: a worker per core, sendfile, an access log file. */
async function startNginx(srv: string, state: string, workers: number): Promise<{ url: string; child: ChildProcess }> {
  await mkdir(join(state, 'tmp'), { recursive: true });
  const port = 20000 + Math.floor(Math.random() * 20000);
  const conf = join(state, 'nginx.conf');
  const t = join(state, 'tmp');
  await writeFile(conf, `
${process.getuid?.() === 0 ? 'user root root;' : ''}
worker_processes ${workers};
daemon off;
pid ${state}/nginx.pid;
error_log ${state}/error.log warn;
events { worker_connections 1024; }
http {
  sendfile on;
  access_log ${state}/access.log;
  client_body_temp_path ${t}/b; proxy_temp_path ${t}/p; fastcgi_temp_path ${t}/f; uwsgi_temp_path ${t}/u; scgi_temp_path ${t}/s;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    location /cvmfs/ { alias ${srv}/; location ~ /data/ { expires 3d; } location ~ /\\.cvmfs { expires 61s; } }
  }
}
`);
  const child = spawn('nginx', ['-p', state, '-c', conf, '-e', join(state, 'error.log')], { stdio: 'ignore' });
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) break;
    if (i > 100 || child.exitCode !== null) throw new Error(`nginx did not start on port ${port} (see ${state}/error.log)`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `http://127.0.0.1:${port}/cvmfs/`, child };
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

const row = (who: string, r: WrkResult) =>
  `${who.padEnd(44)} ${r.rps.toFixed(0).padStart(7)} req/s ${r.mbPerS.toFixed(0).padStart(6)} MB/s  p99 ${r.p99Ms.toFixed(2).padStart(6)} ms  server CPU ${(r.cpuUsPerRequest ?? NaN).toFixed(0).padStart(4)} us/request${r.errors ? `  (${r.errors})` : ''}`;

export async function run(): Promise<string[]> {
  const files = Number(process.env.GRIDBOX_BENCH_SERVE_FILES ?? 2000);
  const seconds = Number(process.env.GRIDBOX_BENCH_SERVE_SECONDS ?? 10);
  const workers = process.env.GRIDBOX_BENCH_SERVE_WORKERS;
  const cores = availableParallelism();
  const work = await mkdtemp(join(tmpdir(), 'gridbox-bench-serve-'));
  try {
    const srv = join(work, 'srv');
    // Random 64 KiB files as the publisher stores them: zlib-compressed, named by the hash of the stored bytes.
    const urls: string[] = [];
    let objectBytes = 0;
    for (let i = 0; i < files; i++) {
      const stored = deflateSync(randomBytes(64 * 1024));
      const rel = `data/${objectPath(hashBytes('sha1', stored), '')}`;
      await mkdir(dirname(join(srv, FQRN, rel)), { recursive: true });
      await writeFile(join(srv, FQRN, rel), stored);
      urls.push(`/cvmfs/${FQRN}/${rel}`);
      objectBytes = stored.length;
    }
    const pathsFile = join(work, 'paths.txt');
    await writeFile(pathsFile, urls.join('\n') + '\n');
    const script = join(work, 'walk.lua');
    await writeFile(script, wrkScript(pathsFile));
    const rows = [`${files} objects of ${(objectBytes / 1024).toFixed(1)} KiB; wrk -t2 -c32 -d${seconds}s walking all of them; ${cores} cores (shared: the machine may be loaded)`];

    // Both servers run side by side, warmed the same way, and are measured in alternating rounds, so a
    // machine shared with other work loads both alike; the best round of each is reported.
    const rounds = Math.max(1, Number(process.env.GRIDBOX_BENCH_SERVE_ROUNDS ?? 3));
    const nginx = await startNginx(srv, join(work, 'nginx'), cores);
    const logFile = join(work, 'gridbox-access.log');
    // gridbox's default (a worker per core) and, unless --workers is forced, one worker: on a machine
    // whose cores wrk shares, one busy event loop may beat two half-idle ones, so both are shown.
    const configs: { name: string; args: string[] }[] = process.env.GRIDBOX_BENCH_SERVE_ARGS !== undefined
      ? [{ name: 'gridbox serve (custom args, log)', args: process.env.GRIDBOX_BENCH_SERVE_ARGS.split(' ') }]
      : workers !== undefined
        ? [{ name: `gridbox serve (${workers} workers, log)`, args: ['--workers', workers, '--access-log', logFile] }]
        : [{ name: `gridbox serve (default: ${cores} workers, log)`, args: ['--access-log', logFile] }, { name: 'gridbox serve (--workers 1, log)', args: ['--workers', '1', '--access-log', logFile] }];
    const gbs: { url: string; child: ChildProcess }[] = [];
    const ng: WrkResult[] = [];
    const ours: WrkResult[][] = configs.map(() => []);
    try {
      for (const c of configs) gbs.push(await startGridbox(work, c.args));
      const ngBase = nginx.url.replace(/\/cvmfs\/$/, '');
      const gbBases = gbs.map((g) => g.url.replace(/\/cvmfs\/$/, ''));
      warmUp(ngBase, script, files);
      for (const b of gbBases) warmUp(b, script, files);
      for (let i = 0; i < rounds; i++) {
        ng.push(measure(ngBase, script, seconds, nginx.child.pid!));
        gbBases.forEach((b, k) => ours[k].push(measure(b, script, seconds, gbs[k].child.pid!)));
      }
    } finally {
      await stopChild(nginx.child, 'SIGQUIT');
      for (const g of gbs) await stopChild(g.child);
    }
    const best = (rs: WrkResult[]): WrkResult => rs.reduce((a, b) => (b.rps > a.rps ? b : a));
    const load = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    const cpu = (r: WrkResult): string => `${(r.cpuUsPerRequest ?? NaN).toFixed(0)} us CPU`;
    for (let i = 0; i < rounds; i++) {
      rows.push(`  round ${i + 1}: nginx ${ng[i].rps.toFixed(0)} req/s ${cpu(ng[i])}${configs.map((c, k) => ` | ${c.name.replace(/, log\)$/, ')')} ${ours[k][i].rps.toFixed(0)} req/s ${cpu(ours[k][i])} ${(ours[k][i].rps / ng[i].rps).toFixed(2)}x`).join('')}`);
    }
    const n = best(ng);
    rows.push(row(`nginx (${cores} workers, sendfile, log)`, n));
    configs.forEach((c, k) => rows.push(row(c.name, best(ours[k]))));
    configs.forEach((c, k) => {
      const g = best(ours[k]);
      rows.push(`${c.name}: ${(g.rps / n.rps).toFixed(2)}x nginx's requests/s, best of ${rounds} alternating rounds (target >= 0.7x); p99 ${g.p99Ms.toFixed(2)} ms vs ${n.p99Ms.toFixed(2)} ms; ${((g.cpuUsPerRequest ?? NaN) / (n.cpuUsPerRequest ?? NaN)).toFixed(1)}x nginx's CPU per request`);
    });
    rows.push(`load average at the end: ${load()}`);
    return rows;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
