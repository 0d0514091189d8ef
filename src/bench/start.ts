// `npm run bench start`: the seed's headline, how fast a job starts in an image it has never seen. The Debian
// corpus image (mmdebstrap) is pushed to a loopback docker-registry and synced into a repository that is served
// and mounted; the job `perl -e 1; ls /usr/bin | wc -l; dpkg -l | wc -l` runs through our apptainer shim with
// GlideinWMS's flags. Beside it, in the same rounds, the peer: skopeo copy + umoci unpack + the same job in
// bwrap. Rows: (a) cold start to exit and the ratio, (b) bytes fetched / compressed image size, (c) warm start,
// (d) the mount itself, cold, (e) the cold job with 10 ms per request. Each cold start is measured twice per
// round: without a start profile, then with the one that start left (vfs/start-profile.ts). Root only (drop_caches, FUSE). Benchmarks are not tests: nothing asserts on time.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { startLatencyProxy } from './latency-proxy.js';
import { cliBinOf } from './run-child.js';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const FQRN = 'bench.start.org';
const JOB = 'perl -e 1; ls /usr/bin | wc -l; dpkg -l | wc -l';
/** Per request through the latency proxy for the (e) rows, as bench/mount-scientific.ts. */
const DELAY_MS = 10;
const MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const WORLD = fileURLToPath(new URL('../testing/bench-world.js', import.meta.url));

interface Run { code: number | null; stdout: string; stderr: string; s: number }

function runChild(argv: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const c = spawn(argv[0], argv.slice(1), { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    c.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stdout, stderr, s: (performance.now() - t) / 1000 }));
  });
}

