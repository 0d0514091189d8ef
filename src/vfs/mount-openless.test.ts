// The default mount is openless (no passthrough): the daemon answers the first OPEN with ENOSYS under
// FUSE_NO_OPEN_SUPPORT, after which the kernel opens files without asking and keeps their page cache.
// Checked here: content stays identical (whole and chunked files, cold page cache and warm), a warm re-read
// of many files sends no OPEN, a cold re-read is served from shared per-node handles, and a
// new revision still shows new content for a file whose old content sits in the page cache.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '../testing/tmp.js';
import { FQRN, buildSourceTree, cliEnv, fuseSkipReason, gridbox, publishAgain, publishTree, sh, startOrigin, mustRun } from './mount-fixture.test.js';

const skip = fuseSkipReason();

test('openless mount: identical content cold and warm, warm re-opens reach no daemon, a new revision shows new content', { skip }, async () => {
  const tmp = await makeTempDir('gridbox-openless-');
  const src = join(tmp, 'src');
  const mnt = join(tmp, 'mnt');
  await mkdir(mnt);
  await buildSourceTree(src, { smallFiles: 30, depth: 3, bigBytes: 3 * 1024 * 1024 });
  const env = cliEnv(tmp);
  const p = await publishTree(join(tmp, 'repo'), src, env, 1);
  const origin = await startOrigin(p.srvDir);
  const status = async (): Promise<{ requests: Record<string, number>; passthroughOpens: number; fastReads?: number }> =>
    JSON.parse(await mustRun(gridbox(['status', mnt, '--json'], env), 'status'));
  try {
    await mustRun(gridbox(['mount', FQRN, mnt, '--server', origin.url, '--key', p.keyFile, '--cache', join(tmp, 'cache')], env), 'mount');
    await mustRun(sh(`diff -r --no-dereference -x fifo ${src} ${mnt} && cmp ${src}/big.bin ${mnt}/big.bin`), 'diff -r (cold cache)');
    const first = await status();
    assert.equal(first.passthroughOpens, 0, 'no passthrough unless asked for');
    assert.ok((first.requests.OPEN ?? 0) <= 1, `only the first OPEN reached the daemon (ENOSYS): ${JSON.stringify(first.requests)}`);
    assert.ok((first.requests.READ ?? 0) > 0, 'reads came to the daemon with fh 0');

    // Warm: the kernel opens files itself. (With this repository's 1 s TTL the kernel may re-read pages after
    // an entry expires, so READs are not counted here; bench/mount.ts measures warm reads.)
    await mustRun(sh(`cat ${mnt}/many/* ${mnt}/a.txt ${mnt}/big.bin > /dev/null`), 'warm reread');
    const warm = await status();
    assert.equal(warm.requests.OPEN ?? 0, first.requests.OPEN ?? 0, 'a warm re-open sends no OPEN');
    assert.equal(warm.requests.RELEASE ?? 0, first.requests.RELEASE ?? 0, 'and no RELEASE');

    // Cold page cache: READs again, served from the cache (by the addon's fast READs, or the session through the nodes'
    // shared handles); same bytes.
    await mustRun(sh(`echo 3 > /proc/sys/vm/drop_caches; diff -r --no-dereference -x fifo ${src} ${mnt} && sha256sum ${mnt}/big.bin ${src}/big.bin | awk '{print $1}' | uniq | wc -l | grep -qx 1`), 'diff -r (page cache dropped)');
    const cold = await status();
    const reads = (s: typeof cold): number => (s.requests.READ ?? 0) + (s.fastReads ?? 0);
    assert.ok(reads(cold) > reads(warm), 'a cold re-read reaches the daemon');

    // A new revision: a.txt's old content is in the page cache; its new content must show (new nodeid).
    await mustRun(sh(`cat ${mnt}/a.txt`), 'read a.txt before the update');
    await writeFile(join(src, 'a.txt'), 'second revision, openless\n');
    await writeFile(join(src, 'many', 'f0007'), 'f0007 changed\n');
    await publishAgain(p.root, src, env);
    const seen = await sh(`for i in $(seq 1 100); do grep -q openless ${mnt}/a.txt && exit 0; sleep 0.1; done; exit 1`);
    assert.equal(seen.code, 0, 'the new content became visible within 10 s (TTL 1 s)');
    await mustRun(sh(`diff -r --no-dereference -x fifo ${src} ${mnt}`), 'diff -r after the update');
    await mustRun(gridbox(['umount', mnt], env), 'umount');
  } finally {
    await gridbox(['umount', mnt], env);
    await origin.close();
    await rm(tmp, { recursive: true, force: true });
  }
});
