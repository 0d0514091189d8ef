// Issue 11's many-small-file start: the scientific corpus image (Debian + python3-numpy/scipy, built by
// testing/corpus.ts and cached there as rootfs.tar) ingested once into a repository under
// /var/tmp/gridbox-bench-mount, served through a loopback latency proxy (10 ms per request), mounted, and
// `python3 -c "import numpy, scipy.linalg, scipy.optimize, scipy.stats"` run in a chroot of the mounted image:
// cold on an empty cache without a start profile, cold again with the profile the first run recorded
// (vfs/start-profile.ts replays it in parallel), and warm. Rows: mount + job each way; target with the
// profile <= 2x warm. Skipped (one row saying why) when the corpus rootfs is not built.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRepository } from '../publish/create-repository.js';
import { ingestTar } from '../publish/tar-ingest.js';
import { DEFAULT_SETTINGS, repoLayout } from '../publish/repo-layout.js';
import { listenSrv } from '../server/srv-handler.js';
import { createReadStream } from 'node:fs';
import { startLatencyProxy } from './latency-proxy.js';
import { cliBinOf, runChild, must } from './run-child.js';

const FQRN = 'scientific.bench.org';
const IMAGE_AT = '/scientific';
const JOB = ['python3', '-c', 'import numpy, scipy.linalg, scipy.optimize, scipy.stats'];
const DELAY_MS = 10;

/** The corpus's scientific rootfs tar, if testing/corpus.ts has built it on this machine. */
export function scientificRootfs(): string | undefined {
  const base = process.env.GRIDBOX_TEST_CACHE ?? '/var/tmp/gridbox-test-cache';
  if (!existsSync(base)) return undefined;
  for (const d of readdirSync(base).sort()) {
    if (!d.startsWith('corpus-rootfs-scientific-') || d.endsWith('.lockdb')) continue;
    const tar = join(base, d, 'rootfs.tar');
    if (existsSync(join(base, d, 'done')) && existsSync(tar)) return tar;
  }
  return undefined;
}

/** The repository holding the image at /scientific, ingested once per rootfs (kept between runs). */
export async function scientificRepo(tar: string, dir: string): Promise<string> {
  const stamp = join(dir, 'built.json');
  const repo = join(dir, 'repo');
  const have = await readFile(stamp, 'utf8').then((t) => JSON.parse(t) as { tar: string }, () => undefined);
  if (have?.tar === tar) return repo;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const layout = repoLayout(repo, FQRN);
  await createRepository(layout, { ...DEFAULT_SETTINGS });
  await ingestTar(createReadStream(tar), { layout, settings: { ...DEFAULT_SETTINGS }, at: IMAGE_AT });
  await writeFile(stamp, JSON.stringify({ tar }));
  return repo;
}

export interface ScientificInput {
  main: string;
  tmp: string;
  dropCaches: () => void;
}

/** The scientific start rows (or one row saying why they were skipped). */
export async function scientificRows(o: ScientificInput): Promise<string[]> {
  const tar = scientificRootfs();
  if (tar === undefined) return ['scientific start: skipped (corpus rootfs not built: run a corpus test or bench start once)'];
  const dir = process.env.GRIDBOX_BENCH_SCIENTIFIC_DIR ?? '/var/tmp/gridbox-bench-mount/scientific-v1';
  const t0 = Date.now();
  const repo = await scientificRepo(tar, dir);
  const built = Date.now() - t0;
  const origin = await listenSrv({ srvDir: join(repo, 'srv') });
  const proxy = await startLatencyProxy({ port: new URL(origin.url).port === '' ? 80 : Number(new URL(origin.url).port), delayMs: DELAY_MS });
  const mnt = join(o.tmp, 'scimnt');
  await mkdir(mnt, { recursive: true });
  const env = { ...process.env, GRIDBOX_RUN_DIR: join(o.tmp, 'scirun'), GRIDBOX_CVMFS_CONFIG_DIR: join(o.tmp, 'scietc') };
  let mounted = false;
  const mount = async (cache: string): Promise<void> => {
    await must(runChild(cliBinOf(o.main), ['mount', FQRN, mnt, '--server', `${proxy.url(origin.url)}${FQRN}`, '--key', join(repo, 'keys', `${FQRN}.pub`), '--cache', cache], env), 'gridbox mount');
    mounted = true;
  };
  const umount = async (): Promise<void> => {
    await must(runChild(process.execPath, [o.main, 'umount', mnt], env), 'gridbox umount');
    mounted = false;
  };
  const job = async (): Promise<number> => {
    const s = process.hrtime.bigint();
    await must(runChild('chroot', [join(mnt, IMAGE_AT), ...JOB], { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/tmp' }), 'python3 job');
    return Number(process.hrtime.bigint() - s) / 1e9;
  };
  const timedStart = async (cache: string): Promise<number> => {
    execDrop(o);
    const s = process.hrtime.bigint();
    await mount(cache);
    await job();
    return Number(process.hrtime.bigint() - s) / 1e9;
  };
  try {
    // 1: empty cache, no profile (this run records one). 2: empty cache, the profile replayed. 3: warm.
    const cold = await timedStart(join(o.tmp, 'scicache1'));
    await umount();
    // The profile is written when the daemon flushes it at the unmount; a start without one would time nothing new.
    const profiles = join(o.tmp, 'scirun', 'start-profiles');
    if (!existsSync(profiles) || readdirSync(profiles).length === 0) throw new Error(`the first start left no start profile in ${profiles}`);
    const prefetched = await timedStart(join(o.tmp, 'scicache2'));
    const warm = await job();
    await umount();
    // The daemon's own account of the replay (files, bytes and how long it ran), from its log.
    const runDir = join(o.tmp, 'scirun');
    const replayLine = readdirSync(runDir).filter((f) => f.endsWith('.log'))
      .flatMap((f) => readFileSync(join(runDir, f), 'utf8').split('\n')).filter((l) => l.includes('start profile of')).pop();
    return [
      `scientific start (${DELAY_MS} ms per request via latency proxy; mount + python3 import numpy, scipy.*; image ingested ${built > 5000 ? `now in ${(built / 1000).toFixed(0)} s` : 'before'})`,
      `scientific cold, no profile     ${cold.toFixed(2)} s`,
      `scientific cold, start profile  ${prefetched.toFixed(2)} s | warm job ${warm.toFixed(2)} s | ${(prefetched / warm).toFixed(2)}x warm (target <= 2x); profile saves ${(cold / prefetched).toFixed(2)}x`,
      `scientific replay: ${replayLine?.replace(/^\S+ /, '') ?? 'not logged'}`,
    ];
  } finally {
    if (mounted) await runChild(process.execPath, [o.main, 'umount', mnt], env);
    await proxy.close();
    await origin.close();
  }
}

function execDrop(o: ScientificInput): void {
  o.dropCaches();
}
