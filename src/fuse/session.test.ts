// Mounted behaviour of the session through the fixture filesystem (testing-fs.ts). The mount is served
// by a spawned fixture process and touched only by other child processes (ls, stat, cat, find...).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { findFuseMount } from './mount.js';
import { InitFlag } from './protocol.js';
import { FIXTURE_SCRIPT, HELLO, fuseSkipReason, patternBytes, startFixture } from './testing-fs.js';

interface Out { code: number; stdout: string; stderr: string }

function sh(cmd: string, args: string[]): Promise<Out> {
  return new Promise((res) => execFile(cmd, args, { maxBuffer: 64 << 20 }, (e, stdout, stderr) =>
    res({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr })));
}

async function checkTree(t: TestContext, loop: 'epoll' | 'threadpool'): Promise<void> {
  const skip = fuseSkipReason();
  if (skip) return t.skip(skip);
  await withTempDir(async (dir) => {
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    const fx = await startFixture(process.execPath, [FIXTURE_SCRIPT, 'serve', mnt, '--loop', loop]);
    try {
      assert.equal(fx.ready.loop, loop);
      const info = await findFuseMount(mnt);
      assert.equal(info?.fstype, 'fuse.gridboxtest');
      assert.equal(info?.source, 'gridbox-test');

      const ls = await sh('ls', ['-la', mnt]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, /^-rw-r--r-- +1 root root +10485760 .* big\.bin$/m);
      assert.match(ls.stdout, /^lrwxrwxrwx .* link -> hello\.txt$/m);
      assert.match(ls.stdout, /^drwxr-xr-x .* sub$/m);

      const st = await sh('stat', ['-c', '%s %h %f %Y %y', join(mnt, 'big.bin')]);
      assert.equal(st.stdout.trim(), '10485760 1 81a4 1700000000 2023-11-14 22:13:20.250000000 +0000');

      const sum = await sh('sha256sum', [join(mnt, 'big.bin')]);
      assert.equal(sum.stdout.split(' ')[0], createHash('sha256').update(patternBytes(10 * 1024 * 1024)).digest('hex'));
      assert.equal((await sh('cat', [join(mnt, 'hello.txt')])).stdout, HELLO);
      assert.equal((await sh('cat', [join(mnt, 'link')])).stdout, HELLO, 'symlink followed');
      assert.equal((await sh('readlink', [join(mnt, 'link')])).stdout, 'hello.txt\n');

      const hard = await sh('stat', ['-c', '%i %h', join(mnt, 'shared.txt'), join(mnt, 'sub', 'hard.txt')]);
      const [a, b] = hard.stdout.trim().split('\n');
      assert.equal(a, b, 'hardlinks share one inode');
      assert.match(a, / 2$/);

      const xa = await sh('getfattr', ['-d', '--absolute-names', join(mnt, 'hello.txt')]);
      assert.match(xa.stdout, /^user\.hash="e3b0c44298fc1c149afbf4c8996fb92427ae41e4"$/m);
      assert.match(xa.stdout, /^user\.fqrn="test\.example\.org"$/m);
      const one = await sh('getfattr', ['--only-values', '-n', 'user.fqrn', join(mnt, 'hello.txt')]);
      assert.equal(one.stdout, 'test.example.org');
      const missing = await sh('getfattr', ['-n', 'user.nope', join(mnt, 'hello.txt')]);
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /No such attribute/);

      const df = await sh('df', ['-P', mnt]);
      assert.match(df.stdout, /^gridbox-test +4194304 +4194304 +0 /m);

      const find = await sh('find', [mnt, '-printf', '%y %s %P\\n']);
      assert.equal(find.code, 0, find.stderr);
      const lines = find.stdout.trim().split('\n').sort();
      assert.deepEqual(lines, [
        'd 4096 ', 'd 4096 many', 'd 4096 sub', 'f 10485760 big.bin', 'f 15 broken', 'f 21 shared.txt',
        'f 21 sub/hard.txt', `f ${HELLO.length} hello.txt`, 'f 7 sub/nested.txt', 'l 9 link',
      ].sort());

      const broken = await sh('cat', [join(mnt, 'broken')]);
      assert.notEqual(broken.code, 0);
      assert.match(broken.stderr, /Input\/output error/, 'a GridboxError becomes its edge errno (EIO)');
      const nofile = await sh('stat', [join(mnt, 'nope')]);
      assert.match(nofile.stderr, /No such file or directory/);
    } finally {
      fx.child.kill('SIGTERM'); // the fixture unmounts itself asynchronously and exits on ENODEV
    }
    const end = await fx.exited;
    assert.equal(end.code, 0, end.stderr);
    const closed = end.lines.find((l) => l.closed);
    assert.ok(closed, 'fixture saw the session close');
    assert.ok(closed.counts.READDIRPLUS > 0, 'readdirplus was used');
    assert.ok(closed.init.flags & InitFlag.DO_READDIRPLUS);
    assert.ok(closed.errors.some((e: string) => e.startsWith('READ: Cannot verify')), 'EIO causes are reported');
    assert.equal(await findFuseMount(mnt), undefined, 'nothing left mounted');
  });
}

test('a mounted fs answers ls, stat, cat, readlink, getfattr, df and find (epoll loop)', (t) => checkTree(t, 'epoll'));
test('a mounted fs answers ls, stat, cat, readlink, getfattr, df and find (threadpool loop)', (t) => checkTree(t, 'threadpool'));

