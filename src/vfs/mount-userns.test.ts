// The unprivileged round trip (setpriv to uid 65534: the daemon mounts inside its own user+mount
// namespace, `gridbox enter` runs commands there) and a container job started with `gridbox exec` from an
// image directory on the mount, as root and unprivileged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, copyFile, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir } from '../testing/tmp.js';
import {
  FQRN, buildSourceTree, cliEnv, cliMain, fuseSkipReason, gridbox, processExited, publishTree, runChild, sh, startOrigin, type RunResult, mustRun
} from './mount-fixture.test.js';

const skip = fuseSkipReason();
const NOBODY = 65534;
const BUSYBOX = ['/usr/bin/busybox', '/bin/busybox'].find((p) => existsSync(p));

/** A minimal busybox root filesystem as an Apptainer sandbox directory. */
async function buildImage(dir: string): Promise<void> {
  for (const d of ['bin', 'etc', 'proc', 'dev', 'tmp', 'sys', 'root', 'home']) await mkdir(join(dir, d), { recursive: true });
  await copyFile(BUSYBOX!, join(dir, 'bin', 'busybox'));
  await chmod(join(dir, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'cat', 'id', 'ls', 'sha256sum']) await symlink('busybox', join(dir, 'bin', a));
  await writeFile(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFile(join(dir, 'etc', 'motd'), 'served from the mount\n');
}

interface Setup { tmp: string; src: string; env: NodeJS.ProcessEnv; keyFile: string; srvDir: string }

async function setup(): Promise<Setup> {
  const tmp = await makeTempDir('gridbox-mount-userns-');
  await chmod(tmp, 0o755);
  const src = join(tmp, 'src');
  await buildSourceTree(src, { smallFiles: 20, bigBytes: 1024 * 1024 });
  // Unprivileged readers compare against the source, so it must be readable by them.
  await chmod(join(src, 'private'), 0o644);
  await buildImage(join(src, 'image'));
  const env = cliEnv(tmp);
  const p = await publishTree(join(tmp, 'repo'), src, env);
  return { tmp, src, env, keyFile: p.keyFile, srvDir: p.srvDir };
}

test('gridbox exec runs a job in a container whose image directory is on the mount', { skip: skip ?? (BUSYBOX ? undefined : 'busybox-static is not installed') }, async () => {
  const s = await setup();
  const mnt = join(s.tmp, 'mnt');
  await mkdir(mnt);
  const origin = await startOrigin(s.srvDir);
  try {
    await mustRun(gridbox(['mount', FQRN, mnt, '--server', origin.url, '--key', s.keyFile, '--cache', join(s.tmp, 'cache')], s.env), 'mount');
    const out = await mustRun(gridbox(['exec', join(mnt, 'image'), '/bin/sh', '-c', 'cat /etc/motd; sha256sum /bin/busybox'], s.env), 'exec');
    const want = (await mustRun(sh(`sha256sum < ${BUSYBOX}`), 'hash')).split(' ')[0];
    assert.match(out, /^served from the mount\n/);
    assert.ok(out.includes(want), 'the container ran the busybox from the mount');
  } finally {
    await gridbox(['umount', mnt], s.env);
    await origin.close();
    await rm(s.tmp, { recursive: true, force: true });
  }
});

test('an unprivileged user mounts in a user namespace, reads the tree and runs a container there', { skip, timeout: 300_000 }, async () => {
  // /dev/fuse is 0600 without udev; the stock udev rule makes it 0666, which user-namespace FUSE needs.
  await chmod('/dev/fuse', 0o666);
  const s = await setup();
  const home = join(s.tmp, 'home');
  const mnt = join(s.tmp, 'umnt');
  await mkdir(home);
  await mkdir(mnt);
  await chown(home, NOBODY, NOBODY);
  await chown(mnt, NOBODY, NOBODY);
  const key = join(home, 'repo.pub');
  await copyFile(s.keyFile, key);
  await chmod(key, 0o644);
  const origin = await startOrigin(s.srvDir);
  const env = { ...s.env, HOME: home, GRIDBOX_RUN_DIR: join(home, 'run') };
  const asNobody = (args: string[]): Promise<RunResult> =>
    runChild('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', process.execPath, cliMain(), ...args], { env });
  try {
    const out = await mustRun(asNobody(['mount', FQRN, mnt, '--server', origin.url, '--key', key, '--cache', join(home, 'cache')]), 'mount as nobody');
    assert.match(out, /gridbox enter/);
    // Not visible in the host namespace, only inside the daemon's.
    assert.equal((await sh(`grep -c ' ${mnt} ' /proc/self/mountinfo`)).stdout.trim(), '0');
    const inside = await mustRun(asNobody(['enter', mnt, '--', 'sh', '-c', `diff -r --no-dereference -x fifo ${s.src} ${mnt} && stat -c '%i' ${mnt}/a.txt ${mnt}/hard.txt && cat ${mnt}/big.bin | wc -c`]), 'diff -r inside');
    const [i1, i2, size] = inside.trim().split('\n');
    assert.equal(i1, i2);
    assert.equal(size, String(1024 * 1024));
    if (BUSYBOX) {
      const job = await mustRun(asNobody(['enter', mnt, '--', process.execPath, cliMain(), 'exec', join(mnt, 'image'), '/bin/sh', '-c', 'cat /etc/motd']), 'exec inside');
      assert.equal(job, 'served from the mount\n');
    }
    const st = JSON.parse(await mustRun(asNobody(['status', mnt, '--json']), 'status'));
    assert.equal(st.userns, true);
    // FUSE passthrough needs CAP_SYS_ADMIN in the initial namespace: the kernel refuses, reads take the normal path.
    assert.equal(st.passthroughOpens, 0, 'no passthrough in a user namespace');
    assert.ok((st.requests.READ ?? 0) > 0, `reads were served by the daemon: ${JSON.stringify(st.requests)}`);
    await mustRun(asNobody(['umount', mnt]), 'umount');
    assert.ok(processExited(st.pid), 'the daemon and its namespace are gone');
  } finally {
    await asNobody(['umount', mnt]);
    await origin.close();
    await rm(s.tmp, { recursive: true, force: true });
  }
});
