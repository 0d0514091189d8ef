import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { GridboxError, isGridboxError } from '../errors.js';
import { listenSrv } from '../server/srv-handler.js';
import { withTempDir } from '../testing/tmp.js';
import { makeRawObject, pseudoRandomBytes, writeRawObjects, type RawObject } from '../testing/raw-repo.js';
import { HostChain, ProxyChain, parseProxyList, parseServerUrls, DIRECT } from './chains.js';
import { Downloader } from './downloader.js';

const FQRN = 'fail.example.org';
const fast = { maxRetries: 1, backoffInitMs: 5, backoffMaxMs: 20, timeoutMs: 400, timeoutDirectMs: 400 };

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}
async function stop(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}
/** A port that nothing listens on: bound once, then closed. */
async function deadPort(): Promise<number> {
  const s = createServer();
  const p = await listen(s);
  await stop(s);
  return p;
}

type Behaviour = 'slow' | 'corrupt' | 'truncate' | 'wrongsize' | 'stall';

/** A misbehaving origin over the same srv/ tree, counting the requests it gets. */
async function badServer(srvDir: string, how: Behaviour): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    const rel = decodeURIComponent((req.url ?? '').replace(/^\/cvmfs\//, ''));
    void readFile(join(srvDir, rel)).then((body) => {
      if (how === 'slow') { setTimeout(() => { if (!res.destroyed) res.end(body); }, 3000); return; }
      if (how === 'corrupt') { const b = Buffer.from(body); b[b.length >> 1] ^= 0x55; res.end(b); return; }
      if (how === 'stall') { res.writeHead(200, { 'content-length': String(body.length) }); res.write(body.subarray(0, body.length >> 1)); return; }
      if (how === 'truncate') { res.writeHead(200, { 'content-length': String(body.length) }); res.write(body.subarray(0, body.length >> 1)); setTimeout(() => res.destroy(), 20); return; }
      res.end(body.subarray(0, body.length - 3)); // 'wrongsize': short, self-consistent length
    }, () => { res.statusCode = 404; res.end(); });
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}/cvmfs/${FQRN}`, hits: () => hits, close: () => stop(server) };
}

async function makeObjects(srv: string, n: number): Promise<RawObject[]> {
  const objs = Array.from({ length: n }, (_, i) => makeRawObject(pseudoRandomBytes(3000 + i * 977, i + 1), i === 0 ? 'C' : ''));
  return writeRawObjects(srv, FQRN, objs);
}

test('chains parse CVMFS syntax, burn proxies within a group, then fail over to the next group', () => {
  assert.deepEqual(parseServerUrls('http://a/cvmfs/@fqrn@; http://b/cvmfs/@org@/', 'atlas.cern.ch'), ['http://a/cvmfs/atlas.cern.ch', 'http://b/cvmfs/atlas']);
  assert.deepEqual(parseProxyList('p1:3128|http://p2:3128;DIRECT'), [['http://p1:3128', 'http://p2:3128'], [DIRECT]]);
  assert.throws(() => parseProxyList(' ; '), (e: unknown) => isGridboxError(e, 'CONFIG_INVALID'));
  let r = 0;
  const pc = new ProxyChain([['a', 'b'], ['c']], 300_000, () => (r++ % 2) * 0.9);
  const first = pc.current();
  assert.ok(pc.fail(first));
  assert.equal(pc.fail(first), false, 'a second report of the same failure does not switch again');
  const second = pc.current();
  assert.notEqual(second, first);
  pc.fail(second);
  assert.equal(pc.current(), 'c');
  pc.reset();
  assert.ok(['a', 'b'].includes(pc.current()));
  let now = 0;
  const hc = new HostChain(['h0', 'h1'], 1000, () => now);
  hc.fail('h0');
  assert.equal(hc.current(), 'h1');
  now = 1500;
  assert.equal(hc.current(), 'h0', 'goes back to the first host after the reset time');
});

test('fetchObject fails over past a down, a slow and a corrupt host and returns only verified bytes', () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const objs = await makeObjects(srv, 4);
  const good = await listenSrv({ srvDir: srv });
  const slow = await badServer(srv, 'slow');
  const corrupt = await badServer(srv, 'corrupt');
  const down = `http://127.0.0.1:${await deadPort()}/cvmfs/${FQRN}`;
  const d = new Downloader({ ...fast, serverUrls: [down, slow.url, corrupt.url, `${good.url}${FQRN}`] });
  try {
    for (const o of objs) {
      const got = await d.fetchObject(o.id, o.suffix, { expectedSize: o.suffix === 'C' ? undefined : o.content.length });
      assert.ok(got.equals(o.content));
    }
    const st = d.status();
    assert.equal(st.host, `${good.url}${FQRN}`, 'the good host is current afterwards');
    assert.equal(st.proxy, DIRECT);
    assert.equal(st.counters.hostFailovers, 3);
    assert.equal(st.counters.fetched, 4);
    assert.ok(st.counters.hashMismatches >= 2, 'corrupt bytes were seen and retried with no-cache');
    assert.ok(st.counters.noCacheRetries >= 1);
    assert.ok(st.counters.retries >= 1, 'transport failures were retried on the same path');
    assert.equal(corrupt.hits(), 2, 'the corrupt host got the first request and its no-cache retry');
  } finally {
    await d.close(); await good.close(); await slow.close(); await corrupt.close();
  }
}));

