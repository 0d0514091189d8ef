// Mount benchmark (issues 5, 11): gridbox mount vs squashfuse_ll on a squashfs image (mksquashfs gzip) of the
// same tree and vs the tree itself on ext4, in one run: whole-tree read (`tar cf - . | wc -c`) with objects in
// our local cache and the page cache dropped, with and without FUSE passthrough; `find -printf %s` warm; the
// first read with an empty cache from a loopback server; `gridbox mount` on an empty cache and `gridbox
// umount` until the daemon is gone.
// Knobs: GRIDBOX_BENCH_MOUNT_MB (256), _FILES (20000), _ROUNDS (3), _COLD_ROUNDS (1), _DIR (tree kept between runs). Root only.
import { execSync, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRepository } from '../publish/create-repository.js';
import { publishDirectory } from '../publish/publisher.js';
import { DEFAULT_SETTINGS, repoLayout } from '../publish/repo-layout.js';
import { listenSrv } from '../server/srv-handler.js';
import { copyCapped } from './copy-tree.js';

const FQRN = 'bench.mount.org';

interface Run { code: number | null; stdout: string; stderr: string }

function runChild(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve, reject) => {
    const c = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    c.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function must(p: Promise<Run>, what: string): Promise<string> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr.slice(-500)}`);
  return r.stdout;
}

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
      await must(runChild(process.execPath, [main, 'mount', FQRN, ours, '--server', `${origin!.url}${FQRN}`, '--key', join(tree.repo, 'keys', `${FQRN}.pub`), '--cache', cache, ...extra], env), 'gridbox mount');
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

    // Cached tree read without passthrough (every READ answered by the daemon).
    const readNoPt: number[] = [];
    await mountOurs(join(tmp, 'cache'), ['--no-passthrough']);
    await timed(ours, 'tar cf - . | wc -c');
    for (let r = 0; r < rounds; r++) readNoPt.push((await readTree(ours)).s);
    await umountOurs();

    // Local cache filled, page cache dropped; then find warm. Interleaved with squashfuse_ll.
    await mountOurs(join(tmp, 'cache'));
    await timed(ours, 'tar cf - . | wc -c');
    await must(runChild('squashfuse_ll', [tree.sqfs, theirs]), 'squashfuse_ll');
    sqMounted = true;
    const readOurs: number[] = [], readTheirs: number[] = [], readExt4: number[] = [], findOurs: number[] = [], findTheirs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      readOurs.push((await readTree(ours)).s);
      readTheirs.push((await readTree(theirs)).s);
      readExt4.push((await readTree(tree.src)).s);
    }
    // Warm: one untimed find each first, so both kernels hold every entry and attribute.
    const find = "find . -printf '%s\\n' | wc -l";
    await timed(ours, find);
    await timed(theirs, find);
    for (let r = 0; r < rounds; r++) {
      findOurs.push((await timed(ours, find)).s);
      findTheirs.push((await timed(theirs, find)).s);
    }
    const ro = median(readOurs), rt = median(readTheirs), fo = median(findOurs), ft = median(findTheirs), fr = median(firsts);
    const rn = median(readNoPt), re = median(readExt4);
    rows.push(`mount read-cached  gridbox passthrough ${cell(ro, bytes)} | squashfuse_ll ${cell(rt, bytes)} | ${(rt / ro).toFixed(2)}x squashfuse_ll (target >= 2x) | ext4 ${cell(re, bytes)}: ${(ro / re).toFixed(2)}x ext4's time (target <= 1.3x)`);
    rows.push(`mount read-cached  gridbox no passthrough ${cell(rn, bytes)} | ${(rt / rn).toFixed(2)}x squashfuse_ll | ${(rn / re).toFixed(2)}x ext4's time`);
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
