// Mount benchmark (issues 5, 11): gridbox mount vs squashfuse_ll on a squashfs image (mksquashfs gzip) of the
// same tree and vs the tree itself on ext4, in one run: whole-tree read (`tar cf - . | wc -c`) with objects in
// our local cache and the page cache dropped, with and without FUSE passthrough (no start profile; one row with the
// profile the first read left); `find -printf %s` warm; the
// first read with an empty cache from a loopback server; `gridbox mount` on an empty cache and `gridbox
// umount` until the daemon is gone.
// Start steps (issue 11) beside the stock cvmfs2 when /var/tmp/cvmfs-ref holds one (bench/stock-cvmfs.ts): mount on
// an empty cache, a job on it (cat of 40 files and a stat of 400), remount on the full cache + the job, unmount.
// The scientific image's python start cold with and without the start profile: mount-scientific.ts
// (GRIDBOX_BENCH_MOUNT_SCIENTIFIC=0 skips it).
// Knobs: GRIDBOX_BENCH_MOUNT_MB (256), _FILES (20000), _ROUNDS (3), _COLD_ROUNDS (1), _DIR (tree kept between runs). Root only.
import { execSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRepository } from '../publish/create-repository.js';
import { publishDirectory } from '../publish/publisher.js';
import { DEFAULT_SETTINGS, repoLayout } from '../publish/repo-layout.js';
import { listenSrv } from '../server/srv-handler.js';
import { copyCapped } from './copy-tree.js';
import { findStockCvmfs, mountStock } from './stock-cvmfs.js';
import { scientificRows } from './mount-scientific.js';
import { cliBinOf, runChild, must, waitGone } from './run-child.js';
import { readMountRecord } from '../mountd/run-dir.js';

const FQRN = 'bench.mount.org';

/** Seconds a shell command takes, measured inside the shell (no spawn cost), and its stdout's first line. */
async function timed(dir: string, command: string): Promise<{ s: number; out: string }> {
  const out = await must(runChild('bash', ['-c', `cd ${JSON.stringify(dir)} && s=$(date +%s%N) && r=$(${command}) && e=$(date +%s%N) && echo "$(( e - s )) $r"`]), command);
  const [ns, ...rest] = out.trim().split(' ');
  return { s: Number(ns) / 1e9, out: rest.join(' ') };
}