async function must(p: Promise<Run>, what: string): Promise<Run> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${(r.stderr || r.stdout).slice(-800)}`);
  return r;
}

function dropCaches(): void {
  spawnSync('sync');
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const s2 = (x: number): string => `${x.toFixed(2)} s`;
const all = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(' ');
const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

interface World { registry: string; host: string; reference: string; sizeBytes: number; unpackedBytes: number; files: number; error?: string }

export async function run(): Promise<string[]> {
  if (process.getuid?.() !== 0) return ['(start bench skipped: needs root for drop_caches and the FUSE mount)'];
  for (const tool of ['/usr/bin/skopeo', '/usr/bin/umoci', '/usr/bin/bwrap', '/usr/bin/docker-registry']) if (!existsSync(tool)) return [`(start bench skipped: ${tool} missing)`];
  const rounds = Number(process.env.GRIDBOX_BENCH_START_ROUNDS ?? 3);
  const work = await mkdtemp(join(tmpdir(), 'gridbox-bench-start-'));
  const env: NodeJS.ProcessEnv = { ...process.env, GRIDBOX_RUN_DIR: join(work, 'run'), GRIDBOX_ACCOUNTING: 'off' };
  // `mount` through bin/gridbox, as users run it (its shell front starts the daemon with no node start of its own).
  const gridbox = (args: string[], what: string, main = MAIN): Promise<Run> => must(runChild(args[0] === 'mount' ? [cliBinOf(main), ...args] : [process.execPath, main, ...args], { env }), what);
  // GRIDBOX_BENCH_START_BASELINE=.../dist/cli/main.js: another build's daemon timed in the same rounds (before/after).
  const baseline = process.env.GRIDBOX_BENCH_START_BASELINE;
  let mountedBy = MAIN;
  let worldProc: ChildProcess | undefined;
  let serve: ChildProcess | undefined;
  const mnt = join(work, 'cvmfs', FQRN);
  let mounted = false;
  try {
    worldProc = spawn(process.execPath, [WORLD, join(work, 'registry')], { stdio: ['pipe', 'pipe', 'inherit'] });
    const world = JSON.parse(await new Promise<string>((resolve, reject) => {
      createInterface({ input: worldProc!.stdout! }).once('line', resolve);
      worldProc!.once('exit', (c) => reject(new Error(`bench-world exited ${c}`)));
    })) as World;
    if (world.error) return [`(start bench skipped: ${world.error})`];

    const root = join(work, 'stratum0');
    await gridbox(['mkfs', FQRN, '--root', root], 'mkfs');
    const list = join(work, 'docker_images.txt');
    writeFileSync(list, `${world.reference}\n`);
    const sync = await gridbox(['sync', list, '--repo', FQRN, '--root', root], 'sync');
    const tree = /-> (\.images\/\S+)/.exec(sync.stdout)?.[1];
    if (!tree) throw new Error(`sync did not report a tree: ${sync.stdout}`);
    // Bytes on the wire are counted at the server from its request log on stderr, not by the client. The newer
    // serve logs only with `--access-log -` (Common Log Format); both formats end in "STATUS BYTES".
    const help = spawnSync(process.execPath, [MAIN, 'serve', '--help'], { encoding: 'utf8' }).stdout;
    const logArgs = [...(help.includes('--access-log') ? ['--access-log', '-'] : []), ...(help.includes('--workers') ? ['--workers', '1'] : [])];
    serve = spawn(process.execPath, [MAIN, 'serve', '--root', root, '--listen', '127.0.0.1:0', ...logArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    let served = 0;
    // The cold job's requests, to say what the bytes were: catalogs (object names ending in C) and the largest objects.
    let requests: Array<{ path: string; bytes: number }> = [];
    createInterface({ input: serve.stderr! }).on('line', (l) => {
      // "... STATUS BYTES" (older serve) or "... STATUS BYTES SECONDS" (Common Log Format plus the request time).
      const m = /" (\d{3}) (\d+)(?: [\d.]+)?$/.exec(l);
      if (!m) return;
      served += Number(m[2]);
      requests.push({ path: /"[A-Z]+ (\S+)/.exec(l)?.[1] ?? '?', bytes: Number(m[2]) });
    });
    // The access log is flushed every 200 ms; a loaded machine may run that timer late.
    const servedNow = async (): Promise<number> => { await new Promise((r) => setTimeout(r, 1500)); return served; };
    const url = `${/(http:\/\/127\.0\.0\.1:\d+)/.exec(await new Promise<string>((r) => createInterface({ input: serve!.stdout! }).once('line', r)))![1]}/cvmfs/${FQRN}`;
    await gridbox(['install-shims', join(work, 'bin')], 'install-shims');
    const shim = join(work, 'bin', 'apptainer');
    const jobDir = join(work, 'job');
    await mkdir(mnt, { recursive: true });
    await mkdir(jobDir);
    // GlideinWMS's job invocation (runtime-contract.md §2.7), image pinned to its physical tree.
    const ourJob = [shim, 'exec', '--home', `${jobDir}:/srv`, '--pwd', '/srv', '--ipc', '--contain', '--pid',
      '--bind', `/etc/hosts,/etc/localtime,${join(work, 'cvmfs')}:/cvmfs`, join(mnt, tree), '/bin/sh', '-c', JOB];

    const proxy = await startLatencyProxy({ port: Number(new URL(url).port), delayMs: DELAY_MS });
    const slowUrl = proxy.url(url);
    const profiles = join(work, 'run', 'start-profiles');
    const profileCount = (): number => (existsSync(profiles) ? readdirSync(profiles).filter((f) => f.endsWith('.json')).length : 0);
    /**
     * One cold start of the job: fresh mount on an empty cache (page cache dropped), with or without the start
     * profile an earlier start of the image left under the run dir (as on a node that ran the image before).
     */
    const trace = process.env.GRIDBOX_BENCH_START_TRACE;
    let traced = 0;
    const coldStart = async (server: string, profile: boolean, main = MAIN): Promise<{ mount: number; job: number; bytes: number; dupes: number; out: string; requests: Array<{ path: string; bytes: number }> }> => {
      if (mounted) { await gridbox(['umount', mnt], 'umount', mountedBy); mounted = false; }
      await rm(join(work, 'cache'), { recursive: true, force: true });
      if (!profile) await rm(profiles, { recursive: true, force: true });
      else if (profileCount() === 0) throw new Error('no start profile was left by the previous start');
      dropCaches();
      const mount = (await gridbox(['mount', FQRN, mnt, '--server', server, '--keys', join(root, 'keys'), '--cache', join(work, 'cache')], 'mount', main)).s;
      mounted = true;
      mountedBy = main;
      const before = await servedNow();
      requests = [];
      dropCaches();
      const job = await must(runChild(ourJob, { cwd: jobDir }), 'cold job');
      const bytes = (await servedNow()) - before;
      const objects = requests.filter((r) => r.path.includes('/data/'));
      if (trace !== undefined) {
        // GRIDBOX_BENCH_START_TRACE=DIR: each cold start's requests, the daemon logs and the profiles, to see what a start fetched.
        const n = ++traced;
        await mkdir(trace, { recursive: true });
        writeFileSync(join(trace, `cold-${n}-${profile ? 'profile' : 'none'}${server === url ? '' : '-slow'}.requests`), requests.map((r) => `${r.bytes} ${r.path}`).join('\n') + '\n');
        spawnSync('sh', ['-c', `cp -r "${join(work, 'run')}" "${join(trace, `run-${n}`)}"`]);
      }
      // A copy: the array keeps receiving the log lines of whatever runs next (the next mount's requests).
      return { mount, job: job.s, bytes, dupes: objects.length - new Set(objects.map((r) => r.path)).size, out: job.stdout.trim().split('\n').join(' / '), requests: [...requests] };
    };

    const m: { mount: number[]; coldBare: number[]; cold: number[]; warm: number[]; warmBare: number[]; bytesBare: number[]; bytes: number[]; dupes: number[];
      slowBare: number[]; slow: number[]; warmDropped: number[]; base: number[]; baseBare: number[]; baseSlow: number[]; baseSlowBare: number[]; peer: number[]; pull: number[]; unpack: number[]; peerJob: number[] } =
      { mount: [], coldBare: [], cold: [], warm: [], warmBare: [], bytesBare: [], bytes: [], dupes: [], slowBare: [], slow: [], warmDropped: [], base: [], baseBare: [], baseSlow: [], baseSlowBare: [], peer: [], pull: [], unpack: [], peerJob: [] };
    let outputs = '';
    let coldRequests: Array<{ path: string; bytes: number }> = [];
    for (let i = 0; i < rounds; i++) {
      // Ours, each cold start on a fresh mount and an empty cache: first with no start profile (the first start
      // of the image on a node; it records one), then with the profile it left (every later start there).
      const first = await coldStart(url, false);
      m.coldBare.push(first.job); m.bytesBare.push(first.bytes); m.mount.push(first.mount);
      const again = await coldStart(url, true);
      m.cold.push(again.job); m.bytes.push(again.bytes); m.dupes.push(again.dupes, first.dupes);
      coldRequests = again.requests;
      outputs = again.out;
      if (first.out !== outputs) throw new Error(`cold jobs disagree: "${first.out}" / "${outputs}"`);
      m.warm.push((await must(runChild(ourJob, { cwd: jobDir }), 'warm job')).s);
      // The floor for any prefetch: every object in the client cache, only the page cache dropped (the runtime's
      // own start from disk, the cache files read back); what a cold job takes beyond this is the network's.
      dropCaches();
      m.warmDropped.push((await must(runChild(ourJob, { cwd: jobDir }), 'job on a full cache, page cache dropped')).s);
      // The same warm job in bare bwrap on the same mounted tree: what the runtime adds vs what the FUSE path costs.
      m.warmBare.push((await must(runChild(['bwrap', '--ro-bind', join(mnt, tree), '/', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp',
        '--unshare-all', '--die-with-parent', '--chdir', '/', '/bin/sh', '-c', JOB]), 'warm job in bare bwrap')).s);
      // The same two cold starts with DELAY_MS per request (a stratum 1 across the WAN), as issue 11 measures.
      m.slowBare.push((await coldStart(slowUrl, false)).job);
      m.slow.push((await coldStart(slowUrl, true)).job);
      if (baseline !== undefined) {
        m.baseBare.push((await coldStart(url, false, baseline)).job);
        m.base.push((await coldStart(url, true, baseline)).job);
        m.baseSlowBare.push((await coldStart(slowUrl, false, baseline)).job);
        m.baseSlow.push((await coldStart(slowUrl, true, baseline)).job);
      }

      // The peer: pull the image, unpack it, run the same job in bwrap.
      const oci = join(work, 'oci'), bundle = join(work, 'bundle');
      await rm(oci, { recursive: true, force: true });
      await rm(bundle, { recursive: true, force: true });
      dropCaches();
      const pull = await must(runChild(['skopeo', 'copy', '--quiet', '--src-tls-verify=false', `docker://${world.reference}`, `oci:${oci}:bench`]), 'skopeo copy');
      const unpack = await must(runChild(['umoci', 'unpack', '--image', `${oci}:bench`, bundle]), 'umoci unpack');
      const job = await must(runChild(['bwrap', '--ro-bind', join(bundle, 'rootfs'), '/', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp',
        '--unshare-all', '--die-with-parent', '--chdir', '/', '/bin/sh', '-c', JOB]), 'bwrap job');
      m.pull.push(pull.s); m.unpack.push(unpack.s); m.peerJob.push(job.s);
      m.peer.push(pull.s + unpack.s + job.s);
      if (job.stdout.trim().split('\n').join(' / ') !== outputs) throw new Error(`the two jobs disagree: ours "${outputs}", peer "${job.stdout.trim()}"`);
    }
    await proxy.close();
    const cold = median(m.cold), coldBare = median(m.coldBare), mount = median(m.mount), peer = median(m.peer), bytes = median(m.bytes), warm = median(m.warm);
    const load = (await import('node:os')).loadavg()[0].toFixed(1);
    const pct = (b: number): string => `${((100 * b) / world.sizeBytes).toFixed(1)}%`;
    const catalogs = coldRequests.filter((r) => /C$/.test(r.path));
    return [
      `image: ${world.reference} (Debian bookworm, ${mib(world.sizeBytes)} compressed, ${mib(world.unpackedBytes)} in ${world.files} entries); job "${JOB}" -> ${outputs}`,
      `rounds: ${rounds}, interleaved, median shown; machine load average ${load} (shared machine: ratios matter, not absolute times)`,
      `each cold start: fresh mount, empty client cache, page cache dropped; "no profile": start-profiles removed (a node's first start of the image), "profile": the one the previous start left (every later start on that node)`,
      `(a) cold job via the shim, profile: ${s2(cold)}  [${all(m.cold)}]; no profile: ${s2(coldBare)}  [${all(m.coldBare)}]`,
      `(a) peer: skopeo copy + umoci unpack + the job in bwrap (page cache dropped): ${s2(peer)} = pull ${s2(median(m.pull))} + unpack ${s2(median(m.unpack))} + job ${s2(median(m.peerJob))}  [${all(m.peer)}]`,
      `(a) ratio peer / ours: profile ${(peer / cold).toFixed(1)}x, no profile ${(peer / coldBare).toFixed(1)}x (target >= 10x); with the mount counted: ${(peer / (cold + mount)).toFixed(1)}x / ${(peer / (coldBare + mount)).toFixed(1)}x`,
      `(b) bytes the cold job fetched (on the wire, counted at the server) / compressed image: profile ${mib(bytes)} = ${pct(bytes)}, no profile ${mib(median(m.bytesBare))} = ${pct(median(m.bytesBare))} of ${mib(world.sizeBytes)} (target <= 7%)  [${m.bytes.map((b) => mib(b)).join(' ')}]; objects fetched twice: ${m.dupes.reduce((a, b) => a + b, 0)}`,
      `(b) what the last cold job fetched: ${coldRequests.length} requests; catalogs ${mib(catalogs.reduce((n, r) => n + r.bytes, 0))} in ${catalogs.length}; largest: ${[...coldRequests].sort((a, b) => b.bytes - a.bytes).slice(0, 4).map((r) => `${r.path.replace(/^.*\/data\//, '')} ${mib(r.bytes)}`).join(', ')}`,
      `(c) warm job (same mount, cache and page cache warm): ${s2(warm)}  [${all(m.warm)}]; the same in bare bwrap on the mount ${s2(median(m.warmBare))} (runtime's share: the difference); the peer's job on its unpacked tree ${s2(median(m.peerJob))}`,
      `(c) full client cache, page cache dropped (the floor a cold job can reach by prefetching): ${s2(median(m.warmDropped))}  [${all(m.warmDropped)}]; peer / this floor: ${(peer / median(m.warmDropped)).toFixed(1)}x`,
      `(d) the mount itself, cold (empty cache, page cache dropped): ${s2(mount)}  [${all(m.mount)}]`,
      `(e) ${DELAY_MS} ms per request (latency proxy): cold job with profile ${s2(median(m.slow))} [${all(m.slow)}] = ${(median(m.slow) / warm).toFixed(2)}x warm; no profile ${s2(median(m.slowBare))} [${all(m.slowBare)}] = ${(median(m.slowBare) / warm).toFixed(2)}x warm; profile saves ${(median(m.slowBare) / median(m.slow)).toFixed(2)}x`,
      ...(baseline === undefined ? [] : [
        `(f) baseline daemon ${baseline}, same rounds: cold job profile ${s2(median(m.base))} [${all(m.base)}] (peer / it ${(peer / median(m.base)).toFixed(1)}x), no profile ${s2(median(m.baseBare))} [${all(m.baseBare)}]; `
        + `10 ms per request: profile ${s2(median(m.baseSlow))} [${all(m.baseSlow)}] = ${(median(m.baseSlow) / warm).toFixed(2)}x warm, no profile ${s2(median(m.baseSlowBare))} [${all(m.baseSlowBare)}]`,
      ]),
    ];
  } finally {
    if (mounted) spawnSync(process.execPath, [mountedBy, 'umount', mnt], { env });
    serve?.kill('SIGTERM');
    if (worldProc && worldProc.exitCode === null) {
      const exited = new Promise((r) => worldProc!.once('exit', r));
      worldProc.stdin?.end();
      await exited;
    }
    await rm(work, { recursive: true, force: true });
  }
}
