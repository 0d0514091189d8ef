// `npm run demo`: the whole chain on real parts, as a site would run it. A real Debian image (mmdebstrap,
// cached by the corpus) and a busybox image are pushed to a loopback docker-registry, synced into a
// repository, served, mounted with FUSE; `gridbox pilot setup` tests the runtime; two jobs run as an
// unprivileged user (uid 65534) and land by REQUIRED_OS in different images; cold and warm starts and the
// bytes fetched are printed against the image size, then `gridbox report`; everything is cleaned up.
// It lives in testing/ because it drives the test harness (registry, corpus); it uses only the public CLI.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { corpusUnavailable, ensureCorpusImage, pushCorpusImage, type CorpusImage } from './corpus.js';
import { haveRegistry, startRegistry, type TestRegistry } from './registry.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const FQRN = 'demo.gridbox.local';
const NOBODY = 65534;
const JOB_DEBIAN = 'perl -e 1; echo "usr/bin: $(ls /usr/bin | wc -l) files, dpkg: $(dpkg -l | wc -l) lines"; . /etc/os-release; echo "inside: $PRETTY_NAME as uid $(id -u)"';
const JOB_BUSYBOX = 'echo "inside: $(busybox | head -1 | cut -d" " -f1-2) as uid $(id -u)"';

interface Run { code: number | null; stdout: string; stderr: string; ms: number }

function run(argv: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(argv[0], argv.slice(1), { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 600_000);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr, ms: performance.now() - t }); });
  });
}