function dropCaches(): void {
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mbps = (bytes: number, s: number): string => `${(bytes / 1048576 / s).toFixed(0)} MB/s`;

/** The tree, its repository and its squashfs image, built once per size and reused (publishing 256 MB takes a while). */
async function benchTree(dir: string, maxMb: number, maxFiles: number): Promise<{ files: number; bytes: number; src: string; repo: string; sqfs: string }> {
  const stamp = join(dir, 'built.json');
  const src = join(dir, 'src'), repo = join(dir, 'repo'), sqfs = join(dir, 'tree.sqfs');
  const have = await readFile(stamp, 'utf8').then((t) => JSON.parse(t) as { files: number; bytes: number }, () => undefined);
  if (have !== undefined) return { ...have, src, repo, sqfs };
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const tree = await copyCapped([{ dir: '/usr/share', share: 1 }], src, maxMb * 1048576, maxFiles);
  const layout = repoLayout(repo, FQRN);
  await createRepository(layout, { ...DEFAULT_SETTINGS });
  await publishDirectory(src, { layout, settings: { ...DEFAULT_SETTINGS } });
  await must(runChild('mksquashfs', [src, sqfs, '-comp', 'gzip', '-noappend', '-quiet', '-no-progress']), 'mksquashfs');
  await writeFile(stamp, JSON.stringify(tree));
  return { ...tree, src, repo, sqfs };
}

/** `mount X` row cells: seconds and MB/s. */
const cell = (s: number, bytes: number): string => `${s.toFixed(2)} s  ${mbps(bytes, s)}`;

export async function run(): Promise<string[]> {
  if (process.getuid?.() !== 0) return ['(mount bench skipped: needs root for drop_caches and a host mount)'];
  for (const tool of ['/usr/bin/squashfuse_ll', '/usr/bin/mksquashfs']) if (!existsSync(tool)) return [`(mount bench skipped: ${tool} missing)`];
  const maxMb = Number(process.env.GRIDBOX_BENCH_MOUNT_MB ?? 256);
  const maxFiles = Number(process.env.GRIDBOX_BENCH_MOUNT_FILES ?? 20_000);
  const rounds = Number(process.env.GRIDBOX_BENCH_MOUNT_ROUNDS ?? 3);
  const treeDir = process.env.GRIDBOX_BENCH_MOUNT_DIR ?? `/var/tmp/gridbox-bench-mount/v1-${maxMb}mb-${maxFiles}`;
  const tmp = await mkdtemp(join(tmpdir(), 'gridbox-bench-mount-'));
  const main = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  const env = { ...process.env, GRIDBOX_RUN_DIR: join(tmp, 'run'), GRIDBOX_CVMFS_CONFIG_DIR: join(tmp, 'etc') };
  const ours = join(tmp, 'mnt'), theirs = join(tmp, 'sqmnt');
  const rows: string[] = [];
  let origin: Awaited<ReturnType<typeof listenSrv>> | undefined;
  let mounted = false, sqMounted = false;
  try {
    const tree = await benchTree(treeDir, maxMb, maxFiles);
    rows.push(`tree: ${tree.files} files, ${(tree.bytes / 1048576).toFixed(0)} MB from /usr/share (kept in ${treeDir}); medians of ${rounds} interleaved rounds, page cache dropped before each cold read`);
    origin = await listenSrv({ srvDir: join(tree.repo, 'srv') });
    await mkdir(ours);
    await mkdir(theirs);
    const mountOurs = async (cache: string, extra: string[] = []): Promise<number> => {
      const t0 = process.hrtime.bigint();
      await must(runChild(cliBinOf(main), ['mount', FQRN, ours, '--server', `${origin!.url}${FQRN}`, '--key', join(tree.repo, 'keys', `${FQRN}.pub`), '--cache', cache, ...extra], env), 'gridbox mount');
      mounted = true;
      return Number(process.hrtime.bigint() - t0) / 1e9;
    };
    /** umount returns once the daemon has exited. */
    const umountOurs = async (): Promise<number> => {
      const t0 = process.hrtime.bigint();
      await must(runChild(process.execPath, [main, 'umount', ours], env), 'gridbox umount');
      mounted = false;
      return Number(process.hrtime.bigint() - t0) / 1e9;
    };
    /** The start steps' unmount, done as for the stock client: umount(8), then until the daemon is gone. */
    const umountSystem = async (): Promise<number> => {
      const rec = await readMountRecord(env.GRIDBOX_RUN_DIR, ours);
      if (rec === undefined) throw new Error(`no mount record for ${ours}`);
      const t0 = process.hrtime.bigint();
      await must(runChild('umount', [ours]), 'umount');
      await waitGone([rec.pid], 'gridbox mount daemon');
      mounted = false;
      return Number(process.hrtime.bigint() - t0) / 1e9;
    };
    const readTree = async (dir: string): Promise<{ s: number; bytes: number }> => {
      execSync('sync');
      dropCaches();
      const t = await timed(dir, 'tar cf - . | wc -c');
      return { s: t.s, bytes: Number(t.out) };
    };

    // First read: empty cache, objects from the loopback server.
    const firsts: number[] = [];
    let bytes = 0;
    // Each round downloads the whole tree; GRIDBOX_BENCH_MOUNT_COLD_ROUNDS asks for more than one.
    const coldRounds = Number(process.env.GRIDBOX_BENCH_MOUNT_COLD_ROUNDS ?? 1);
    const mountCold: number[] = [], unmounts: number[] = [];
    for (let r = 0; r < coldRounds; r++) {
      mountCold.push(await mountOurs(join(tmp, `cold${r}`)));
      const t = await readTree(ours);
      firsts.push(t.s);
      bytes = t.bytes;
      unmounts.push(await umountOurs());
      await rm(join(tmp, `cold${r}`), { recursive: true, force: true });
    }
    // Mount and unmount alone, on an empty cache each time.
    for (let r = 0; r < rounds; r++) {
      mountCold.push(await mountOurs(join(tmp, `mc${r}`)));
      unmounts.push(await umountOurs());
      await rm(join(tmp, `mc${r}`), { recursive: true, force: true });
    }

    // Cached tree reads, the local cache filled: page cache dropped before each cold read ("read-cached"), kept
    // for the warm one; then find warm. The default mount (openless, no passthrough) interleaved with
    // squashfuse_ll and ext4; then the same mount with --passthrough.
    const tar = 'tar cf - . | wc -c';
    // Without a start profile, like squashfuse_ll: the first-read rounds recorded the whole tree as a "start"
    // (vfs/start-profile.ts), whose replay (20,000 lookups) competes with the tar. Its effect gets its own row.
    const profiles = join(env.GRIDBOX_RUN_DIR, 'start-profiles'), firstReadProfiles = join(tmp, 'first-read-profiles');
    await rename(profiles, firstReadProfiles).catch(() => undefined);
    await mountOurs(join(tmp, 'cache'));
    await timed(ours, tar);
    await must(runChild('squashfuse_ll', [tree.sqfs, theirs]), 'squashfuse_ll');
    sqMounted = true;
    const readNoPt: number[] = [], readTheirs: number[] = [], readExt4: number[] = [], findOurs: number[] = [], findTheirs: number[] = [];
    const warmNoPt: number[] = [], warmTheirs: number[] = [], warmPt: number[] = [], readOurs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      readNoPt.push((await readTree(ours)).s);
      readTheirs.push((await readTree(theirs)).s);
      readExt4.push((await readTree(tree.src)).s);
    }
    for (let r = 0; r < rounds; r++) {
      warmNoPt.push((await timed(ours, tar)).s);
      warmTheirs.push((await timed(theirs, tar)).s);
    }
    // Warm: one untimed find each first, so both kernels hold every entry and attribute.
    const find = "find . -printf '%s\\n' | wc -l";
    await timed(ours, find);
    await timed(theirs, find);
    for (let r = 0; r < rounds; r++) {
      findOurs.push((await timed(ours, find)).s);
      findTheirs.push((await timed(theirs, find)).s);
    }
    await umountOurs();
    await rm(profiles, { recursive: true, force: true });
    await mountOurs(join(tmp, 'cache'), ['--passthrough']);
    for (let r = 0; r < rounds; r++) readOurs.push((await readTree(ours)).s);
    for (let r = 0; r < rounds; r++) warmPt.push((await timed(ours, tar)).s);
    await umountOurs();
    // The default mount without the addon's fast READs: every READ answered in the daemon's JavaScript.
    const readJs: number[] = [];
    await rm(profiles, { recursive: true, force: true });
    await mountOurs(join(tmp, 'cache'), ['--no-fast-read']);
    for (let r = 0; r < rounds; r++) readJs.push((await readTree(ours)).s);
    await umountOurs();
    // The default mount again, with the profile the first read left replayed at each mount.
    const readProfiled: number[] = [];
    for (let r = 0; r < rounds && existsSync(firstReadProfiles); r++) {
      await rm(profiles, { recursive: true, force: true });
      await must(runChild('cp', ['-r', firstReadProfiles, profiles]), 'cp profiles');
      await mountOurs(join(tmp, 'cache'));
      readProfiled.push((await readTree(ours)).s);
      await umountOurs();
    }

    rows.push(...await startSteps({ tree, origin: origin!, tmp, rounds, mountOurs, umountOurs, umountSystem, ours, profiles: join(env.GRIDBOX_RUN_DIR, 'start-profiles') }));

    if (process.env.GRIDBOX_BENCH_MOUNT_SCIENTIFIC !== '0') {
      try {
        rows.push(...await scientificRows({ main, tmp, dropCaches }));
      } catch (e) {
        rows.push(`scientific start: failed: ${(e as Error).message}`);
      }
    }

    const ro = median(readOurs), rt = median(readTheirs), fo = median(findOurs), ft = median(findTheirs), fr = median(firsts);
    const rn = median(readNoPt), re = median(readExt4);
    const wn = median(warmNoPt), wt = median(warmTheirs), wp = median(warmPt);
    rows.push(`mount read-cached  gridbox openless (default) ${cell(rn, bytes)} | squashfuse_ll ${cell(rt, bytes)} | ${(rt / rn).toFixed(2)}x squashfuse_ll (target >= 2x) | ext4 ${cell(re, bytes)}: ${(rn / re).toFixed(2)}x ext4's time (target <= 1.3x)`);
    rows.push(`mount read-cached  gridbox --passthrough ${cell(ro, bytes)} | ${(rt / ro).toFixed(2)}x squashfuse_ll | ${(ro / re).toFixed(2)}x ext4's time`);
    const rj = median(readJs);
    rows.push(`mount read-cached  gridbox openless --no-fast-read (every READ in JavaScript) ${cell(rj, bytes)} | ${(rt / rj).toFixed(2)}x squashfuse_ll | ${(rj / re).toFixed(2)}x ext4's time | fast READs / this: ${(rn / rj).toFixed(2)}x`);
    if (readProfiled.length > 0) rows.push(`mount read-cached  gridbox openless, replaying the first read's start profile (fresh mount each round) ${cell(median(readProfiled), bytes)} | ${(rt / median(readProfiled)).toFixed(2)}x squashfuse_ll`);
    rows.push(`mount read-warm    gridbox openless ${(wn * 1000).toFixed(0)} ms | squashfuse_ll ${(wt * 1000).toFixed(0)} ms | ${(wt / wn).toFixed(2)}x squashfuse_ll | --passthrough ${(wp * 1000).toFixed(0)} ms (page cache kept: tar of the tree again)`);
    rows.push(`mount cold         gridbox mount, empty cache: median ${(median(mountCold) * 1000).toFixed(0)} ms (n=${mountCold.length}; stock cvmfs2 0.43 s in issue 11)`);
    rows.push(`umount             gridbox umount until the daemon is gone: median ${(median(unmounts) * 1000).toFixed(0)} ms (n=${unmounts.length})`);
    rows.push(`mount find-warm    gridbox ${(fo * 1000).toFixed(1)} ms | squashfuse_ll ${(ft * 1000).toFixed(1)} ms | ${(ft / fo).toFixed(2)}x (target >= 3x)`);
    rows.push(`mount first-read   gridbox ${cell(fr, bytes)}  ${(fr * 1e6 / tree.files).toFixed(0)} us/file (empty cache, loopback server, ${coldRounds} round${coldRounds > 1 ? 's' : ''})`);
  } finally {
    if (sqMounted) await runChild('umount', [theirs]);
    if (mounted) await runChild(process.execPath, [main, 'umount', ours], env);
    await origin?.close();
    await rm(tmp, { recursive: true, force: true });
  }
  return rows;
}