test('truncated and wrong-size objects are retried elsewhere; when every host fails the error lists each attempt', () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const [obj] = await makeObjects(srv, 2).then((o) => o.slice(1));
  const trunc = await badServer(srv, 'truncate');
  const short = await badServer(srv, 'wrongsize');
  const d = new Downloader({ ...fast, serverUrls: [trunc.url, short.url] });
  try {
    const err = await d.fetchObject(obj.id, '', { expectedSize: obj.content.length }).then(() => null, (e: unknown) => e);
    assert.ok(isGridboxError(err, 'DOWNLOAD_ALL_FAILED'), String(err));
    const attempts = (err as GridboxError).fields.attempts as { url: string; outcome: string; noCache: boolean }[];
    assert.ok(attempts.length >= 4);
    assert.ok(attempts.some((a) => a.url.startsWith(trunc.url) && a.outcome === 'DOWNLOAD_HOST'));
    assert.ok(attempts.some((a) => a.url.startsWith(short.url) && a.outcome === 'STORE_HASH_MISMATCH' && a.noCache));
    assert.match((err as Error).message, /every host and proxy failed/);
    assert.ok((err as Error).cause instanceof GridboxError, 'the cause is kept');
    assert.equal(d.status().counters.fetched, 0);
  } finally { await d.close(); await trunc.close(); await short.close(); }
}));

test('a body that stalls half-way times out as DOWNLOAD_TIMEOUT (socket inactivity, not only headers) and fails over', () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const [obj] = await makeObjects(srv, 1);
  const stall = await badServer(srv, 'stall');
  const good = await listenSrv({ srvDir: srv });
  const d = new Downloader({ ...fast, maxRetries: 0, serverUrls: [stall.url, `${good.url}${FQRN}`] });
  const alone = new Downloader({ ...fast, maxRetries: 0, serverUrls: [stall.url] });
  try {
    const got = await d.fetchObject(obj.id, obj.suffix, {});
    assert.ok(got.equals(obj.content));
    const err = await alone.fetchObject(obj.id, obj.suffix, {}).then(() => null, (e: unknown) => e);
    assert.ok(isGridboxError(err, 'DOWNLOAD_ALL_FAILED'), String(err));
    assert.deepEqual(((err as GridboxError).fields.attempts as { outcome: string }[]).map((a) => a.outcome), ['DOWNLOAD_TIMEOUT']);
    assert.equal(d.status().counters.hostFailovers, 1);
  } finally { await d.close(); await alone.close(); await stall.close(); await good.close(); }
}));

test('a correctly hashed object of the wrong size is refused, and files are size-capped', () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const [obj] = await makeObjects(srv, 1);
  const good = await listenSrv({ srvDir: srv });
  const d = new Downloader({ ...fast, serverUrls: [`${good.url}${FQRN}`], maxFileBytes: 100 });
  try {
    const e1 = await d.fetchObject(obj.id, obj.suffix, { expectedSize: obj.content.length - 1 }).catch((e: unknown) => e);
    assert.ok(isGridboxError(e1, 'DOWNLOAD_ALL_FAILED'));
    assert.ok(isGridboxError((e1 as Error).cause, 'STORE_SIZE_MISMATCH'));
    const e2 = await d.fetchFile(obj.relPath).catch((e: unknown) => e);
    assert.ok(isGridboxError((e2 as Error).cause, 'DOWNLOAD_TOO_LARGE'), String(e2));
    const raw = await d.fetchFile(obj.relPath, { maxBytes: obj.stored.length });
    assert.ok(raw.equals(obj.stored));
    const e3 = await d.fetchFile('.cvmfspublished').catch((e: unknown) => e);
    assert.ok(isGridboxError((e3 as Error).cause, 'DOWNLOAD_HOST'), 'a 404 is a host failure');
  } finally { await d.close(); await good.close(); }
}));

/** A minimal forward proxy (absolute-form request targets), or one that always answers like a failing squid. */
async function fakeProxy(mode: 'forward' | 'squid-error'): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    if (mode === 'squid-error') { res.writeHead(503, { 'x-squid-error': 'ERR_CONNECT_FAIL 111' }).end('no'); return; }
    const up = request(req.url ?? '', { headers: req.headers }, (r) => { res.writeHead(r.statusCode ?? 502, r.headers); r.pipe(res); });
    up.on('error', () => { res.writeHead(502).end(); });
    up.end();
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}`, hits: () => hits, close: () => stop(server) };
}

test('proxy failures (refused, X-Squid-Error) burn the proxy and move to the next group', () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const objs = await makeObjects(srv, 2);
  const good = await listenSrv({ srvDir: srv });
  const failing = await fakeProxy('squid-error');
  const fwd = await fakeProxy('forward');
  const dead = `http://127.0.0.1:${await deadPort()}`;
  const d = new Downloader({ ...fast, serverUrls: [`${good.url}${FQRN}`], proxyGroups: [[dead, failing.url], [fwd.url]] });
  try {
    for (const o of objs) assert.ok((await d.fetchObject(o.id, o.suffix)).equals(o.content));
    const st = d.status();
    assert.equal(st.proxy, fwd.url);
    assert.equal(st.counters.proxyFailovers, 2);
    assert.equal(st.counters.hostFailovers, 0);
    assert.equal(failing.hits(), 1);
    assert.equal(fwd.hits(), 2);
  } finally { await d.close(); await good.close(); await failing.close(); await fwd.close(); }
}));

test('file:// hosts work for tests, and a missing file fails over to the next host', () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const [obj] = await makeObjects(srv, 1);
  const d = new Downloader({ ...fast, serverUrls: [`file://${join(dir, 'nowhere')}`, `file://${join(srv, FQRN)}`] });
  try {
    assert.ok((await d.fetchObject(obj.id, obj.suffix)).equals(obj.content));
    assert.equal(d.status().counters.hostFailovers, 1);
  } finally { await d.close(); }
}));
