// Mount tests against misbehaving and intermediate servers: three loopback origins (down, corrupt, slow)
// configured by a shell-syntax config file, a real squid in front of the origin, and the cvmfs_server
// fixture repository mounted and compared with a `gridbox get` copy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '../testing/tmp.js';
import { squidBinary, startSquid } from '../testing/squid.js';
import { setupFixture, FQRN as LEGACY_FQRN } from '../testing/legacy-fixture.js';
import {
  FQRN, buildSourceTree, cliEnv, deadUrl, fuseSkipReason, gridbox, publishTree, sh, startOrigin, mustRun
} from './mount-fixture.test.js';

const skip = fuseSkipReason();

const dataRequests = (m: Map<string, number>): [string, number][] => [...m].filter(([p]) => p.includes('/data/'));

test('with one origin down, one corrupt and one slow the application sees only correct bytes', { skip }, async () => {
  const tmp = await makeTempDir('gridbox-mount-net-');
  const src = join(tmp, 'src'), mnt = join(tmp, 'mnt');
  await mkdir(mnt);
  await buildSourceTree(src, { smallFiles: 20, bigBytes: 2 * 1024 * 1024 });
  const env = cliEnv(tmp);
  const p = await publishTree(join(tmp, 'repo'), src, env);
  const corrupt = await startOrigin(p.srvDir, 'corrupt');
  const slow = await startOrigin(p.srvDir, 'slow', 150);
  const dead = await deadUrl();
  try {
    // Written the way sites write them: variables, quotes, comments, failover order down → corrupt → slow.
    await writeFile(join(tmp, 'site.conf'), [
      '# three stratum 1s',
      `DEAD=${dead}`,
      `BAD='${corrupt.url}'`,
      `CVMFS_SERVER_URL="$DEAD;\${BAD};${slow.url.replace(FQRN, '@fqrn@')}"   # the good one is last`,
      'CVMFS_HTTP_PROXY=DIRECT',
      `CVMFS_PUBLIC_KEY=${p.keyFile}`,
      `CVMFS_CACHE_BASE=${join(tmp, 'cache')}`,
      'CVMFS_TIMEOUT=5',
      'CVMFS_TIMEOUT_DIRECT=5',
      'CVMFS_MAX_RETRIES=1',
      '',
    ].join('\n'));
    await mustRun(gridbox(['mount', FQRN, mnt, '--config', join(tmp, 'site.conf')], env), 'mount');
    await mustRun(sh(`diff -r --no-dereference -x fifo ${src} ${mnt} && tar cf - -C ${mnt} . | wc -c`), 'diff -r');
    const st = JSON.parse(await mustRun(gridbox(['status', mnt, '--json'], env), 'status'));
    assert.equal(st.ioErrors, 0);
    assert.equal(st.host, slow.url, 'requests settled on the good host');
    assert.ok(dataRequests(corrupt.requests).length > 0, 'the corrupt origin was tried');
    assert.ok(dataRequests(slow.requests).length > 0, 'the slow origin served the objects');
  } finally {
    await gridbox(['umount', mnt], env);
    await corrupt.close();
    await slow.close();
    await rm(tmp, { recursive: true, force: true });
  }
});

test('through a real squid each object reaches the origin once across two mounts with empty caches', { skip: skip ?? (squidBinary() ? undefined : 'squid is not installed') }, async () => {
  const tmp = await makeTempDir('gridbox-mount-squid-');
  const src = join(tmp, 'src'), mnt = join(tmp, 'mnt');
  await mkdir(mnt);
  await buildSourceTree(src, { smallFiles: 30, bigBytes: 2 * 1024 * 1024 });
  const env = cliEnv(tmp);
  const p = await publishTree(join(tmp, 'repo'), src, env);
  const origin = await startOrigin(p.srvDir);
  let squid: Awaited<ReturnType<typeof startSquid>> | undefined;
  try {
    // squid drops to user proxy, which must traverse the temp dir to reach its own state.
    await chmod(tmp, 0o755);
    squid = await startSquid(join(tmp, 'squid'));
    for (const round of [1, 2]) {
      await mustRun(gridbox(['mount', FQRN, mnt, '--server', origin.url, '--proxy', squid!.url, '--key', p.keyFile, '--cache', join(tmp, `cache${round}`)], env), `mount ${round}`);
      await mustRun(sh(`diff -r --no-dereference -x fifo ${src} ${mnt}`), `diff -r ${round}`);
      const st = JSON.parse(await mustRun(gridbox(['status', mnt, '--json'], env), 'status'));
      assert.equal(st.proxy, squid!.url);
      await mustRun(gridbox(['umount', mnt], env), `umount ${round}`);
    }
    const data = dataRequests(origin.requests);
    assert.ok(data.length > 10, `objects were fetched (${data.length})`);
    assert.deepEqual(data.filter(([, n]) => n !== 1), [], 'every object reached the origin exactly once');
    assert.ok((await squid!.accessLog()).some((l) => /HIT/.test(l)), 'the second mount was served by squid');
  } finally {
    await gridbox(['umount', mnt], env);
    await squid?.stop();
    await origin.close();
    await rm(tmp, { recursive: true, force: true });
  }
});

test('the cvmfs_server fixture repository mounts and matches a gridbox get copy', { skip }, async () => {
  const f = await setupFixture();
  const mnt = join(f.tmp, 'mnt'), copy = join(f.tmp, 'copy');
  await mkdir(mnt);
  const env = cliEnv(f.tmp);
  try {
    const flags = ['--server', f.url, '--keys', f.keysDir, '--cache', join(f.tmp, 'cache')];
    await mustRun(gridbox(['get', LEGACY_FQRN, '/', copy, ...flags], env), 'get');
    await mustRun(gridbox(['mount', LEGACY_FQRN, mnt, ...flags], env), 'mount');
    await mustRun(sh(`diff -r --no-dereference ${copy} ${mnt}`), 'diff -r');
    const n = await mustRun(sh(`find ${mnt} | wc -l; getfattr --only-values -n user.fqrn ${mnt}`), 'find');
    assert.ok(Number(n.split('\n')[0]) > 1);
    assert.match(n, new RegExp(LEGACY_FQRN.replace(/\./g, '\\.')));
  } finally {
    await gridbox(['umount', mnt], env);
    await f.close();
  }
});
