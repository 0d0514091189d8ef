import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { listenSrv, type RequestInfo } from '../server/srv-handler.js';
import { startLatencyProxy } from '../testing/latency-proxy.js';
import { startSquid, squidBinary } from '../testing/squid.js';
import { withTempDir } from '../testing/tmp.js';
import { makeRawObject, pseudoRandomBytes, writeRawObjects } from '../testing/raw-repo.js';
import { ProxyChain } from './chains.js';
import { Downloader } from './downloader.js';
import { measureHosts, orderByRtt } from './host-order.js';

const FQRN = 'order.example.org';

test('orderByRtt puts the fastest first and hosts that never answered last, in their configured order', async () => {
  const rtt: Record<string, number | undefined> = { a: 30, b: undefined, c: 5, d: undefined, e: 12 };
  let calls = 0;
  const probes = await measureHosts(['a', 'b', 'c', 'd', 'e'], async (h) => {
    calls++;
    const ms = rtt[h];
    if (ms === undefined) throw new Error(`${h} is down`);
    return calls <= 5 ? ms + 100 : ms; // the first round pays for connections: the best round counts
  });
  assert.equal(calls, 10, 'two rounds over five hosts');
  assert.deepEqual(probes.map((p) => p.rttMs), [30, undefined, 5, undefined, 12]);
  assert.equal(probes[1].error, 'b is down');
  assert.deepEqual(orderByRtt(probes), ['c', 'e', 'a', 'b', 'd']);
});

test('a sharded proxy group sends each key to one member consistently; a burned member hands over only its own keys', () => {
  const group = ['http://p1', 'http://p2', 'http://p3'];
  const a = new ProxyChain([group], 300_000, () => 0.1, Date.now, true);
  const b = new ProxyChain([group], 300_000, () => 0.9, Date.now, true);
  const keys = Array.from({ length: 300 }, (_, i) => `data/${(i * 7919).toString(16).padStart(2, '0')}/obj${i}`);
  const before = new Map(keys.map((k) => [k, a.current(k)]));
  for (const k of keys) assert.equal(b.current(k), before.get(k), 'two clients agree on the member for a key');
  for (const p of group) assert.ok([...before.values()].filter((v) => v === p).length > 50, `${p} gets a fair share`);
  assert.equal(a.fail('http://p2'), true);
  assert.equal(a.fail('http://p2'), false, 'a member already burned is not burned twice');
  for (const k of keys) {
    const now = a.current(k);
    if (before.get(k) === 'http://p2') assert.notEqual(now, 'http://p2');
    else assert.equal(now, before.get(k), 'keys of live members stay where they were');
  }
  const plain = new ProxyChain([group], 300_000, () => 0.5);
  assert.equal(new Set(keys.map((k) => plain.current(k))).size, 1, 'without sharding one member serves everything');
});