test('cold sequential read and find over many entries (informative timings)', async (t) => {
  const skip = fuseSkipReason();
  if (skip) return t.skip(skip);
  const many = Number(process.env.FUSE_TEST_MANY ?? 10_000);
  const bigMb = Number(process.env.FUSE_TEST_BIG_MB ?? 64);
  await withTempDir(async (dir) => {
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    const fx = await startFixture(process.execPath, [FIXTURE_SCRIPT, 'serve', mnt, '--many', String(many), '--big', String(bigMb << 20)]);
    try {
      const t0 = process.hrtime.bigint();
      const dd = await sh('dd', [`if=${join(mnt, 'big.bin')}`, 'of=/dev/null', 'bs=1M']);
      const readNs = Number(process.hrtime.bigint() - t0);
      assert.equal(dd.code, 0, dd.stderr);
      assert.match(dd.stderr, new RegExp(`^${bigMb << 20} bytes`, 'm'));
      const t1 = process.hrtime.bigint();
      const find = await sh('find', [join(mnt, 'many'), '-printf', '%s\\n']);
      const findMs = Number(process.hrtime.bigint() - t1) / 1e6;
      const t2 = process.hrtime.bigint();
      await sh('find', [join(mnt, 'many'), '-printf', '%s\\n']);
      const warmMs = Number(process.hrtime.bigint() - t2) / 1e6;
      assert.equal(find.stdout.trim().split('\n').length, many + 1);
      t.diagnostic(`cold sequential read ${bigMb} MiB: ${((bigMb * 1048576) / (readNs / 1e9) / 1e6).toFixed(0)} MB/s (incl. dd spawn)`);
      t.diagnostic(`find -printf %s over ${many} entries: cold ${findMs.toFixed(0)} ms, warm ${warmMs.toFixed(0)} ms (incl. spawn)`);
    } finally {
      fx.child.kill('SIGTERM');
    }
    const end = await fx.exited;
    assert.equal(end.code, 0, end.stderr);
  });
});

/** Asks the fixture for its counters (SIGUSR2) and waits for the answer line. */
async function probe(fx: Awaited<ReturnType<typeof startFixture>>): Promise<{ lookups: number; counts: Record<string, number>; inFlight: number }> {
  const n = fx.lines.length;
  fx.child.kill('SIGUSR2');
  for (let i = 0; i < 200 && fx.lines.length === n; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(fx.lines.length > n, 'fixture answered SIGUSR2');
  return fx.lines[fx.lines.length - 1];
}

test('every lookup the kernel counted is forgotten; interrupted and undelivered entries too', async (t) => {
  const skip = fuseSkipReason();
  if (skip) return t.skip(skip);
  await withTempDir(async (dir) => {
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    const fx = await startFixture(process.execPath, [FIXTURE_SCRIPT, 'serve', mnt, '--many', '3000', '--big', '4096']);
    try {
      // READDIRPLUS over 3000 entries: the fixture returns more than fits, the session forgets the rest.
      assert.equal((await sh('find', [mnt, '-printf', '%s\\n'])).code, 0);
      assert.equal((await sh('ls', ['-la', join(mnt, 'sub')])).code, 0);
      assert.equal((await sh('stat', [join(mnt, 'hello.txt'), join(mnt, 'sub', 'nested.txt')])).code, 0);
      // A lookup that answers after its caller was killed: the kernel sends INTERRUPT, the session
      // answers EINTR and must forget the late entry.
      // Waits on the fixture's own counters, not on fixed delays: under a loaded machine the stat may take
      // longer than any fixed sleep to reach the daemon, and the kill would then interrupt nothing.
      const slow = execFile('stat', [join(mnt, 'slow')]);
      const slowClosed = new Promise((r) => slow.on('close', r));
      let pending = await probe(fx);
      for (let i = 0; i < 200 && pending.inFlight === 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
        pending = await probe(fx);
      }
      assert.ok(pending.inFlight > 0, 'the slow lookup reached the daemon');
      slow.kill('SIGINT');
      await slowClosed;
      let before = await probe(fx);
      for (let i = 0; i < 200 && (before.inFlight !== 0 || (before.counts.INTERRUPT ?? 0) === 0); i++) {
        await new Promise((r) => setTimeout(r, 50));
        before = await probe(fx);
      }
      assert.ok(before.lookups > 3000, `kernel holds lookups (${before.lookups})`);
      assert.ok((before.counts.INTERRUPT ?? 0) >= 1, 'the kernel interrupted the slow lookup');
      assert.equal(before.inFlight, 0);
      // Dropping the dentry/inode caches makes the kernel send FORGET/BATCH_FORGET for all of them.
      await writeFile('/proc/sys/vm/drop_caches', '2');
      let after = await probe(fx);
      for (let i = 0; i < 200 && after.lookups !== 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        after = await probe(fx);
      }
      assert.equal(after.lookups, 0, 'nlookup balance returns to zero');
    } finally {
      // Wait for the unmount even when an assertion failed, so that error is reported rather than the
      // EBUSY of removing a still-mounted temp dir.
      fx.child.kill('SIGTERM');
      await fx.exited;
    }
    assert.equal((await fx.exited).code, 0);
  });
});
