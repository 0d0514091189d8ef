// `gridbox mount` refuses a directory that already is a mount point (a tmpfs; a second gridbox mount
// started with another run dir, which does not see the first one's record) and names the holder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '../testing/tmp.js';
import { FQRN, buildSourceTree, cliEnv, fuseSkipReason, gridbox, publishTree, sh, startOrigin } from '../vfs/mount-fixture.test.js';

const skip = fuseSkipReason();

test('gridbox mount refuses a tmpfs mount point and names it', { skip }, async () => {
  const tmp = await makeTempDir('gridbox-holder-');
  const mnt = join(tmp, 'mnt');
  await mkdir(mnt);
  try {
    const m = await sh(`mount -t tmpfs holder-test-src ${mnt}`);
    assert.equal(m.code, 0, m.stderr);
    // The refusal comes before any network or key work: a server that does not exist is never asked.
    const r = await gridbox(['mount', FQRN, mnt, '--server', 'http://127.0.0.1:9/cvmfs', '--key', join(tmp, 'none.pub')], cliEnv(tmp));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /already a mount point \(a tmpfs mount of "holder-test-src"\)/, r.stderr);
    const again = await gridbox(['mount', FQRN, mnt, '--foreground', '--server', 'http://127.0.0.1:9/cvmfs', '--key', join(tmp, 'none.pub')], cliEnv(tmp));
    assert.match(again.stderr, /already a mount point/, again.stderr);
  } finally {
    await sh(`umount ${mnt}`);
    await rm(tmp, { recursive: true, force: true });
  }
});

test('a second gridbox mount with another run dir is refused and names the first daemon', { skip }, async () => {
  const tmp = await makeTempDir('gridbox-holder-');
  const src = join(tmp, 'src');
  const mnt = join(tmp, 'mnt');
  await mkdir(mnt);
  await buildSourceTree(src, { smallFiles: 2, depth: 1, bigBytes: 1000 });
  const env1 = cliEnv(tmp);
  const env2 = { ...env1, GRIDBOX_RUN_DIR: join(tmp, 'run2') };
  const p = await publishTree(join(tmp, 'repo'), src, env1);
  const origin = await startOrigin(p.srvDir);
  const args = ['mount', FQRN, mnt, '--server', origin.url, '--key', p.keyFile, '--cache', join(tmp, 'cache')];
  try {
    const first = await gridbox(args, env1);
    assert.equal(first.code, 0, first.stderr);
    const pid = Number(/daemon pid (\d+)/.exec(first.stdout)?.[1]);
    const second = await gridbox(args, env2);
    assert.notEqual(second.code, 0);
    assert.match(second.stderr, new RegExp(`a gridbox mount of ${FQRN.replace(/\./g, '\\.')} served by pid ${pid} \\(run dir "${join(tmp, 'run')}"\\)`), second.stderr);
    const stack = await sh(`grep -c ' ${mnt} ' /proc/self/mountinfo`);
    assert.equal(stack.stdout.trim(), '1', 'nothing was stacked on the first mount');
    const read = await sh(`cat ${mnt}/a.txt`);
    assert.equal(read.stdout, 'hello from the repository\n', 'the first mount still serves');
  } finally {
    await gridbox(['umount', mnt], env1);
    await origin.close();
    await rm(tmp, { recursive: true, force: true });
  }
});
