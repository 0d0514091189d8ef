// The openless mount's fast READs (native/fuse-ioctl/fast_read.c, fuse/fast-read.ts): READs of whole files the
// cache holds are answered from their cache files by the addon, their bytes never in JavaScript. Checked here on
// real mounts: identical bytes that way, a cache file that disappeared or changed size under the mount is
// not served (the session fetches it again, verified), what the thread read reaches the start profile and the
// cache counters, and --no-fast-read puts every READ back on the session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '../testing/tmp.js';
import { loadNativeAddon } from '../plumbing/native-addon.js';
import { FQRN, buildSourceTree, cliEnv, fuseSkipReason, gridbox, publishTree, sh, startOrigin, mustRun } from './mount-fixture.test.js';

const skip = fuseSkipReason() ?? (loadNativeAddon()?.fastReadServe === undefined ? 'the gridbox-fuse-ioctl addon with fastReadServe is not built' : undefined);

interface Status { requests: Record<string, number>; fastReads?: number; hits: number; misses: number }

test('fast READs: identical bytes from cache files, fallback on a missing or resized cache file, reads reach profiles and counters', { skip }, async () => {
  const tmp = await makeTempDir('gridbox-fast-read-');
  const src = join(tmp, 'src');
  const mnt = join(tmp, 'mnt');
  const cache = join(tmp, 'cache');
  await mkdir(mnt);
  await buildSourceTree(src, { smallFiles: 40, depth: 2, bigBytes: 3 * 1024 * 1024 });
  const env = cliEnv(tmp);
  const p = await publishTree(join(tmp, 'repo'), src, env);
  const origin = await startOrigin(p.srvDir);
  const mount = (...extra: string[]): Promise<string> => mustRun(gridbox(['mount', FQRN, mnt, '--server', origin.url, '--key', p.keyFile, '--cache', cache, ...extra], env), 'mount');
  const status = async (): Promise<Status> => JSON.parse(await mustRun(gridbox(['status', mnt, '--json'], env), 'status'));
  const same = (what: string): Promise<string> => mustRun(sh(`diff -r --no-dereference -x fifo ${src} ${mnt}`), what);
  try {
    // First mount: an empty cache, every object fetched by the session (nothing is registered while uncached).
    await mount();
    await same('diff -r (empty cache)');
    await mustRun(gridbox(['umount', mnt], env), 'umount');

    // Remount on the full cache: whole files are answered by the addon; only chunks of big.bin (chunked,
    // never registered) reach the session.
    await mount();
    await same('diff -r (full cache, fast READs)');
    const warm = await status();
    assert.ok((warm.fastReads ?? 0) >= 40, `the addon answered the small files' READs: ${JSON.stringify(warm)}`);
    const sessionReads = warm.requests.READ ?? 0;
    assert.ok(sessionReads > 0, 'the chunked file is still read through the session');
    assert.equal(warm.misses, 0, 'nothing was fetched');
    assert.ok(warm.hits >= (warm.fastReads ?? 0) / 2, `fast READs count as cache hits: ${JSON.stringify(warm)}`);

    await mustRun(gridbox(['umount', mnt], env), 'umount');

    // A cache file removed and another truncated while the ledger still lists both: neither is served by the
    // addon. A new mount, not a global drop_caches (which would empty the kernel's caches under every other test
    // running beside this one): identical content, the two fetched and verified again.
    const objects = await cacheFiles(cache);
    const victim = await objectOf(objects, src, 'many/f0007');
    const resized = await objectOf(objects, src, 'many/f0011');
    await unlink(victim);
    await truncate(resized, 3);
    await mount();
    await same('diff -r (one cache file missing, one truncated)');
    const after = await status();
    assert.ok(after.misses >= 2, `the missing and the truncated object were fetched again: ${JSON.stringify(after)}`);
    assert.equal(await readFile(victim, 'utf8'), 'small file 7\n', 'the missing object is back in the cache');
    assert.ok((after.fastReads ?? 0) >= 38, `the other small files were answered by the addon again: ${JSON.stringify(after)}`);
    await mustRun(gridbox(['umount', mnt], env), 'umount');

    // What the addon read was recorded: the profile written at unmount names the files.
    const profiles = join(tmp, 'run', 'start-profiles');
    const texts = await Promise.all((await readdir(profiles)).map((f) => readFile(join(profiles, f), 'utf8')));
    assert.ok(texts.some((t) => t.includes('/many/f0003')), 'the start profile names a file only the addon read');

    // --no-fast-read: every READ on the session again.
    await mount('--no-fast-read');
    await same('diff -r (--no-fast-read)');
    const js = await status();
    assert.equal(js.fastReads ?? 0, 0, 'no fast READs');
    assert.ok((js.requests.READ ?? 0) >= 40, 'the session answered the READs');
    await mustRun(gridbox(['umount', mnt], env), 'umount');
  } finally {
    await gridbox(['umount', mnt], env);
    await origin.close();
    await rm(tmp, { recursive: true, force: true });
  }
});

/** Every cache file (objects live in two-hex-digit directories). */
async function cacheFiles(cache: string): Promise<string[]> {
  const out: string[] = [];
  const shared = join(cache, 'shared');
  for (const d of await readdir(shared)) {
    if (!/^[0-9a-f]{2}$/.test(d)) continue;
    for (const f of await readdir(join(shared, d))) out.push(join(shared, d, f));
  }
  return out;
}

/** The cache file holding the content of `src`/`rel` (small, unique content: compared byte for byte). */
async function objectOf(files: string[], src: string, rel: string): Promise<string> {
  const want = await readFile(join(src, rel));
  for (const f of files) {
    const b = await readFile(f).catch(() => undefined);
    if (b !== undefined && b.equals(want)) return f;
  }
  throw new Error(`no cache file holds ${rel}`);
}
