// At real size: a 6 GiB sparse file (random regions and holes, cached under /var/tmp/gridbox-test-cache)
// published by `gridbox publish` and by `gridbox ingest` from a tar stream, each a child process whose
// peak RSS (VmHWM) must stay under 512 MiB; the chunk lists are checked against the plain chunker and
// the store, and `gridbox cat` must give the file back byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { listenSrv } from '../server/srv-handler.js';
import { bigSparseFile, mib, runMeasured } from '../testing/big-sparse-file.js';
import { checkChunkedFile, expectedCuts, headRow } from '../testing/big-file-check.js';
import { withTempDir } from '../testing/tmp.js';
import { readSettings, repoLayout } from './repo-layout.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const FQRN = 'big.gridbox.local';
/** The bound for publishing: memory bounded by design, not by the file's 6 GiB. */
const PUBLISH_RSS_LIMIT = 512 * 2 ** 20;

test('a 6 GiB sparse file: publish and tar-stream ingest stay under 512 MiB peak RSS, chunk lists exact, cat reads it back', { timeout: 1_200_000 }, async (t) => {
  const big = bigSparseFile();
  await withTempDir(async (dir) => {
    const root = join(dir, 'repo');
    const mk = await runMeasured(process.execPath, [MAIN, 'mkfs', FQRN, '--root', root]);
    assert.equal(mk.code, 0, mk.stderr);
    const layout = repoLayout(root, FQRN);
    const settings = await readSettings(layout);

    const pub = await runMeasured(process.execPath, [MAIN, 'publish', FQRN, big.dir, '--root', root]);
    assert.equal(pub.code, 0, pub.stderr);
    t.diagnostic(`gridbox publish of ${mib(big.size)}: peak RSS ${mib(pub.peakRssBytes)}`);
    assert.ok(pub.peakRssBytes > 0 && pub.peakRssBytes < PUBLISH_RSS_LIMIT, `publish peak RSS ${mib(pub.peakRssBytes)} must stay under ${mib(PUBLISH_RSS_LIMIT)}`);
    const cuts = expectedCuts(big.path, settings);
    const row = await headRow(layout, `/${big.name}`, dir);
    const { chunks, distinct } = await checkChunkedFile(layout, settings, row, big.path, big.size, cuts);
    t.diagnostic(`${chunks} chunks, ${distinct} distinct objects`);
    // Holes dedup to one object per chunk size; the random regions give distinct chunks.
    assert.ok(distinct < chunks / 2, 'hole chunks are stored once');

    // The same bytes as a tar stream on stdin (never extracted): the same chunks, object for object.
    const tar = spawn('tar', ['c', '-C', big.dir, big.name], { stdio: ['ignore', 'pipe', 'inherit'] });
    const ing = await runMeasured(process.execPath, [MAIN, 'ingest', FQRN, '-', '--root', root, '--at', '/tar'], { stdio: [tar.stdout!, 'pipe', 'pipe'] });
    assert.equal(ing.code, 0, ing.stderr);
    t.diagnostic(`gridbox ingest of a ${mib(big.size)} tar stream: peak RSS ${mib(ing.peakRssBytes)}`);
    assert.ok(ing.peakRssBytes > 0 && ing.peakRssBytes < PUBLISH_RSS_LIMIT, `ingest peak RSS ${mib(ing.peakRssBytes)} must stay under ${mib(PUBLISH_RSS_LIMIT)}`);
    const tarRow = await headRow(layout, `/tar/${big.name}`, dir);
    assert.deepEqual(tarRow.chunks, row.chunks, 'ingest and publish cut and name the file identically');
    assert.deepEqual((await headRow(layout, `/${big.name}`, dir)).chunks, row.chunks, 'the published file stays beside the ingested one');

    // Read back through the verifying client, compared with the source as it streams.
    const server = await listenSrv({ srvDir: join(root, 'srv') });
    const fd = openSync(big.path, 'r');
    try {
      let pos = 0;
      let firstDiff = -1;
      const src = Buffer.allocUnsafe(1 << 20);
      const cat = await runMeasured(process.execPath, [MAIN, 'cat', FQRN, `/${big.name}`, '--server', server.url, '--keys', join(root, 'keys'), '--cache', join(dir, 'cache')], {
        onStdout: (b) => {
          for (let off = 0; off < b.length;) {
            const n = Math.min(src.length, b.length - off);
            const got = readSync(fd, src, 0, n, pos);
            if (firstDiff < 0 && (got !== n || Buffer.compare(src.subarray(0, n), b.subarray(off, off + n)) !== 0)) firstDiff = pos;
            pos += n;
            off += n;
          }
        },
      });
      assert.equal(cat.code, 0, cat.stderr);
      t.diagnostic(`gridbox cat of ${mib(big.size)}: peak RSS ${mib(cat.peakRssBytes)}`);
      assert.equal(firstDiff, -1, `cat output differs from the source at byte ${firstDiff}`);
      assert.equal(pos, big.size, 'cat gives the whole file');
    } finally {
      closeSync(fd);
      await server.close();
    }
  });
});
