// At real size through image sync: an image whose layer holds the 6 GiB sparse file (gzip -1 layer,
// cached under /var/tmp/gridbox-test-cache) beside a small image and a missing one, synced from a real
// docker-registry on 127.0.0.1 by the `gridbox sync` CLI. A first sync is killed (SIGKILL) while it spools
// the big file; the next one removes what that left, publishes both images under 512 MiB peak RSS, and
// the big file's chunk list is exact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSettings, repoLayout } from '../publish/repo-layout.js';
import { bigLayerBlob, bigSparseFile, mib, runMeasured } from '../testing/big-sparse-file.js';
import { checkChunkedFile, headRow } from '../testing/big-file-check.js';
import { buildTar, gzip, GZ, imageConfig, pushImage, standardLayers } from '../testing/images.js';
import { haveRegistry, startRegistry } from '../testing/registry.js';
import { withTempDir } from '../testing/tmp.js';
import { readSyncState } from './reconcile.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const FQRN = 'bigimages.example.org';
const SYNC_RSS_LIMIT = 512 * 2 ** 20;

/** Total bytes of the files below `dir` (0 when it is gone). */
function duBytes(dir: string): number {
  let n = 0;
  let names: string[];
  try { names = readdirSync(dir); } catch { return 0; }
  for (const name of names) {
    const p = join(dir, name);
    try {
      const st = statSync(p);
      n += st.isDirectory() ? duBytes(p) : st.size;
    } catch { /* removed meanwhile */ }
  }
  return n;
}

test('sync of an image holding a 6 GiB file: a killed sync leaves nothing behind the next, which publishes every image under 512 MiB', { timeout: 1_200_000 }, async (t) => {
  if (!haveRegistry()) { t.skip('docker-registry not installed (apt-get install docker-registry)'); return; }
  const big = bigSparseFile();
  const blob = bigLayerBlob(big);
  await withTempDir(async (dir) => {
    const reg = await startRegistry(dir);
    try {
      const root = join(dir, 'repo');
      assert.equal((await runMeasured(process.execPath, [MAIN, 'mkfs', FQRN, '--root', root])).code, 0);
      const layout = repoLayout(root, FQRN);
      const settings = await readSettings(layout);
      const top = gzip(await buildTar([{ name: 'app/', type: 'directory' }, { name: 'app/hello.txt', content: 'beside the big file\n' }]));
      await pushImage(reg, 'org/big', '1', [{ data: readFileSync(blob.path), mediaType: GZ }, { data: top, mediaType: GZ }], imageConfig('amd64', ['PATH=/bin']));
      // Another config than the big image's (trees are keyed by config digest).
      await pushImage(reg, 'org/small', '1', await standardLayers(), imageConfig('amd64', ['PATH=/bin', 'SMALL=1']));
      const list = join(dir, 'docker_images.txt');
      await writeFile(list, ['org/big:1', 'org/small:1', 'org/missing:1'].map((n) => `${reg.host}/${n}`).join('\n') + '\n');
      const syncArgs = [MAIN, 'sync', list, '--repo', FQRN, '--root', root, '--platform', 'linux/amd64'];
      const syncDir = join(layout.state, 'sync');

      // 1. Killed while the big file is being spooled.
      let killedAt = 0;
      const first = await runMeasured(process.execPath, syncArgs, {
        onChild: (c) => {
          const watch = setInterval(() => {
            let spooled = 0;
            try {
              spooled = readdirSync(syncDir, { withFileTypes: true }).filter((d) => d.name.startsWith('spool-')).reduce((n, d) => n + duBytes(join(syncDir, d.name)), 0);
            } catch { /* the sync has not made its spool dir yet */ }
            if (spooled > 256 * 2 ** 20) { killedAt = spooled; c.kill('SIGKILL'); clearInterval(watch); }
          }, 100);
          c.on('exit', () => clearInterval(watch));
        },
      });
      assert.equal(first.signal, 'SIGKILL', `the first sync ended before it was killed: ${first.stderr}`);
      t.diagnostic(`first sync killed after spooling ${mib(killedAt)}`);
      const leftSpools = readdirSync(syncDir).filter((n) => n.startsWith('spool-'));
      const leftTxns = readdirSync(layout.state).filter((n) => n.startsWith('txn-'));
      assert.ok(leftSpools.length > 0 && leftTxns.length > 0, 'the kill left a spool and a transaction dir behind');

      // 2. The next sync: every image that exists is published, the missing one reported.
      const second = await runMeasured(process.execPath, syncArgs);
      t.diagnostic(`gridbox sync with a ${mib(big.size)} layer file: peak RSS ${mib(second.peakRssBytes)}`);
      assert.equal(second.code, 1, `the missing image fails the cycle (exit 1), nothing else: ${second.stdout}\n${second.stderr}`);
      assert.match(second.stdout, /^new +127\.0\.0\.1:\d+\/org\/big:1 -> \.images\//m, second.stdout);
      assert.match(second.stdout, /^new +127\.0\.0\.1:\d+\/org\/small:1 -> \.images\//m, second.stdout);
      assert.match(second.stdout + second.stderr, /org\/missing:1/);
      assert.ok(second.peakRssBytes > 0 && second.peakRssBytes < SYNC_RSS_LIMIT, `sync peak RSS ${mib(second.peakRssBytes)} must stay under ${mib(SYNC_RSS_LIMIT)}`);
      assert.deepEqual(readdirSync(syncDir).filter((n) => n.startsWith('spool-')), [], 'no spool dir is left (the dead one removed, its own cleaned up)');
      assert.deepEqual(readdirSync(layout.state).filter((n) => n.startsWith('txn-')), [], 'no transaction dir is left');
      assert.deepEqual(readdirSync(join(layout.srv, 'data', 'txn')), [], 'no object temp file is left');

      const state = await readSyncState(layout);
      const bigTree = state.images[`${reg.host}/org/big:1`].tree;
      const smallTree = state.images[`${reg.host}/org/small:1`].tree;
      assert.equal(state.images[`${reg.host}/org/missing:1`], undefined);
      const row = await headRow(layout, `/${bigTree}/${big.name}`, dir);
      const { chunks } = await checkChunkedFile(layout, settings, row, big.path, big.size);
      t.diagnostic(`${chunks} chunks in the synced big file`);
      assert.equal((await headRow(layout, `/${bigTree}/app/hello.txt`, dir)).entry.size, 'beside the big file\n'.length);
      assert.equal((await headRow(layout, `/${smallTree}/etc/hostname`, dir)).entry.size, 'two\n'.length);
    } finally {
      await reg.stop();
    }
  });
});
