// `npm run bench start`: the seed's headline, how fast a job starts in an image it has never seen. The Debian
// corpus image (mmdebstrap) is pushed to a loopback docker-registry and synced into a repository that is served
// and mounted; the job `perl -e 1; ls /usr/bin | wc -l; dpkg -l | wc -l` runs through our apptainer shim with
// GlideinWMS's flags. Beside it, in the same rounds, the peer: skopeo copy + umoci unpack + the same job in
// bwrap. Rows: (a) cold start to exit and the ratio, (b) bytes fetched / compressed image size, (c) warm start,
// (d) the mount itself, cold. Root only (drop_caches, FUSE). Benchmarks are not tests: nothing asserts on time.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const FQRN = 'bench.start.org';
const JOB = 'perl -e 1; ls /usr/bin | wc -l; dpkg -l | wc -l';
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
  const gridbox = (args: string[], what: string): Promise<Run> => must(runChild([process.execPath, MAIN, ...args], { env }), what);
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

    const m: { mount: number[]; cold: number[]; warm: number[]; warmBare: number[]; bytes: number[]; peer: number[]; pull: number[]; unpack: number[]; peerJob: number[] } =
      { mount: [], cold: [], warm: [], warmBare: [], bytes: [], peer: [], pull: [], unpack: [], peerJob: [] };
    let outputs = '';
    let coldRequests: Array<{ path: string; bytes: number }> = [];
    for (let i = 0; i < rounds; i++) {
      // Ours: a fresh mount with an empty cache (d), then the cold job (a, b) and the warm one (c).
      if (mounted) { await gridbox(['umount', mnt], 'umount'); mounted = false; }
      await rm(join(work, 'cache'), { recursive: true, force: true });
      dropCaches();
      m.mount.push((await gridbox(['mount', FQRN, mnt, '--server', url, '--keys', join(root, 'keys'), '--cache', join(work, 'cache')], 'mount')).s);
      mounted = true;
      const before = await servedNow();
      requests = [];
      dropCaches();
      const cold = await must(runChild(ourJob, { cwd: jobDir }), 'cold job');
      m.cold.push(cold.s);
      m.bytes.push((await servedNow()) - before);
      coldRequests = requests;
      m.warm.push((await must(runChild(ourJob, { cwd: jobDir }), 'warm job')).s);
      // The same warm job in bare bwrap on the same mounted tree: what the runtime adds vs what the FUSE path costs.
      m.warmBare.push((await must(runChild(['bwrap', '--ro-bind', join(mnt, tree), '/', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp',
        '--unshare-all', '--die-with-parent', '--chdir', '/', '/bin/sh', '-c', JOB]), 'warm job in bare bwrap')).s);
      outputs = cold.stdout.trim().split('\n').join(' / ');

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
    const cold = median(m.cold), mount = median(m.mount), peer = median(m.peer), bytes = median(m.bytes);
    const load = (await import('node:os')).loadavg()[0].toFixed(1);
    return [
      `image: ${world.reference} (Debian bookworm, ${mib(world.sizeBytes)} compressed, ${mib(world.unpackedBytes)} in ${world.files} entries); job "${JOB}" -> ${outputs}`,
      `rounds: ${rounds}, interleaved, median shown; machine load average ${load} (shared machine: ratios matter, not absolute times)`,
      `(a) cold job via the shim (repository mounted, empty client cache, page cache dropped): ${s2(cold)}  [${all(m.cold)}]`,
      `(a) peer: skopeo copy + umoci unpack + the job in bwrap (page cache dropped): ${s2(peer)} = pull ${s2(median(m.pull))} + unpack ${s2(median(m.unpack))} + job ${s2(median(m.peerJob))}  [${all(m.peer)}]`,
      `(a) ratio peer / ours: ${(peer / cold).toFixed(1)}x (target >= 10x); with the mount counted: ${(peer / (cold + mount)).toFixed(1)}x`,
      `(b) bytes the cold job fetched (on the wire, counted at the server) / compressed image: ${mib(bytes)} / ${mib(world.sizeBytes)} = ${((100 * bytes) / world.sizeBytes).toFixed(1)}% (target <= 7%)  [${m.bytes.map((b) => mib(b)).join(' ')}]`,
      `(b) what the last cold job fetched: ${coldRequests.length} requests; catalogs ${mib(coldRequests.filter((r) => /C$/.test(r.path)).reduce((n, r) => n + r.bytes, 0))} in ${coldRequests.filter((r) => /C$/.test(r.path)).length}; largest: ${[...coldRequests].sort((a, b) => b.bytes - a.bytes).slice(0, 4).map((r) => `${r.path.replace(/^.*\/data\//, '')} ${mib(r.bytes)}`).join(', ')}`,
      `(c) warm job (same mount, cache and page cache warm): ${s2(median(m.warm))}  [${all(m.warm)}]; the same in bare bwrap on the mount ${s2(median(m.warmBare))} (runtime's share: the difference); the peer's job on its unpacked tree ${s2(median(m.peerJob))}`,
      `(d) the mount itself, cold (empty cache, page cache dropped): ${s2(mount)}  [${all(m.mount)}]`,
    ];
  } finally {
    if (mounted) spawnSync(process.execPath, [MAIN, 'umount', mnt], { env });
    serve?.kill('SIGTERM');
    if (worldProc && worldProc.exitCode === null) {
      const exited = new Promise((r) => worldProc!.once('exit', r));
      worldProc.stdin?.end();
      await exited;
    }
    await rm(work, { recursive: true, force: true });
  }
}
