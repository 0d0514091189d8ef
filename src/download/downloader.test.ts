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
import { Downloader, type FetchObjectOptions } from './downloader.js';
import { FsCacheStore } from '../cache/cache-store.js';
import type { ObjectSuffix } from '../hash/object-id.js';

/**
 * The two download paths: 'node' (Node's http, a memory output) and 'native' (a cache writer's file, which
 * the native fetcher fills when its addon is built; npm ci builds it). The failure tests below run on both.
 */
type Via = 'node' | 'native';
const VIAS: Via[] = ['node', 'native'];

async function fetchVia(d: Downloader, via: Via, cacheDir: string, o: RawObject, opts: FetchObjectOptions = {}, suffix: ObjectSuffix = o.suffix): Promise<Buffer> {
  if (via === 'node') return d.fetchObject(o.id, suffix, opts);
  assert.equal(await d.nativeReady(), true, 'the gridbox-object-fetch addon is built (npm ci builds it) and loads libcurl');
  const store = await FsCacheStore.open(cacheDir, 'c');
  const w = await d.fetchObjectTo(o.id, suffix, opts, () => store.begin(o.id));
  const h = await w.commit();
  try { return await h.readAll(); } finally { await h.close(); }
}

function assertPath(d: Downloader, via: Via): void {
  const n = d.status().counters.nativeRequests;
  if (via === 'native') assert.ok(n > 0, 'the native fetcher made the attempts');
  else assert.equal(n, 0);
}

const FQRN = 'fail.example.org';
const fast = { maxRetries: 1, backoffInitMs: 5, backoffMaxMs: 20, timeoutMs: 400, timeoutDirectMs: 400, nativeFetch: true };

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

