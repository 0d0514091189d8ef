// End-to-end mount tests through the CLI: a published tree mounted by the daemon and compared with diff
// and find from child processes; xattrs, statfs and status; updates while mounted; a small quota; a
// SIGKILLed daemon; repeated mount/umount cycles.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '../testing/tmp.js';
import {
  FQRN, buildSourceTree, cliEnv, fuseSkipReason, gridbox, processExited, publishAgain, publishTree, sh, startOrigin, treeListing, mustRun
} from './mount-fixture.test.js';

const skip = fuseSkipReason();

interface Setup { tmp: string; src: string; mnt: string; env: NodeJS.ProcessEnv; keyFile: string; root: string }

async function setup(ttl = 240, tree = {}): Promise<Setup> {
  const tmp = await makeTempDir('gridbox-mount-');
  const src = join(tmp, 'src');
  const mnt = join(tmp, 'mnt');
  await mkdir(mnt);
  await buildSourceTree(src, tree);
  const env = cliEnv(tmp);
  const p = await publishTree(join(tmp, 'repo'), src, env, ttl);
  return { tmp, src, mnt, env, keyFile: p.keyFile, root: p.root };
}

test('a published tree mounts and matches the source under diff -r, find and stat; xattrs, statfs and status', { skip }, async () => {
  const s = await setup();
  const origin = await startOrigin(join(s.root, 'srv'));
  try {
    const out = await mustRun(gridbox(['mount', FQRN, s.mnt, '--server', origin.url, '--key', s.keyFile, '--cache', join(s.tmp, 'cache')], s.env), 'mount');
    assert.match(out, /mounted mount\.test\.org revision 2/);
    await mustRun(sh(`diff -r --no-dereference -x fifo ${s.src} ${s.mnt}`), 'diff -r');
    assert.equal(await treeListing(s.mnt), await treeListing(s.src));
    const ino = await mustRun(sh(`stat -c '%i %h %F' ${s.mnt}/a.txt ${s.mnt}/hard.txt ${s.mnt}/fifo; readlink ${s.mnt}/sym ${s.mnt}/dangling`), 'stat');
    const lines = ino.trim().split('\n');
    assert.equal(lines[0], lines[1], 'hardlinks share one inode');
    assert.match(lines[0], / 2 regular file$/);
    assert.match(lines[2], /fifo/);
    assert.deepEqual(lines.slice(3), ['a.txt', 'does/not/exist']);
    const x = await mustRun(sh(`cd ${s.mnt} && for n in user.fqrn user.revision user.host user.proxy user.hash user.pid user.chunks; do getfattr --only-values -n $n a.txt 2>/dev/null || getfattr --only-values -n $n big.bin; echo; done`), 'getfattr');
    const [fqrn, rev, host, proxy, hash, pid, chunks] = x.split('\n');
    assert.equal(fqrn, FQRN);
    assert.equal(rev, '2');
    assert.equal(host, origin.url);
    assert.equal(proxy, 'DIRECT');
    assert.match(hash, /^[0-9a-f]{40}$/);
    assert.match(pid, /^\d+$/);
    assert.ok(Number(chunks) > 1, `big.bin is chunked (user.chunks=${chunks})`);
    // As real root the mount raises its bdi readahead so large files are read in 1 MiB READs.
    const ra = await mustRun(sh(`cat /sys/class/bdi/$(mountpoint -d ${s.mnt})/read_ahead_kb`), 'read_ahead_kb');
    if (process.getuid?.() === 0) assert.equal(ra.trim(), '1024');
    const df = await mustRun(sh(`stat -f -c '%c %b' ${s.mnt}`), 'stat -f');
    assert.ok(Number(df.split(' ')[0]) >= 200, `statfs files ${df}`);
    const st = JSON.parse(await mustRun(gridbox(['status', s.mnt, '--json'], s.env), 'status'));
    assert.equal(st.revision, 2);
    assert.equal(st.host, origin.url);
    assert.ok(st.misses > 0 && st.bytesInflated >= 3 * 1024 * 1024 && st.bytesOnWire > 0, JSON.stringify(st));
    assert.equal(st.ioErrors, 0);
    const human = await mustRun(gridbox(['status', s.mnt], s.env), 'status');
    assert.match(human, /revision\s+2/);
    assert.match(human, /hits\/misses/);
  } finally {
    await gridbox(['umount', s.mnt], s.env);
    await origin.close();
    await rm(s.tmp, { recursive: true, force: true });
  }
});