test('CVMFS_USE_GEOAPI-style ordering: the near stratum 1 is used first, a dead one is failed over and measured last', { timeout: 60_000 }, () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const objs = await writeRawObjects(srv, FQRN, Array.from({ length: 4 }, (_, i) => makeRawObject(pseudoRandomBytes(5000 + i, 70 + i))));
  await writeFile(join(srv, FQRN, '.cvmfspublished'), 'manifest\n');
  const hits = { near: [] as string[], far: [] as string[] };
  const near = await listenSrv({ srvDir: srv, onRequest: (i: RequestInfo) => hits.near.push(`${i.method} ${i.url}`) });
  const farOrigin = await listenSrv({ srvDir: srv, onRequest: (i: RequestInfo) => hits.far.push(`${i.method} ${i.url}`) });
  // Every request to the far stratum 1 waits 250 ms: a WAN hop, on loopback.
  const far = await startLatencyProxy({ port: farOrigin.port, delayMs: 250 });
  const nearUrl = `${near.url}${FQRN}`;
  const farUrl = far.url(`${farOrigin.url}${FQRN}`);
  // Configured far first: the measurement must turn the order around.
  const d = new Downloader({ serverUrls: [farUrl, nearUrl], hostOrder: 'rtt', maxRetries: 0, timeoutDirectMs: 5000 });
  try {
    assert.equal((await d.fetchFile('.cvmfspublished')).toString(), 'manifest\n');
    let st = d.status();
    assert.deepEqual(st.hosts, [nearUrl, farUrl]);
    assert.equal(st.host, nearUrl);
    assert.equal(st.probeRounds, 1);
    assert.ok(st.probes?.every((p) => p.rttMs !== undefined), 'both hosts answered the probe');
    for (const o of objs) assert.ok((await d.fetchObject(o.id, o.suffix)).equals(o.content));
    assert.equal(hits.far.filter((h) => h.startsWith('GET')).length, 0, 'the far host saw probes only');
    assert.equal(hits.far.filter((h) => h.startsWith('HEAD /cvmfs/order.example.org/.cvmfspublished')).length, 2, 'two probe rounds');

    await near.close();
    for (const o of objs) assert.ok((await d.fetchObject(o.id, o.suffix)).equals(o.content), 'served by the far host after the near one stopped');
    st = d.status();
    assert.equal(st.counters.hostFailovers, 1);
    // The failover starts a new measurement in the background; the next request sees its result.
    for (let i = 0; i < 100 && d.status().probeRounds < 2; i++) await new Promise((r) => setTimeout(r, 50));
    st = d.status();
    assert.equal(st.probeRounds, 2, 'a host failover triggers a new measurement');
    assert.deepEqual(st.hosts, [farUrl, nearUrl], 'the dead host goes last');
    assert.equal(st.probes?.[1].rttMs, undefined);
    assert.match(st.probes?.[1].error ?? '', /ECONNREFUSED/);
    assert.equal(st.host, farUrl);
  } finally {
    await d.close();
    await far.close();
    await farOrigin.close();
    await near.close();
  }
}));

const skipReason = squidBinary() === undefined ? 'squid is not installed' : false;

test('CVMFS_PROXY_SHARD: two real squids each cache their share of the objects; one stopped, the other takes its share', { skip: skipReason, timeout: 90_000 }, () => withTempDir(async (dir) => {
  await chmod(dir, 0o755); // squid drops to user proxy, which must traverse to its state dir
  const srv = join(dir, 'srv');
  const objs = await writeRawObjects(srv, FQRN, Array.from({ length: 24 }, (_, i) => makeRawObject(pseudoRandomBytes(2000 + i * 101, 300 + i))));
  const originHits = new Map<string, number>();
  const origin = await listenSrv({ srvDir: srv, onRequest: (i) => originHits.set(i.url, (originHits.get(i.url) ?? 0) + 1) });
  const squids = [await startSquid(join(dir, 'sq1')), await startSquid(join(dir, 'sq2'))];
  const make = (): Downloader => new Downloader({ serverUrls: [`${origin.url}${FQRN}`], proxyGroups: [squids.map((s) => s.url)], proxyShard: true,
    maxRetries: 0, timeoutMs: 5000 });
  const clients = [make(), make()];
  try {
    for (const d of clients) for (const o of objs) assert.ok((await d.fetchObject(o.id, o.suffix)).equals(o.content));
    const logs = await Promise.all(squids.map((s) => s.accessLog()));
    const inLog = (log: string[], o: (typeof objs)[number]): number => log.filter((l) => l.includes(o.relPath)).length;
    for (const o of objs) {
      const where = logs.map((l) => inLog(l, o));
      assert.ok((where[0] === 2 && where[1] === 0) || (where[0] === 0 && where[1] === 2), `${o.relPath}: both clients asked one squid (${where.join('/')})`);
      assert.equal(originHits.get(`/cvmfs/${FQRN}/${o.relPath}`), 1, 'the origin saw each object once');
    }
    const share = objs.filter((o) => inLog(logs[0], o) > 0).length;
    assert.ok(share > 0 && share < objs.length, `both squids hold a share (${share}/${objs.length} on the first)`);

    await squids[0].stop();
    const third = make();
    clients.push(third);
    for (const o of objs) assert.ok((await third.fetchObject(o.id, o.suffix)).equals(o.content), 'every object still arrives');
    assert.equal(third.status().counters.proxyFailovers, 1, 'the stopped squid was burned once');
    for (const o of objs) assert.equal(inLog(await squids[1].accessLog(), o), inLog(logs[1], o) + 1, 'the survivor served every object');
  } finally {
    for (const d of clients) await d.close();
    for (const s of squids) await s.stop();
    await origin.close();
  }
}));
