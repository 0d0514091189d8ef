import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createSrvHandler } from '../server/srv-handler.js';
import { startSquid, squidBinary } from '../testing/squid.js';
import { withTempDir } from '../testing/tmp.js';
import { makeRawObject, pseudoRandomBytes, writeRawObjects } from '../testing/raw-repo.js';
import { writeFile } from 'node:fs/promises';
import { Downloader } from './downloader.js';

const FQRN = 'squid.example.org';

/** Our srv/ handler counting requests per path; the first request for `corruptOnce` gets flipped bytes. */
async function origin(srvDir: string, corruptOnce?: { path: string; bytes: Buffer }): Promise<{ url: string; hits: Map<string, number>; close: () => Promise<void> }> {
  const hits = new Map<string, number>();
  const handler = createSrvHandler({ srvDir });
  let corrupted = false;
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '';
    hits.set(path, (hits.get(path) ?? 0) + 1);
    if (corruptOnce && path.endsWith(corruptOnce.path) && !corrupted) {
      corrupted = true;
      const bad = Buffer.from(corruptOnce.bytes);
      bad[bad.length >> 1] ^= 0xff;
      res.writeHead(200, { 'content-length': String(bad.length), 'cache-control': 'public, max-age=259200, immutable', etag: '"corrupt-copy"' }).end(bad);
      return;
    }
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/cvmfs/${FQRN}`, hits, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

const skipReason = squidBinary() === undefined ? 'squid is not installed' : false;

test('through real squid each object reaches the origin once, and a corrupt cached copy is bypassed with no-cache', { skip: skipReason, timeout: 60_000 }, () => withTempDir(async (dir) => {
  await chmod(dir, 0o755); // squid drops to user proxy, which must traverse to its state dir
  const srv = join(dir, 'srv');
  const objs = await writeRawObjects(srv, FQRN, Array.from({ length: 6 }, (_, i) => makeRawObject(pseudoRandomBytes(10_000 + i * 3000, 40 + i), i === 0 ? 'C' : '')));
  await writeFile(join(srv, FQRN, '.cvmfspublished'), 'manifest text\n');
  const victim = objs[3];
  const o = await origin(srv, { path: victim.relPath, bytes: victim.stored });
  const squid = await startSquid(join(dir, 'squid'));
  const clients = [0, 1].map(() => new Downloader({ serverUrls: [o.url], proxyGroups: [[squid.url]], timeoutMs: 5000, maxRetries: 1, backoffInitMs: 10 }));
  try {
    for (const d of clients) {
      for (const obj of objs) {
        const got = await d.fetchObject(obj.id, obj.suffix, { expectedSize: obj.suffix === 'C' ? undefined : obj.content.length });
        assert.ok(got.equals(obj.content), `correct bytes for ${obj.relPath}`);
      }
      assert.equal((await d.fetchFile('.cvmfspublished')).toString(), 'manifest text\n');
    }
    for (const obj of objs) {
      const n = o.hits.get(`/cvmfs/${FQRN}/${obj.relPath}`);
      assert.equal(n, obj === victim ? 2 : 1, `${obj.relPath} reached the origin ${n} times`);
    }
    assert.equal(o.hits.get(`/cvmfs/${FQRN}/.cvmfspublished`), 1, 'the manifest is cached for its short max-age');
    const [first, second] = clients.map((d) => d.status());
    assert.equal(first.counters.noCacheRetries, 1, 'the corrupt copy was refetched with no-cache');
    assert.equal(first.counters.hashMismatches, 1);
    assert.equal(first.counters.proxyFailovers + first.counters.hostFailovers, 0);
    assert.equal(first.proxy, squid.url);
    assert.equal(second.counters.hashMismatches, 0, 'squid replaced its corrupt copy');
    const log = await squid.accessLog();
    assert.ok(log.some((l) => /TCP_(MEM_)?HIT\//.test(l)), 'squid served hits');
  } finally {
    for (const d of clients) await d.close();
    await squid.stop();
    await o.close();
  }
}));

test('a manifest squid cannot revalidate (its host is down) is a host failure: the client fails over instead of keeping the stale copy', { skip: skipReason, timeout: 60_000 }, () => withTempDir(async (dir) => {
  await chmod(dir, 0o755);
  const srvA = join(dir, 'a'), srvB = join(dir, 'b');
  await mkdir(join(srvA, FQRN), { recursive: true });
  await mkdir(join(srvB, FQRN), { recursive: true });
  await writeFile(join(srvA, FQRN, '.cvmfspublished'), 'revision 2 on the host that goes down\n');
  await writeFile(join(srvB, FQRN, '.cvmfspublished'), 'revision 3 on the other host\n');
  const a = await origin(srvA);
  const b = await origin(srvB);
  const squid = await startSquid(join(dir, 'squid'));
  const make = (): Downloader => new Downloader({ serverUrls: [a.url, b.url], proxyGroups: [[squid.url]], fileMaxAgeS: 1, maxRetries: 0, timeoutMs: 5000 });
  const first = make();
  const second = make();
  try {
    assert.match((await first.fetchFile('.cvmfspublished')).toString(), /revision 2/);
    await a.close();
    // Older than the 1 s the client accepts: squid must revalidate, and cannot. Squid counts age in whole
    // seconds, so 1.5 s can still be "age 1" (fresh enough, a plain hit) when the fetch fell late in a second.
    await new Promise((r) => setTimeout(r, 2500));
    assert.match((await second.fetchFile('.cvmfspublished')).toString(), /revision 3/, 'the stale copy was refused');
    const st = second.status();
    assert.equal(st.counters.hostFailovers, 1);
    assert.equal(st.host, b.url);
    assert.ok((await squid.accessLog()).some((l) => l.includes('TCP_REFRESH_FAIL_OLD')), 'squid did offer its stale copy');
  } finally {
    await first.close();
    await second.close();
    await squid.stop();
    await b.close();
    await a.close();
  }
}));
