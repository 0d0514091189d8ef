// A real mount daemon's metrics: `gridbox mount --metrics-listen` with a dead first server and a live
// origin, files read through the mount by a child process, then the Prometheus text read twice, over HTTP
// and through the control socket's "metrics" request: misses, hits, bytes, the failover and the dead
// host's errors, and the revision.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { exchangeText } from '../accounting/http-exchange.js';
import { freeLoopbackPort } from '../testing/free-port.js';
import { makeTempDir } from '../testing/tmp.js';
import { FQRN, buildSourceTree, cliEnv, deadUrl, fuseSkipReason, gridbox, publishTree, sh, startOrigin } from '../vfs/mount-fixture.test.js';
import { callControl } from './control.js';
import { readMountRecord } from './run-dir.js';

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('a mount daemon reports hits, misses, bytes, failovers, per-host errors and its revision as Prometheus text', { skip: fuseSkipReason(), timeout: 120_000 }, async () => {
  const tmp = await makeTempDir('gridbox-mount-metrics-');
  const src = join(tmp, 'src'), mnt = join(tmp, 'mnt');
  await mkdir(mnt);
  await buildSourceTree(src, { smallFiles: 10, bigBytes: 256 * 1024 });
  const env = cliEnv(tmp);
  const p = await publishTree(join(tmp, 'repo'), src, env);
  const origin = await startOrigin(p.srvDir);
  const dead = await deadUrl();
  const mount = async (): Promise<number> => {
    const port = await freeLoopbackPort();
    const m = await gridbox(['mount', FQRN, mnt, '--server', `${dead};${origin.url}`, '--key', p.keyFile, '--cache', join(tmp, 'cache'), '--metrics-listen', `127.0.0.1:${port}`], env);
    assert.equal(m.code, 0, m.stderr);
    const r = await sh(`tar cf - -C ${mnt} . | wc -c`);
    assert.equal(r.code, 0, `read: ${r.stderr}`);
    return port;
  };
  try {
    const port = await mount();
    const http = await exchangeText(`http://127.0.0.1:${port}/metrics`, { timeoutMs: 10_000 });
    assert.equal(http.status, 200);
    assert.match(String(http.headers['content-type']), /^text\/plain/);
    const rec = await readMountRecord(join(tmp, 'run'), mnt);
    const viaSocket = await callControl(rec!.socket, 'metrics');
    assert.equal(viaSocket.ok, true, viaSocket.error);
    const status = (await callControl(rec!.socket, 'status')).status!;
    const f = `{fqrn="${FQRN}"}`;
    for (const text of [http.text, viaSocket.text!]) {
      assert.equal(sample(text, `gridbox_mount_revision${f}`), status.revision);
      assert.ok(sample(text, `gridbox_mount_cache_misses_total${f}`)! > 0, text);
      assert.ok(sample(text, `gridbox_mount_wire_bytes_total${f}`)! > 0);
      assert.ok(sample(text, `gridbox_mount_inflated_bytes_total${f}`)! >= 256 * 1024, 'the big file was inflated');
      assert.equal(sample(text, `gridbox_mount_host_failovers_total${f}`), 1, 'one switch from the dead server');
      assert.ok(sample(text, `gridbox_mount_host_errors_total{fqrn="${FQRN}",host="${dead}"}`)! >= 1, text);
      assert.equal(sample(text, `gridbox_mount_host_errors_total{fqrn="${FQRN}",host="${origin.url}"}`), undefined, 'the origin never failed');
    }
    assert.equal(sample(viaSocket.text!, `gridbox_mount_cache_misses_total${f}`), status.misses);
    // A second daemon on the same cache finds the objects there (a second read through the same mount
    // could be answered from the kernel's page cache and never reach the daemon).
    assert.equal((await gridbox(['umount', mnt], env)).code, 0);
    const again = await exchangeText(`http://127.0.0.1:${await mount()}/metrics`, { timeoutMs: 10_000 });
    assert.ok(sample(again.text, `gridbox_mount_cache_hits_total${f}`)! > 0, again.text);
  } finally {
    await gridbox(['umount', mnt], env);
    await origin.close();
    await rm(tmp, { recursive: true, force: true });
  }
});
