// A gzip bomb under the ratio limit through the real `gridbox sync`: a 2 MiB layer holding one file of
// 2.1 GiB of zeros, next to a benign image in the same list, against a loopback docker-registry. The
// cycle must neither crash nor lose the benign image; the bomb's file is published streaming, with
// its full size, and reads back through the client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { GZ, buildTar, gzip, imageConfig, pushImage } from '../testing/images.js';
import { gzipBombLayer } from '../testing/hostile-layers.js';
import { haveRegistry, startRegistry } from '../testing/registry.js';
import { withTempDir } from '../testing/tmp.js';
import { listenSrv } from '../server/srv-handler.js';
import { openClientFromFlags } from '../cli/client-options.js';
import { repoLayout } from '../publish/repo-layout.js';
import { readSyncState, type CycleReport } from './reconcile.js';

const FQRN = 'bomb.example.org';
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const run = promisify(execFile);

async function gridbox(args: string[]): Promise<{ code: number | string; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [MAIN, ...args], { maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; signal?: string; stdout?: string; stderr?: string };
    return { code: x.signal ?? x.code ?? 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

test('a 2.1 GiB file from a 2 MiB gzip layer is published streaming and the other image of the cycle publishes', { timeout: 900_000 }, async (t) => {
  if (!haveRegistry()) { t.skip('docker-registry not installed (apt-get install docker-registry)'); return; }
  const bomb = await gzipBombLayer();
  assert.ok(bomb.data.length < 4 << 20 && bomb.fileBytes > 2 ** 31, `${bomb.data.length} bytes expanding to ${bomb.fileBytes}`);
  await withTempDir(async (dir) => {
    const reg = await startRegistry(join(dir, 'registry'));
    try {
      const root = join(dir, 'repo');
      assert.equal((await gridbox(['mkfs', FQRN, '--root', root])).code, 0);
      await pushImage(reg, 'org/bomb', '1', [bomb], imageConfig('amd64', ['B=1']));
      await pushImage(reg, 'org/benign', '1', [{ data: gzip(await buildTar([{ name: 'etc/os-release', content: 'ID=benign\n' }])), mediaType: GZ }], imageConfig('amd64', ['A=1']));
      const list = join(dir, 'images.txt');
      await writeFile(list, `${reg.host}/org/bomb:1\n${reg.host}/org/benign:1\n`);

      const r = await gridbox(['sync', list, '--repo', FQRN, '--root', root, '--json']);
      assert.equal(r.code, 0, `sync: ${r.code} ${r.stderr}`);
      const report = JSON.parse(r.stdout) as CycleReport;
      assert.deepEqual(report.outcomes.map((o) => [o.name, o.status]), [[`${reg.host}/org/bomb:1`, 'new'], [`${reg.host}/org/benign:1`, 'new']], JSON.stringify(report.outcomes));

      const state = await readSyncState(repoLayout(root, FQRN));
      const server = await listenSrv({ srvDir: join(root, 'srv') });
      try {
        const common = ['--server', server.url, '--keys', join(root, 'keys'), '--cache', join(dir, 'cache')];
        const benign = await gridbox(['cat', FQRN, `/${state.images[`${reg.host}/org/benign:1`].tree}/etc/os-release`, ...common]);
        assert.equal(benign.stdout, 'ID=benign\n', benign.stderr);
        const st = await gridbox(['stat', FQRN, `/${state.images[`${reg.host}/org/bomb:1`].tree}/${bomb.entry}`, ...common]);
        assert.equal(st.code, 0, st.stderr);
        assert.match(st.stdout, new RegExp(`^Size: +${bomb.fileBytes}$`, 'm'));
        assert.match(st.stdout, /^Chunks: +\d+$/m, 'published chunked');
        // Bytes past 2 GiB and at the end read back as the zeros they are (a range, not 2.1 GiB through cat).
        const client = await openClientFromFlags(FQRN, { server: server.url, keys: join(root, 'keys'), cache: join(dir, 'cache') });
        try {
          const h = await client.open(`/${reg.host}/org/bomb:1/${bomb.entry}`);
          for (const offset of [2 ** 31 - 8, bomb.fileBytes - 4096]) {
            const got = await client.read(h, offset, 4096);
            assert.equal(got.length, Math.min(4096, bomb.fileBytes - offset));
            assert.ok(got.every((b) => b === 0), `zeros at ${offset}`);
          }
          assert.equal((await client.read(h, bomb.fileBytes, 10)).length, 0, 'nothing past the end');
          await client.release(h);
        } finally {
          await client.close();
        }
      } finally {
        await server.close();
      }
    } finally {
      await reg.stop();
    }
  });
});
