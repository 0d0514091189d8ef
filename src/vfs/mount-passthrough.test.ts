// FUSE passthrough on a root mount: whole files whose content is in the local cache are opened with the
// cache file as the kernel's backing file, so reading them sends no READ to the daemon; content stays
// identical (whole and chunked files, cold and warm cache, across a remount). The fallback when the kernel
// refuses (user namespace) is checked in mount-userns.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { loadIoctlAddon } from '../fuse/passthrough.js';
import { makeTempDir } from '../testing/tmp.js';
import { FQRN, buildSourceTree, cliEnv, fuseSkipReason, gridbox, publishTree, sh, startOrigin, mustRun } from './mount-fixture.test.js';

const skip = fuseSkipReason() ?? (loadIoctlAddon() ? undefined : 'the gridbox-fuse-ioctl addon is not built (npm ci builds it with node-gyp)');

test('cached whole files are read through FUSE passthrough with identical content; chunked files and a remount too', { skip }, async () => {
  const tmp = await makeTempDir('gridbox-passthrough-');
  const src = join(tmp, 'src');
  const mnt = join(tmp, 'mnt');
  await mkdir(mnt);
  await buildSourceTree(src, { smallFiles: 30, depth: 3, bigBytes: 3 * 1024 * 1024 });
  const env = cliEnv(tmp);
  const p = await publishTree(join(tmp, 'repo'), src, env);
  const origin = await startOrigin(p.srvDir);
  const mount = ['mount', FQRN, mnt, '--server', origin.url, '--key', p.keyFile, '--cache', join(tmp, 'cache'), '--passthrough'];
  try {
    for (const round of ['cold cache', 'warm cache after remount']) {
      await mustRun(gridbox(mount, env), `mount (${round})`);
      await mustRun(sh(`diff -r --no-dereference -x fifo ${src} ${mnt} && cmp ${src}/big.bin ${mnt}/big.bin`), `diff -r (${round})`);
      const before = JSON.parse(await mustRun(gridbox(['status', mnt, '--json'], env), 'status'));
      assert.ok(before.passthroughOpens > 0, `${round}: opens used passthrough: ${JSON.stringify(before)}`);
      // Reading small whole files again (new opens, dropped page cache) reaches the backing files, not the daemon.
      await mustRun(sh(`echo 3 > /proc/sys/vm/drop_caches; cat ${mnt}/many/* ${mnt}/a.txt > /dev/null && sha256sum ${mnt}/many/f0007 ${src}/many/f0007`), 'reread');
      const after = JSON.parse(await mustRun(gridbox(['status', mnt, '--json'], env), 'status'));
      assert.equal(after.requests.READ ?? 0, before.requests.READ ?? 0, `${round}: no READ reached the daemon for passthrough files`);
      assert.ok(after.passthroughOpens >= before.passthroughOpens + 31, `${round}: ${after.passthroughOpens} passthrough opens`);
      await mustRun(gridbox(['umount', mnt], env), 'umount');
    }
  } finally {
    await gridbox(['umount', mnt], env);
    await origin.close();
    await rm(tmp, { recursive: true, force: true });
  }
});