/** The small job of the start rows: 400 entries stat'ed, 40 files read, in a fixed order. */
const JOB = "find . -maxdepth 4 | sort | head -400 | xargs -d '\\n' stat -c %s | wc -l >/dev/null && find . -type f -size -64k | sort | head -40 | xargs -d '\\n' cat | wc -c";

interface StartStepsInput {
  tree: { repo: string };
  origin: { url: string };
  tmp: string;
  rounds: number;
  mountOurs: (cache: string, extra?: string[]) => Promise<number>;
  umountOurs: () => Promise<number>;
  /** umount(8) and wait for the daemon, the procedure the stock column uses. */
  umountSystem: () => Promise<number>;
  ours: string;
  /** The daemon's start-profile directory (removed before each first-start mount). */
  profiles: string;
}

/**
 * Issue 11's start steps, ours and the stock client's interleaved, medians: mount on an empty cache; the job on
 * that fresh mount; unmount until the client is gone; remount on the full cache + the job. Page cache dropped
 * before each step's mount so both read their caches from disk.
 */
async function startSteps(o: StartStepsInput): Promise<string[]> {
  const stock = findStockCvmfs();
  const stockMnt = join(o.tmp, 'stockmnt');
  await mkdir(stockMnt, { recursive: true });
  const secs = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;
  const steps = { mount: [[], []], job: [[], []], remount: [[], []], unmount: [[], []] } as Record<string, [number[], number[]]>;
  let jobOut: [string, string] = ['', ''];
  let stockError: string | undefined;
  for (let r = 0; r < o.rounds; r++) {
    // Ours. A node's first start: no start profile, as the stock client has none. Without this, the profile
    // left by the first-read rounds above (the whole tree, 20 s of tar) was replayed under the small job,
    // which then competed with a prefetch of ~100 MB and the unmount waited for it to stop.
    const cache = join(o.tmp, `start${r}`);
    await rm(o.profiles, { recursive: true, force: true });
    execSync('sync'); dropCaches();
    steps.mount[0].push(await o.mountOurs(cache));
    let t = await timed(o.ours, JOB);
    steps.job[0].push(t.s); jobOut[0] = t.out;
    steps.unmount[0].push(await o.umountSystem());
    execSync('sync'); dropCaches();
    const t0 = process.hrtime.bigint();
    await o.mountOurs(cache);
    await timed(o.ours, JOB);
    steps.remount[0].push(secs(t0));
    await o.umountOurs();
    await rm(cache, { recursive: true, force: true });
    if (!stock || stockError !== undefined) continue;
    // Stock cvmfs2 on the same server and repository; a failure of the peer costs its column, not our rows.
    try {
      const work = join(o.tmp, `stock${r}`), cacheBase = join(work, 'cache');
      const mo = { fqrn: FQRN, mountpoint: stockMnt, serverBase: o.origin.url, publicKey: join(o.tree.repo, 'keys', `${FQRN}.pub`), workDir: work, cacheBase };
      execSync('sync'); dropCaches();
      let t1 = process.hrtime.bigint();
      let m = await mountStock(stock, mo);
      steps.mount[1].push(secs(t1));
      t = await timed(stockMnt, JOB);
      steps.job[1].push(t.s); jobOut[1] = t.out;
      t1 = process.hrtime.bigint();
      await m.unmount();
      steps.unmount[1].push(secs(t1));
      execSync('sync'); dropCaches();
      t1 = process.hrtime.bigint();
      m = await mountStock(stock, mo);
      await timed(stockMnt, JOB);
      steps.remount[1].push(secs(t1));
      await m.unmount();
      await rm(work, { recursive: true, force: true });
    } catch (e) {
      stockError = e instanceof Error ? e.message : String(e);
    }
  }
  const label: Record<string, string> = {
    mount: 'mount, empty cache', job: 'job on the fresh mount', remount: 'remount on a full cache + job', unmount: 'umount(8) until the client is gone',
  };
  const rows = [`start steps (job: stat 400 entries, cat 40 small files = ${jobOut[0]} bytes; ours without a start profile on the first mount, with the one the job left on the remount${stock && jobOut[1] !== jobOut[0] ? `; STOCK READ ${jobOut[1]} BYTES` : ''}); medians of ${o.rounds}, ${stock ? `stock = ${stock.version} from ${stock.prefix}` : 'stock not built (no /var/tmp/cvmfs-ref)'}`];
  if (stockError !== undefined) rows.push(`stock cvmfs2 failed, its column is incomplete: ${stockError.slice(0, 300)}`);
  for (const k of ['mount', 'job', 'remount', 'unmount']) {
    const a = median(steps[k][0]);
    const b = steps[k][1].length > 0 ? median(steps[k][1]) : undefined;
    rows.push(`start ${label[k].padEnd(34)} gridbox ${(a * 1000).toFixed(0)} ms | stock ${b === undefined ? '-' : `${(b * 1000).toFixed(0)} ms`} | ${b === undefined ? '-' : `${(a / b).toFixed(2)}x stock's time (target <= 1x)`}`);
  }
  return rows;
}
