// Mount lifecycle: repeated mount/unmount without leftovers, a SIGKILLed server's stale mount, and the
// unprivileged path (user+mount namespace as uid 65534). Mounts are served by spawned fixture processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { clearStaleMount, enterCommand, findFuseMount, fuseMountState, mountDirect, unmountFuse, userNamespaceCommand } from './mount.js';
import { loadNativeAddon } from '../plumbing/native-addon.js';
import { FIXTURE_SCRIPT, HELLO, fuseSkipReason, patternBytes, startFixture } from './testing-fs.js';

interface Out { code: number; stdout: string; stderr: string }

function sh(cmd: string, args: string[]): Promise<Out> {
  return new Promise((res) => execFile(cmd, args, { maxBuffer: 64 << 20 }, (e, stdout, stderr) =>
    res({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr })));
}

const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

test('argv builders for the user namespace and for entering it', () => {
  const u = userNamespaceCommand('/x/serve.js', ['a', 'b'], '/usr/bin/node');
  assert.deepEqual(u, { command: 'unshare', args: ['--user', '--map-root-user', '--mount', '--propagation', 'private', '/usr/bin/node', '/x/serve.js', 'a', 'b'] });
  const e = enterCommand(42, ['ls', '-la']);
  assert.deepEqual(e, { command: 'nsenter', args: ['--target', '42', '--user', '--mount', '--preserve-credentials', '--', 'ls', '-la'] });
  assert.throws(() => enterCommand(0, ['ls']), { code: 'USAGE' });
  assert.throws(() => enterCommand(42, []), { code: 'USAGE' });
});

test('mount and unmount 50 times leaves no mount, process or fd behind', async (t) => {
  const skip = fuseSkipReason();
  if (skip) return t.skip(skip);
  const cycles = Number(process.env.FUSE_TEST_CYCLES ?? 50);
  await withTempDir(async (dir) => {
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    const r = await sh(process.execPath, [FIXTURE_SCRIPT, 'cycle', mnt, String(cycles)]);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.cycles, cycles);
    assert.ok(res.fdsBefore > 0);
    assert.equal(res.fdsAfter, res.fdsBefore, 'no fd leaked');
    assert.deepEqual(res.children, [], 'no helper process left');
    assert.equal(res.loop, 'epoll');
    assert.equal(await findFuseMount(mnt), undefined);
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
    assert.equal(mountinfo.includes(mnt), false);
  });
});

test('a SIGKILLed server leaves a stale mount that clearStaleMount removes', async (t) => {
  const skip = fuseSkipReason();
  if (skip) return t.skip(skip);
  await withTempDir(async (dir) => {
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    const fx = await startFixture(process.execPath, [FIXTURE_SCRIPT, 'serve', mnt]);
    try {
      assert.equal((await sh('cat', [join(mnt, 'hello.txt')])).stdout, HELLO);
      fx.child.kill('SIGKILL');
      await fx.exited;
      const ls = await sh('ls', [mnt]);
      assert.notEqual(ls.code, 0);
      assert.match(ls.stderr, /Transport endpoint is not connected/);
      assert.equal(await fuseMountState(mnt), 'stale');
      assert.equal(await clearStaleMount(mnt), true);
      assert.equal(await fuseMountState(mnt), 'none');
      assert.equal(await findFuseMount(mnt), undefined);
      assert.equal(await clearStaleMount(mnt), false, 'nothing to clear twice');
    } finally {
      if (await findFuseMount(mnt)) await unmountFuse(mnt, { lazy: true });
    }
  });
});

test('unmountFuse reports a path that is not mounted', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('umount(8) needs root');
  await withTempDir(async (dir) => {
    await assert.rejects(unmountFuse(dir), (e: Error & { code?: string }) => e.code === 'MOUNT_FAILED' && e.message.includes(dir));
  });
});