async function gridbox(args: string[], env: NodeJS.ProcessEnv, what: string, asNobody = false, cwd?: string): Promise<Run> {
  // `mount` through bin/gridbox, as a site runs it (no node front: src/mountd/daemon-report.ts).
  const argv = args[0] === 'mount' ? [join(dirname(MAIN), '..', '..', 'bin', 'gridbox'), ...args] : [process.execPath, MAIN, ...args];
  const r = await run(asNobody ? ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', ...argv] : argv, { env, cwd });
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  return r;
}

/**
 * Arguments that make `gridbox serve` log each request on stderr: the newer serve takes `--access-log -`
 * (Common Log Format, buffered) and runs one worker per core unless told; the older one logs by default.
 */
export function serveLogArgs(): string[] {
  const help = spawnSync(process.execPath, [MAIN, 'serve', '--help'], { encoding: 'utf8' }).stdout;
  return [...(help.includes('--access-log') ? ['--access-log', '-'] : []), ...(help.includes('--workers') ? ['--workers', '1'] : [])];
}

/** Sums the body bytes of logged requests (`... STATUS BYTES` ends both log formats); `now()` waits for buffered lines. */
export function countServedBytes(stderr: NodeJS.ReadableStream): { now(): Promise<number> } {
  let served = 0;
  // "... STATUS BYTES" (older serve) or "... STATUS BYTES SECONDS" (Common Log Format plus the request time).
  createInterface({ input: stderr }).on('line', (l) => { const m = /" (\d{3}) (\d+)(?: [\d.]+)?$/.exec(l); if (m) served += Number(m[2]); });
  // The access log is flushed every 200 ms; a loaded machine may run that timer late.
  return { now: async () => { await new Promise((r) => setTimeout(r, 1500)); return served; } };
}

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;
const secs = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const indent = (s: string): string => s.trimEnd().split('\n').map((l) => `    ${l}`).join('\n');

/** A directory the unprivileged job user owns (job dirs, the glidein dir). */
function nobodyDir(path: string): string {
  mkdirSync(path, { recursive: true });
  chownSync(path, NOBODY, NOBODY);
  return path;
}

export async function runRealDemo(opts: { keep?: boolean; svg?: string } = {}): Promise<number> {
  const t0 = performance.now();
  const say = (s: string): void => { process.stdout.write(`demo: ${s}\n`); };
  const why = corpusUnavailable() ?? (haveRegistry() ? undefined : 'docker-registry is not installed');
  if (why) { process.stderr.write(`demo: cannot run on real parts here: ${why}\n`); return 2; }
  const work = mkdtempSync(join(tmpdir(), 'gridbox-demo-'));
  chmodSync(work, 0o755);
  let registry: TestRegistry | undefined;
  let server: ChildProcess | undefined;
  let mounted: string | undefined;
  const env: NodeJS.ProcessEnv = { ...process.env, GRIDBOX_RUN_DIR: join(work, 'run') };
  try {
    // 1. Images: built once per recipe by the corpus (mmdebstrap), then reused from its cache.
    let t = performance.now();
    const [debian, busybox]: CorpusImage[] = await Promise.all([ensureCorpusImage('debian'), ensureCorpusImage('busybox')]);
    say(`Debian bookworm image ready (${mib(debian.sizeBytes)} compressed, ${mib(debian.unpackedBytes)} in ${debian.files} entries) and busybox (${mib(busybox.sizeBytes)}) in ${secs(performance.now() - t)} (built with mmdebstrap once, then cached)`);
    registry = await startRegistry(join(work, 'registry'));
    t = performance.now();
    await pushCorpusImage(registry.url, 'debian', 'corpus/debian:12');
    await pushCorpusImage(registry.url, 'busybox', 'corpus/busybox:1');
    say(`pushed both to a docker-registry on ${registry.url} in ${secs(performance.now() - t)}`);

    // 2. The repository: synced from the registry, served on loopback.
    const root = join(work, 'stratum0');
    await gridbox(['mkfs', FQRN, '--root', root], env, 'mkfs');
    const list = join(work, 'docker_images.txt');
    const names = [`${registry.host}/corpus/debian:12`, `${registry.host}/corpus/busybox:1`];
    writeFileSync(list, `${names.join('\n')}\n`);
    const sync = await gridbox(['sync', list, '--repo', FQRN, '--root', root], env, 'sync');
    say(`gridbox sync published both images into ${FQRN} in ${secs(sync.ms)}:\n${indent(sync.stdout)}`);
    // The server's request log on stderr counts the bytes on the wire per job.
    server = spawn(process.execPath, [MAIN, 'serve', '--root', root, '--listen', '127.0.0.1:0', ...serveLogArgs()], { stdio: ['ignore', 'pipe', 'pipe'] });
    const counter = countServedBytes(server.stderr!);
    const servedNow = counter.now;
    const first = await new Promise<string>((resolve, reject) => {
      createInterface({ input: server!.stdout! }).once('line', resolve);
      server!.once('exit', (c) => reject(new Error(`gridbox serve exited with ${c}`)));
    });
    const url = `${/(http:\/\/127\.0\.0\.1:\d+)/.exec(first)![1]}/cvmfs/${FQRN}`;
    say(`serving ${url}`);

    // 3. The worker node: mount where CVMFS_MOUNT_DIR says, empty cache.
    const cvmfs = join(work, 'cvmfs');
    const mnt = join(cvmfs, FQRN);
    mkdirSync(mnt, { recursive: true });
    const mount = await gridbox(['mount', FQRN, mnt, '--server', url, '--keys', join(root, 'keys'), '--cache', join(work, 'cache')], env, 'mount');
    mounted = mnt;
    say(`mounted at ${mnt} in ${secs(mount.ms)} (FUSE, empty client cache)`);

    // 4. The glidein: pilot setup as the unprivileged pilot user, our runtime found and tested on the mount.
    const img = (n: string): string => `/cvmfs/${FQRN}/${n}`;
    const dict = `debian12:${img(names[0])},busybox1:${img(names[1])},default:${img(names[1])}`;
    const glidein = nobodyDir(join(work, 'glidein'));
    const config = join(glidein, 'glidein_config');
    writeFileSync(config, [
      'GLIDEIN_Singularity_Use PREFERRED', 'GLIDEIN_SINGULARITY_REQUIRE REQUIRED', 'SINGULARITY_BIN GRIDBOX',
      `CVMFS_MOUNT_DIR ${cvmfs}`, `SINGULARITY_IMAGES_DICT ${dict}`, `GLIDEIN_WORK_DIR ${glidein}`, '',
    ].join('\n'));
    chownSync(config, NOBODY, NOBODY);
    const jobEnv = { PATH: '/usr/bin:/bin', HOME: '/nonexistent', LANG: 'C.UTF-8', GRIDBOX_ACCOUNTING_DB: join(nobodyDir(join(work, 'accounting')), 'accounting.db') };
    const setup = await gridbox(['pilot', 'setup', config, '--quiet'], jobEnv, 'pilot setup', true, glidein);
    const gc = new Map(readFileSync(config, 'utf8').split('\n').filter((l) => l.includes(' ')).map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)] as [string, string]));
    say(`pilot setup (as uid ${NOBODY}) in ${secs(setup.ms)}: HAS_SINGULARITY=${gc.get('HAS_SINGULARITY')} status ${gc.get('GWMS_SINGULARITY_STATUS')}, ${gc.get('SINGULARITY_MODE')} mode, runtime ${gc.get('SINGULARITY_PATH')} (apptainer ${gc.get('SINGULARITY_VERSION')})`);
    if (gc.get('HAS_SINGULARITY') !== 'True') throw new Error(`pilot setup advertised no containers:\n${readFileSync(join(glidein, 'gridbox-setup.json'), 'utf8')}`);
    // What HTCondor would publish from condor_vars into the machine ad.
    const machineAd = join(glidein, '.machine.ad');
    writeFileSync(machineAd, ['HAS_SINGULARITY', 'GWMS_SINGULARITY_STATUS', 'SINGULARITY_PATH', 'SINGULARITY_VERSION', 'SINGULARITY_MODE', 'GLIDEIN_REQUIRED_OS', 'SINGULARITY_IMAGES_DICT']
      .map((k) => (k === 'HAS_SINGULARITY' ? `${k} = ${gc.get(k)}` : `${k} = "${gc.get(k)}"`)).join('\n') + '\n');

    // 5. Two jobs, each twice: REQUIRED_OS picks the image; cold (empty cache) and warm.
    const jobs: Array<{ os: string; script: string; image: CorpusImage; label: string }> = [
      { os: 'debian12', script: JOB_DEBIAN, image: debian, label: 'Debian' },
      { os: 'busybox1', script: JOB_BUSYBOX, image: busybox, label: 'busybox' },
    ];
    const results: Array<{ label: string; round: string; ms: number; out: string }> = [];
    let n = 0;
    for (const round of ['cold', 'warm']) {
      for (const j of jobs) {
        const dir = nobodyDir(join(work, 'execute', `dir_${++n}`));
        writeFileSync(join(dir, '.job.ad'), `REQUIRED_OS = "${j.os}"\nOwner = "nobody"\n`);
        const e = { ...jobEnv, _CONDOR_JOB_AD: join(dir, '.job.ad'), _CONDOR_MACHINE_AD: machineAd, _CONDOR_SCRATCH_DIR: dir, SINGULARITY_IMAGES_DICT: dict, CVMFS_MOUNT_DIR: cvmfs };
        const before = await servedNow();
        const r = await gridbox(['pilot', 'job', '--', '/bin/sh', '-c', j.script], e, `job ${j.os}`, true, dir);
        const wire = (await servedNow()) - before;
        results.push({ label: j.label, round, ms: r.ms, out: r.stdout });
        const note = round === 'cold' && j.os === 'busybox1' ? ': the setup probe already ran `cat` in this default image' : '';
        say(`job ${n} (uid ${NOBODY}, REQUIRED_OS ${j.os}, ${round}${note}) took ${secs(r.ms)}, ${mib(wire)} on the wire = ${((100 * wire) / j.image.sizeBytes).toFixed(1)}% of the ${mib(j.image.sizeBytes)} compressed image:\n${indent(r.stdout)}`);
      }
    }

    // 6. The accounting: what each start fetched against the image's size, then the report.
    const { openAccountingDb, listStarts } = await import('../accounting/accounting-db.js');
    const db = openAccountingDb(jobEnv.GRIDBOX_ACCOUNTING_DB, { readonly: true });
    const recs = listStarts(db).filter((r) => r.via === 'pilot');
    db.close();
    say('container starts as the accounting recorded them (first instruction = the sandbox process exists; bytes = the mount\'s own user.rx counter meanwhile, which counts inflated bytes until the client\'s wire counter lands; the wire bytes are above):');
    recs.forEach((r, i) => {
      const size = r.imageName.includes('debian') ? debian.sizeBytes : busybox.sizeBytes;
      const pct = r.bytesFetched === null ? '-' : `${((100 * r.bytesFetched) / size).toFixed(1)}% of the ${mib(size)} compressed image`;
      say(`  ${i < jobs.length ? 'cold' : 'warm'} ${r.imageName}: first instruction ${r.firstInstructionMs ?? '-'} ms, exit after ${r.exitMs} ms, fetched ${r.bytesFetched === null ? '-' : mib(r.bytesFetched)} (${pct})`);
    });
    const svg = opts.svg ?? join(tmpdir(), 'gridbox-demo-report.svg');
    const report = await gridbox(['report', '--db', jobEnv.GRIDBOX_ACCOUNTING_DB, '--svg', svg], env, 'report');
    say(`gridbox report:\n${indent(report.stdout)}`);

    const status = await gridbox(['status', mnt], env, 'status');
    say(`mount status:\n${indent(status.stdout)}`);
    await gridbox(['umount', mnt], env, 'umount');
    mounted = undefined;
    say('unmounted');
    return 0;
  } finally {
    if (mounted !== undefined) spawnSync(process.execPath, [MAIN, 'umount', '--lazy', mounted], { env });
    if (server) {
      const exited = new Promise((r) => server!.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    }
    await registry?.stop();
    const left = readFileSync('/proc/self/mountinfo', 'utf8').includes(work);
    if (opts.keep) say(`work dir kept: ${work}`);
    else rmSync(work, { recursive: true, force: true });
    say(`cleaned up: ${left ? 'A MOUNT IS LEFT' : 'no mount left'}, serve and registry stopped, ${opts.keep ? 'work dir kept' : 'work dir removed'}; total ${secs(performance.now() - t0)}`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runRealDemo({ keep: process.argv.includes('--keep') }).then((c) => { process.exitCode = c; }, (e: unknown) => {
    process.stderr.write(`demo: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  });
}