for (const via of VIAS) test(`${via}: fetchObject fails over past a down, a slow and a corrupt host and returns only verified bytes`, () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const objs = await makeObjects(srv, 4);
  const good = await listenSrv({ srvDir: srv });
  const slow = await badServer(srv, 'slow');
  const corrupt = await badServer(srv, 'corrupt');
  const down = `http://127.0.0.1:${await deadPort()}/cvmfs/${FQRN}`;
  const d = new Downloader({ ...fast, serverUrls: [down, slow.url, corrupt.url, `${good.url}${FQRN}`] });
  try {
    for (const o of objs) {
      const got = await fetchVia(d, via, dir, o, { expectedSize: o.suffix === 'C' ? undefined : o.content.length });
      assert.ok(got.equals(o.content));
    }
    assertPath(d, via);
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

for (const via of VIAS) test(`${via}: truncated and wrong-size objects are retried elsewhere; when every host fails the error lists each attempt`, () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const [obj] = await makeObjects(srv, 2).then((o) => o.slice(1));
  const trunc = await badServer(srv, 'truncate');
  const short = await badServer(srv, 'wrongsize');
  const d = new Downloader({ ...fast, serverUrls: [trunc.url, short.url] });
  try {
    const err = await fetchVia(d, via, dir, obj, { expectedSize: obj.content.length }, '').then(() => null, (e: unknown) => e);
    assertPath(d, via);
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

for (const via of VIAS) test(`${via}: a body that stalls half-way times out as DOWNLOAD_TIMEOUT (socket inactivity, not only headers) and fails over`, () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const [obj] = await makeObjects(srv, 1);
  const stall = await badServer(srv, 'stall');
  const good = await listenSrv({ srvDir: srv });
  const d = new Downloader({ ...fast, maxRetries: 0, serverUrls: [stall.url, `${good.url}${FQRN}`] });
  const alone = new Downloader({ ...fast, maxRetries: 0, serverUrls: [stall.url] });
  try {
    const got = await fetchVia(d, via, dir, obj);
    assert.ok(got.equals(obj.content));
    assertPath(d, via);
    const err = await fetchVia(alone, via, dir, obj).then(() => null, (e: unknown) => e);
    assert.ok(isGridboxError(err, 'DOWNLOAD_ALL_FAILED'), String(err));
    assert.deepEqual(((err as GridboxError).fields.attempts as { outcome: string }[]).map((a) => a.outcome), ['DOWNLOAD_TIMEOUT']);
    assert.equal(d.status().counters.hostFailovers, 1);
  } finally { await d.close(); await alone.close(); await stall.close(); await good.close(); }
}));

for (const via of VIAS) test(`${via}: a correctly hashed object of the wrong size is refused, and files are size-capped`, () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const [obj] = await makeObjects(srv, 1);
  const good = await listenSrv({ srvDir: srv });
  const d = new Downloader({ ...fast, serverUrls: [`${good.url}${FQRN}`], maxFileBytes: 100 });
  try {
    const e1 = await fetchVia(d, via, dir, obj, { expectedSize: obj.content.length - 1 }).catch((e: unknown) => e);
    assert.ok(isGridboxError(e1, 'DOWNLOAD_ALL_FAILED'));
    assert.ok(isGridboxError((e1 as Error).cause, 'STORE_SIZE_MISMATCH'));
    assertPath(d, via);
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

for (const via of VIAS) test(`${via}: proxy failures (refused, X-Squid-Error) burn the proxy and move to the next group`, () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const objs = await makeObjects(srv, 2);
  const good = await listenSrv({ srvDir: srv });
  const failing = await fakeProxy('squid-error');
  const fwd = await fakeProxy('forward');
  const dead = `http://127.0.0.1:${await deadPort()}`;
  const d = new Downloader({ ...fast, serverUrls: [`${good.url}${FQRN}`], proxyGroups: [[dead, failing.url], [fwd.url]] });
  try {
    for (const o of objs) assert.ok((await fetchVia(d, via, dir, o)).equals(o.content));
    assertPath(d, via);
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

test('both paths send the same request through a proxy: absolute target, Host, user agent, no-cache on a retry; large objects stream', () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  // Larger than the native inflater's 256 KiB piece and the cache writer's 1 MiB memory bound.
  const plain = Buffer.concat([pseudoRandomBytes(2_500_000, 7), Buffer.alloc(3_000_000, 1)]);
  const [obj] = await writeRawObjects(srv, FQRN, [makeRawObject(plain, '')]);
  const good = await listenSrv({ srvDir: srv });
  const seen: Record<Via, { url: string; host: string; ua: string; cc: string }[]> = { node: [], native: [] };
  let via: Via = 'node';
  let corruptFirst = true;
  const server = createServer((req, res) => {
    seen[via].push({ url: req.url ?? '', host: String(req.headers.host), ua: String(req.headers['user-agent']), cc: String(req.headers['cache-control'] ?? '') });
    const up = request(req.url ?? '', { headers: req.headers }, (r) => {
      if (!corruptFirst) { res.writeHead(r.statusCode ?? 502, r.headers); r.pipe(res); return; }
      corruptFirst = false;
      const parts: Buffer[] = [];
      r.on('data', (c: Buffer) => parts.push(c));
      r.on('end', () => { const b = Buffer.concat(parts); b[100] ^= 1; res.writeHead(200, { 'content-length': String(b.length) }).end(b); });
    });
    up.on('error', () => { res.writeHead(502).end(); });
    up.end();
  });
  const port = await listen(server);
  // A site's environment often exempts loopback from proxies; CVMFS_HTTP_PROXY must win over it on both paths.
  const noProxy = process.env.no_proxy;
  process.env.no_proxy = '127.0.0.1,localhost';
  try {
    const got: Record<Via, Buffer> = { node: Buffer.alloc(0), native: Buffer.alloc(0) };
    for (via of VIAS) {
      corruptFirst = true;
      const d = new Downloader({ ...fast, serverUrls: [`${good.url}${FQRN}`], proxyGroups: [[`http://127.0.0.1:${port}`]], userAgent: 'gridbox-test 1' });
      try {
        got[via] = await fetchVia(d, via, join(dir, via), obj, { expectedSize: plain.length });
        assertPath(d, via);
        assert.equal(d.status().counters.noCacheRetries, 1);
      } finally { await d.close(); }
    }
    assert.ok(got.node.equals(plain) && got.native.equals(plain));
    assert.deepEqual(seen.native, seen.node);
    assert.equal(seen.native.length, 2);
    assert.equal(seen.native[0].url, `${good.url}${FQRN}/${obj.relPath}`);
    assert.equal(seen.native[0].host, new URL(good.url).host);
    assert.equal(seen.native[0].ua, 'gridbox-test 1');
    assert.deepEqual(seen.native.map((s) => s.cc), ['', 'no-cache']);
  } finally {
    if (noProxy === undefined) delete process.env.no_proxy; else process.env.no_proxy = noProxy;
    await stop(server); await good.close();
  }
}));

for (const via of VIAS) test(`${via}: rmd160 and shake128 objects and uncompressed ones verify; a wrong algorithm is a hash mismatch`, () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const objs = await writeRawObjects(srv, FQRN, [
    makeRawObject(pseudoRandomBytes(70_000, 3), '', 'rmd160'),
    makeRawObject(pseudoRandomBytes(1_200, 4), '', 'shake128'),
    makeRawObject(pseudoRandomBytes(300_000, 5), '', 'sha1', false),
  ]);
  const good = await listenSrv({ srvDir: srv });
  const d = new Downloader({ ...fast, serverUrls: [`${good.url}${FQRN}`] });
  // DIRECT means direct whatever the environment says: a proxy named there (nothing listens) must not be used.
  const httpProxy = process.env.http_proxy;
  process.env.http_proxy = `http://127.0.0.1:${await deadPort()}`;
  try {
    for (const o of objs.slice(0, 2)) assert.ok((await fetchVia(d, via, dir, o, { expectedSize: o.content.length })).equals(o.content));
    const raw = objs[2];
    assert.ok((await fetchVia(d, via, dir, raw, { compression: 'none', expectedSize: raw.content.length })).equals(raw.content));
    // Served uncompressed but declared zlib: the hash is right, the inflate is not.
    const e = await fetchVia(d, via, dir, raw, { expectedSize: raw.content.length }).catch((x: unknown) => x);
    assert.ok(isGridboxError((e as Error).cause, 'COMPRESSION_BAD'), String(e));
    assertPath(d, via);
  } finally {
    if (httpProxy === undefined) delete process.env.http_proxy; else process.env.http_proxy = httpProxy;
    await d.close(); await good.close();
  }
}));
