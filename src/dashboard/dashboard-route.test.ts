// The dashboard's pieces without a browser: deduplication over trees, stratum-1 URL spelling, and the
// route on a real loopback HTTP server (its paths, methods, an empty root, an unreachable stratum 1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { exchangeText } from '../accounting/http-exchange.js';
import { dedupOf, type TreeStats } from '../sync/sync-records.js';
import { deadUrl } from '../vfs/mount-fixture.test.js';
import { withTempDir } from '../testing/tmp.js';
import { stratum1Url, stratum1View } from './dashboard-data.js';
import { createDashboardRoute } from './dashboard-route.js';

const stats = (contents: [string, number][]): TreeStats => ({ version: 1, files: contents.length, bytes: contents.reduce((a, [, n]) => a + n, 0), contents });

test('dedupOf counts a content key as new once, in publish order, and never shares unknown contents', () => {
  const d = dedupOf([
    { tree: 'a', stats: stats([['x', 100], ['y', 10], ['x', 100]]) },
    { tree: 'b', stats: stats([['x', 100], ['z', 5], ['path:/etc/motd', 7]]) },
    { tree: 'c', stats: stats([['path:/etc/motd', 7]]) },
  ]);
  assert.deepEqual(d.perTree.map((t) => [t.tree, t.bytes, t.newBytes, t.savedBytes]), [['a', 210, 110, 100], ['b', 112, 12, 100], ['c', 7, 7, 0]]);
  assert.deepEqual([d.bytes, d.newBytes, d.savedBytes], [329, 129, 200]);
});

test('stratum-1 URLs are spelled as for snapshot --from and CVMFS_SERVER_URL', () => {
  assert.equal(stratum1Url('http://s1.example.org/cvmfs/', 'a.b.org'), 'http://s1.example.org/cvmfs/a.b.org');
  assert.equal(stratum1Url('http://s1.example.org:8000/cvmfs/@fqrn@', 'a.b.org'), 'http://s1.example.org:8000/cvmfs/a.b.org');
  assert.equal(stratum1Url('http://127.0.0.1:9/x/a.b.org/', 'a.b.org'), 'http://127.0.0.1:9/x/a.b.org');
});

test('an unreachable stratum 1 is shown with an error naming its URL, not thrown', async () => {
  const dead = await deadUrl();
  const v = await stratum1View(`${dead}/cvmfs`, { fqrn: 'a.b.org', revision: 3, timestamp: 0 }, 2000);
  assert.equal(v.revision, undefined);
  assert.match(v.error ?? '', new RegExp(`Cannot read "${dead}/cvmfs/a\\.b\\.org/\\.cvmfspublished"`));
});

test('the route answers its own paths only, GET and HEAD only, and renders an empty root', () => withTempDir(async (dir) => {
  await mkdir(join(dir, 'srv'));
  const route = createDashboardRoute({ root: dir });
  const server = createServer((req, res) => { if (!route(req, res)) res.writeHead(418).end('not mine\n'); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const page = await exchangeText(`${base}/dashboard`, { timeoutMs: 10_000 });
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(page.text, /no repository under this root/);
    assert.doesNotMatch(page.text, /<script|https?:\/\/(?!127\.0\.0\.1)[a-z]/i, 'no script and no outside URL');
    const data = JSON.parse((await exchangeText(`${base}/dashboard/data.json`, { timeoutMs: 10_000 })).text) as { repositories: unknown[]; stratum1: unknown[] };
    assert.deepEqual([data.repositories, data.stratum1], [[], []]);
    assert.equal((await exchangeText(`${base}/dashboard/nope`, { timeoutMs: 10_000 })).status, 404);
    assert.equal((await exchangeText(`${base}/dashboard`, { method: 'POST', body: 'x', timeoutMs: 10_000 })).status, 405);
    assert.equal((await exchangeText(`${base}/dashboardx`, { timeoutMs: 10_000 })).status, 418);
    assert.equal((await exchangeText(`${base}/cvmfs/x`, { timeoutMs: 10_000 })).status, 418);
  } finally {
    server.close();
  }
}));