test('an update published while mounted becomes visible within the TTL; a file opened before keeps its old content', { skip }, async () => {
  const s = await setup(1, { smallFiles: 5 });
  const origin = await startOrigin(join(s.root, 'srv'));
  try {
    await mustRun(gridbox(['mount', FQRN, s.mnt, '--server', origin.url, '--key', s.keyFile, '--cache', join(s.tmp, 'cache')], s.env), 'mount');
    const flag = join(s.tmp, 'published');
    // A reader opens a.txt and big.bin, waits for the publication, then reads through the old descriptors.
    const reader = sh(`exec 7<${s.mnt}/a.txt 8<${s.mnt}/big.bin; touch ${s.tmp}/opened; while [ ! -e ${flag} ]; do sleep 0.1; done; sleep 3; cat <&7; sha256sum <&8`);
    await mustRun(sh(`while [ ! -e ${s.tmp}/opened ]; do sleep 0.1; done`), 'wait for reader');
    const oldBig = (await mustRun(sh(`sha256sum < ${s.src}/big.bin`), 'hash')).trim();
    await writeFile(join(s.src, 'a.txt'), 'second revision\n');
    await writeFile(join(s.src, 'big.bin'), 'small now\n');
    await writeFile(join(s.src, 'new.txt'), 'new file\n');
    await rm(join(s.src, 'many', 'f0001'));
    await publishAgain(s.root, s.src, s.env);
    await writeFile(flag, '');
    const seen = await sh(`for i in $(seq 1 100); do [ -e ${s.mnt}/new.txt ] && grep -q second ${s.mnt}/a.txt && exit 0; sleep 0.1; done; exit 1`);
    assert.equal(seen.code, 0, 'the new revision became visible within 10 s (TTL 1 s)');
    const old = await reader;
    assert.equal(old.code, 0, old.stderr);
    assert.equal(old.stdout, `hello from the repository\n${oldBig}\n`, 'descriptors opened before the update read the old content');
    await mustRun(sh(`diff -r --no-dereference -x fifo ${s.src} ${s.mnt}`), 'diff -r after update');
    const st = JSON.parse(await mustRun(gridbox(['status', s.mnt, '--json'], s.env), 'status'));
    assert.equal(st.revision, 3);
    // Every server gone: the mount keeps serving what it has.
    await origin.close();
    await mustRun(sh(`cat ${s.mnt}/a.txt ${s.mnt}/new.txt >/dev/null && ls ${s.mnt}/many | wc -l`), 'read with the servers gone');
  } finally {
    await gridbox(['umount', s.mnt], s.env);
    await origin.close();
    await rm(s.tmp, { recursive: true, force: true });
  }
});

test('a cache quota smaller than the data still serves every file correctly', { skip }, async () => {
  const s = await setup(240, { smallFiles: 50, bigBytes: 4 * 1024 * 1024 });
  const origin = await startOrigin(join(s.root, 'srv'));
  try {
    await writeFile(join(s.tmp, 'site.conf'), '# quota in MiB, below the 4 MiB of data\nCVMFS_QUOTA_LIMIT=1\n');
    await mustRun(gridbox(['mount', FQRN, s.mnt, '--server', origin.url, '--key', s.keyFile, '--cache', join(s.tmp, 'cache'), '--config', join(s.tmp, 'site.conf')], s.env), 'mount');
    await mustRun(sh(`diff -r --no-dereference -x fifo ${s.src} ${s.mnt} && cmp ${s.src}/big.bin ${s.mnt}/big.bin`), 'diff -r');
    const st = JSON.parse(await mustRun(gridbox(['status', s.mnt, '--json'], s.env), 'status'));
    assert.equal(st.cacheLimit, 1024 * 1024);
    assert.ok(st.evictions > 0, `the quota evicted objects: ${JSON.stringify(st)}`);
    assert.ok(st.cacheBytes <= st.cacheLimit + 1024 * 1024, `cache stays near its limit: ${st.cacheBytes}`);
  } finally {
    await gridbox(['umount', s.mnt], s.env);
    await origin.close();
    await rm(s.tmp, { recursive: true, force: true });
  }
});