test('an unprivileged user mounts in a user namespace and another command sees it via nsenter', async (t) => {
  const skip = fuseSkipReason();
  if (skip) return t.skip(skip);
  // Setup as the brief says: the device must be usable by a normal user (stock udev makes it 0666).
  if (((await stat('/dev/fuse')).mode & 0o666) !== 0o666) await chmod('/dev/fuse', 0o666);
  await withTempDir(async (dir) => {
    await chmod(dir, 0o755);
    const mnt = join(dir, 'mnt');
    await mkdir(mnt, { mode: 0o777 });
    await chmod(mnt, 0o777);
    const ns = userNamespaceCommand(FIXTURE_SCRIPT, ['serve', mnt]);
    const fx = await startFixture('setpriv', [...NOBODY, ns.command, ...ns.args]);
    let unmounted = false;
    try {
      const status = await readFile(`/proc/${fx.ready.pid}/status`, 'utf8');
      assert.match(status, /^Uid:\s+65534\s+65534/m, 'the server runs as the dropped user');
      assert.equal(await findFuseMount(mnt), undefined, 'the mount is invisible outside its namespace');
      const inside = enterCommand(fx.ready.pid, ['sh', '-c',
        `id -u; grep " ${mnt} " /proc/self/mountinfo; ls -la "${mnt}"; stat -c '%s' "${mnt}/big.bin"; sha256sum "${mnt}/big.bin"; cat "${mnt}/link"`]);
      const r = await sh('setpriv', [...NOBODY, inside.command, ...inside.args]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.split('\n');
      assert.equal(lines[0], '0', 'root inside the namespace');
      assert.match(lines[1], / - fuse\.gridboxtest gridbox-test ro,user_id=0,group_id=0/);
      assert.match(r.stdout, /^-rw-r--r-- +1 root +root +10485760 .* big\.bin$/m);
      assert.match(r.stdout, /^10485760$/m);
      assert.ok(r.stdout.includes(createHash('sha256').update(patternBytes(10 * 1024 * 1024)).digest('hex')));
      assert.ok(r.stdout.endsWith(HELLO));
      const um = enterCommand(fx.ready.pid, ['umount', mnt]);
      const u = await sh('setpriv', [...NOBODY, um.command, ...um.args]);
      assert.equal(u.code, 0, u.stderr);
      unmounted = true;
    } finally {
      if (!unmounted) fx.child.kill('SIGKILL'); // the mount dies with its namespace
    }
    const end = await fx.exited;
    assert.equal(end.code, 0, end.stderr);
    assert.ok(end.lines.some((l) => l.closed), 'server saw ENODEV and closed');
  });
});

test('mount(2) through the native addon mounts as mount(8) would, and leaves options it does not know to mount(8)', async (t) => {
  const skip = fuseSkipReason() ?? (loadNativeAddon() === undefined ? 'the gridbox-fuse-ioctl addon is not built (npm ci builds it with node-gyp)' : undefined);
  if (skip) return t.skip(skip);
  assert.equal(typeof loadNativeAddon()?.mount, 'function', 'the addon has mount (scripts/deps.sh rebuilds an addon older than its source)');
  await withTempDir(async (dir) => {
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    const fd = openSync('/dev/fuse', 'r+');
    try {
      const base = ['fd=3', 'rootmode=40000', 'user_id=0', 'group_id=0', 'default_permissions', 'allow_other', 'ro'];
      assert.equal(mountDirect('direct.test', mnt, 'fuse.gridbox', fd, [...base, 'x-unknown=1']), false);
      assert.equal(await findFuseMount(mnt), undefined, 'an unknown option leaves the mount to mount(8)');
      assert.equal(mountDirect('direct.test', mnt, 'fuse.gridbox', fd, base), true);
      // Read from mountinfo only: the mount itself would wait for an INIT nobody answers.
      const m = await findFuseMount(mnt);
      assert.ok(m, 'mounted');
      assert.equal(m.fstype, 'fuse.gridbox');
      assert.equal(m.source, 'direct.test');
      assert.match(m.options, /^ro(,|$)/);
      const line = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === mnt) ?? '';
      assert.match(line, / - fuse\.gridbox direct\.test ro,.*user_id=0,group_id=0,default_permissions,allow_other/, line);
    } finally {
      closeSync(fd); // aborts the connection, so the unmount does not wait on it
      await unmountFuse(mnt, { lazy: true }).catch(() => undefined);
    }
    assert.equal(await findFuseMount(mnt), undefined);
  });
});