test('a SIGKILLed daemon leaves a stale mount that gridbox umount clears', { skip }, async () => {
  const s = await setup(240, { smallFiles: 3 });
  const origin = await startOrigin(join(s.root, 'srv'));
  try {
    await mustRun(gridbox(['mount', FQRN, s.mnt, '--server', origin.url, '--key', s.keyFile, '--cache', join(s.tmp, 'cache')], s.env), 'mount');
    const st = JSON.parse(await mustRun(gridbox(['status', s.mnt, '--json'], s.env), 'status'));
    process.kill(st.pid, 'SIGKILL');
    const stale = await sh(`for i in $(seq 1 50); do kill -0 ${st.pid} 2>/dev/null || break; sleep 0.1; done; stat ${s.mnt} 2>&1`);
    assert.match(stale.stdout, /Transport endpoint is not connected/);
    const u = await mustRun(gridbox(['umount', s.mnt], s.env), 'umount');
    assert.match(u, /cleared stale mount/);
    const left = await sh(`grep -c ' ${s.mnt} ' /proc/self/mountinfo`);
    assert.equal(left.stdout.trim(), '0');
    assert.deepEqual((await readdir(join(s.tmp, 'run'))).filter((f) => !f.endsWith('.log')), []);
    // And it mounts again at the same place.
    await mustRun(gridbox(['mount', FQRN, s.mnt, '--server', origin.url, '--key', s.keyFile, '--cache', join(s.tmp, 'cache')], s.env), 'mount again');
    await mustRun(sh(`cmp ${s.src}/a.txt ${s.mnt}/a.txt`), 'read after remount');
  } finally {
    await gridbox(['umount', s.mnt], s.env);
    await origin.close();
    await rm(s.tmp, { recursive: true, force: true });
  }
});

test('mount/umount 50 times leaves no mount, process or fd behind', { skip, timeout: 600_000 }, async () => {
  const cycles = Number(process.env.GRIDBOX_MOUNT_CYCLES ?? 50);
  const s = await setup(240, { smallFiles: 3, bigBytes: 100_000 });
  const origin = await startOrigin(join(s.root, 'srv'));
  const fdsBefore = (await readdir('/proc/self/fd')).length;
  try {
    const pids: number[] = [];
    for (let i = 0; i < cycles; i++) {
      await mustRun(gridbox(['mount', FQRN, s.mnt, '--server', origin.url, '--key', s.keyFile, '--cache', join(s.tmp, 'cache')], s.env), `mount #${i}`);
      const st = JSON.parse(await mustRun(gridbox(['status', s.mnt, '--json'], s.env), 'status'));
      pids.push(st.pid);
      await mustRun(sh(`cmp ${s.src}/a.txt ${s.mnt}/a.txt`), `read #${i}`);
      await mustRun(gridbox(['umount', s.mnt], s.env), `umount #${i}`);
    }
    assert.equal(new Set(pids).size, cycles);
    const alive = pids.filter((p) => !processExited(p));
    assert.deepEqual(alive, [], 'every daemon exited');
    const left = await sh(`grep -c ' ${s.mnt} ' /proc/self/mountinfo`);
    assert.equal(left.stdout.trim(), '0', 'no mount left');
    // The origin's side of the daemons' connections closes asynchronously.
    let fds = 0;
    for (let i = 0; i < 50 && (fds = (await readdir('/proc/self/fd')).length) > fdsBefore; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(fds, fdsBefore, 'no fd left in the test process');
  } finally {
    await gridbox(['umount', s.mnt], s.env);
    await origin.close();
    await rm(s.tmp, { recursive: true, force: true });
  }
});
