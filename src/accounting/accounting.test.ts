// Accounting: image identity from paths and mountinfo, the SQLite store with its retention bounds, the
// report's table and SVG, and the aggregation endpoint on a real loopback HTTP server (posts from two nodes,
// re-posts ignored, bad and oversized bodies refused).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { exchangeText } from './http-exchange.js';
import { withTempDir } from '../testing/tmp.js';
import { ingestRecords, listStarts, markPosted, openAccountingDb, recordStart, unposted } from './accounting-db.js';
import { attachAccounting, ACCOUNTING_PREFIX, MAX_POST_BYTES } from './http-handler.js';
import { renderSvg, renderTable, summarize } from './report.js';
import { gridboxMountOf, imageIdentity, invalidRecord, parseMountInfo, type StartRecord } from './start-record.js';
import { copyFileSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { readSpool, SPOOL_FOLD_AT, spoolDirOf, spoolStart } from './start-spool.js';

const DIGEST = `ab${'c'.repeat(62)}`;
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 11, 1, 12);

function rec(o: Partial<StartRecord> = {}): Omit<StartRecord, 'id'> {
  return {
    node: 'wn1', startedAt: T0, via: 'pilot', imageName: 'sync.example.org/library/debian:bookworm', imageDigest: `sha256:${DIGEST}`,
    firstInstructionMs: 120, exitMs: 800, exitStatus: 0, bytesFetched: 4_000_000, cacheHits: 3, cacheMisses: 40, ...o,
  };
}

test('image identity: public name inside the mount, digest from the .images tree, mountinfo parsing', () => {
  const info = [
    '36 25 0:32 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
    '90 36 0:50 / /srv/cvmfs/sync.example.org rw,nosuid,nodev,relatime shared:40 - fuse.gridbox sync.example.org ro,user_id=0',
    '91 36 0:51 / /srv/with\\040space rw - fuse.gridbox other.org ro',
    '92 36 0:52 / /srv/cvmfs rw - tmpfs tmpfs rw',
  ].join('\n');
  const mounts = parseMountInfo(info);
  assert.equal(mounts[2].mountpoint, '/srv/with space');
  const m = gridboxMountOf(`/srv/cvmfs/sync.example.org/.images/ab/${'c'.repeat(62)}`, mounts);
  assert.equal(m?.source, 'sync.example.org');
  assert.equal(gridboxMountOf('/srv/cvmfs/other', mounts), undefined);
  assert.equal(gridboxMountOf('/srv/cvmfs/sync.example.org.evil/x', mounts), undefined);
  const given = '/srv/cvmfs/sync.example.org/library/debian:bookworm';
  const physical = `/srv/cvmfs/sync.example.org/.images/ab/${'c'.repeat(62)}`;
  assert.deepEqual(imageIdentity({ given, physical, mount: m }), { name: 'sync.example.org/library/debian:bookworm', digest: `sha256:${DIGEST}` });
  assert.deepEqual(imageIdentity({ given: physical, physical, mount: m, human: '/cvmfs/sync.example.org/library/debian:bookworm' }).name, 'sync.example.org/library/debian:bookworm');
  assert.deepEqual(imageIdentity({ given: '/opt/img/', physical: '/opt/img' }), { name: '/opt/img', digest: null });
});

test('invalidRecord names the bad field of a posted record', () => {
  const good = { ...rec(), id: 1 };
  assert.equal(invalidRecord(good), undefined);
  const rows: Array<[Record<string, unknown>, RegExp]> = [
    [{ node: '' }, /node/], [{ id: 0 }, /id/], [{ via: 'cron' }, /via/], [{ imageDigest: 'md5:x' }, /imageDigest/],
    [{ exitStatus: -1 }, /exitStatus/], [{ bytesFetched: -5 }, /bytesFetched/], [{ exitMs: 'fast' }, /exitMs/], [{ imageName: 'x'.repeat(600) }, /imageName/],
  ];
  for (const [patch, re] of rows) assert.match(invalidRecord({ ...good, ...patch }) ?? '', re, JSON.stringify(patch));
  assert.equal(invalidRecord(null), 'not an object');
});

test('the database keeps records, bounds them by count and age, and tracks what was posted', async () => {
  await withTempDir(async (dir) => {
    const db = openAccountingDb(join(dir, 'a', 'accounting.db'));
    try {
      for (let i = 0; i < 12; i++) recordStart(db, rec({ startedAt: T0 + i * 1000, exitStatus: i === 3 ? 1 : 0 }), { now: T0, maxRecords: 10 });
      const all = listStarts(db);
      assert.equal(all.length, 10, 'count bound keeps the newest 10');
      assert.equal(all[0].startedAt, T0 + 2000);
      recordStart(db, rec({ startedAt: T0 + 5 * DAY }), { now: T0 + 5 * DAY, maxAgeMs: 2 * DAY });
      assert.deepEqual(listStarts(db).map((r) => r.startedAt), [T0 + 5 * DAY], 'age bound drops records older than 2 days');
      const pending = unposted(db, 100);
      assert.equal(pending.length, 1);
      markPosted(db, pending.map((r) => r.id));
      assert.equal(unposted(db, 100).length, 0);
      // Records from another node keep their id; the same record twice is stored once.
      assert.equal(ingestRecords(db, [{ ...rec({ node: 'wn2' }), id: 7 }, { ...rec({ node: 'wn2' }), id: 7 }], { now: T0 }), 1);
    } finally { db.close(); }
  });
});

test('starts are spooled as files and moved into the database on open, once each; bad entries are dropped', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'state', 'accounting.db');
    assert.equal(spoolStart(path, rec({ startedAt: T0 })), 0);
    assert.equal(spoolStart(path, rec({ startedAt: T0 + 1, exitStatus: 3 })), 0);
    writeFileSync(join(spoolDirOf(path), '1-2-3.start.json'), '{"node":'); // a torn or foreign file
    writeFileSync(join(spoolDirOf(path), '1-2-4.start.json'), JSON.stringify({ ...rec(), exitStatus: -1 }));
    assert.equal(readSpool(path).filter((e) => e.record !== undefined).length, 2);
    const kept = join(dir, 'kept.json');
    const keptName = readSpool(path).find((e) => e.record?.exitStatus === 3)!.name;
    copyFileSync(join(spoolDirOf(path), keptName), kept);
    const ro = openAccountingDb(path, { readonly: true }); // a reader folds through a writable connection first
    try { assert.deepEqual(listStarts(ro).map((r) => r.exitStatus), [0, 3]); } finally { ro.close(); }
    assert.deepEqual(readdirSync(spoolDirOf(path)), [], 'folded and invalid entries are gone');
    // A fold cut short after its commit leaves files behind: folding them again stores nothing twice.
    copyFileSync(kept, join(spoolDirOf(path), keptName));
    const db = openAccountingDb(path);
    try { assert.equal(listStarts(db).length, 2); } finally { db.close(); }
    // The writer reports when the spool is long enough that it should fold it itself.
    let hint = 0;
    for (let i = 0; i < SPOOL_FOLD_AT && hint === 0; i++) hint = spoolStart(path, rec({ startedAt: T0 + 10 + i }));
    assert.equal(hint, SPOOL_FOLD_AT);
    openAccountingDb(path).close();
    assert.ok(existsSync(spoolDirOf(path)) && readdirSync(spoolDirOf(path)).length === 0);
  });
});

test('report: starts per day and per image as a table and an SVG with one bar per day and per image', () => {
  const records: StartRecord[] = [
    { ...rec(), id: 1 }, { ...rec({ startedAt: T0 + 1000, exitStatus: 2 }), id: 2 },
    { ...rec({ startedAt: T0 + DAY, imageName: 'sync.example.org/library/alpine:3', imageDigest: null, node: 'wn2', firstInstructionMs: null }), id: 1 },
  ];
  const s = summarize(records);
  assert.deepEqual(s.perDay.map((d) => [d.day, d.starts, d.failed]), [['2026-12-01', 2, 1], ['2026-12-02', 1, 0]]);
  assert.deepEqual(s.perImage.map((i) => [i.image, i.starts, i.nodes]), [['sync.example.org/library/debian:bookworm', 2, 1], ['sync.example.org/library/alpine:3', 1, 1]]);
  const t = renderTable(s);
  assert.match(t, /3 container starts on 2 nodes/);
  assert.match(t, /2026-12-01\s+2\s+1\s+120 ms/);
  const svg = renderSvg(s);
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.equal((svg.match(/<title>2026-12-0\d: /g) ?? []).length, 2);
  assert.equal((svg.match(/<title>sync\.example\.org\/library\/[a-z]+:[a-z0-9]+: \d+ starts<\/title>/g) ?? []).length, 2);
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  assert.match(renderSvg(summarize([{ ...rec({ imageName: 'a<b>&"c' }), id: 1 }])), /a&lt;b&gt;&amp;&quot;c/);
  assert.equal(renderTable(summarize([])), 'no container starts recorded\n');
});

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('the serve endpoint aggregates posts from several nodes and leaves other paths to the file server', async () => {
  await withTempDir(async (dir) => {
    const db = openAccountingDb(join(dir, 'fleet.db'));
    const server = createServer((_req, res) => { res.writeHead(204).end(); });
    attachAccounting(server, db);
    const base = await listen(server);
    try {
      const post = async (body: string): Promise<{ status: number; text: string }> => {
        const r = await exchangeText(`${base}${ACCOUNTING_PREFIX}starts`, { method: 'POST', body, contentType: 'application/json', timeoutMs: 10_000 });
        return { status: r.status, text: r.text };
      };
      const a = [{ ...rec({ node: 'wn1' }), id: 1 }, { ...rec({ node: 'wn1', startedAt: T0 + DAY }), id: 2 }];
      const b = [{ ...rec({ node: 'wn2', imageName: 'x/alpine:3' }), id: 1 }];
      assert.deepEqual(JSON.parse((await post(JSON.stringify({ records: a }))).text), { received: 2, added: 2 });
      assert.deepEqual(JSON.parse((await post(JSON.stringify({ records: b }))).text), { received: 1, added: 1 });
      assert.deepEqual(JSON.parse((await post(JSON.stringify({ records: a }))).text), { received: 2, added: 0 }, 're-post is a no-op');
      const bad = await post(JSON.stringify({ records: [{ ...a[0], via: 'cron' }] }));
      assert.equal(bad.status, 400);
      assert.match(bad.text, /record 0: via/);
      assert.equal((await post('{nope')).status, 400);
      assert.equal((await post(JSON.stringify({ records: [], pad: 'x'.repeat(MAX_POST_BYTES) }))).status, 413);
      const rep = await exchangeText(`${base}${ACCOUNTING_PREFIX}report.json`, { timeoutMs: 10_000 });
      const s = JSON.parse(rep.text);
      assert.equal(s.total, 3);
      assert.equal(s.nodes, 2);
      const svg = await exchangeText(`${base}${ACCOUNTING_PREFIX}report.svg`, { timeoutMs: 10_000 });
      assert.equal(svg.headers['content-type'], 'image/svg+xml');
      assert.match(svg.text, /3 starts, 2 nodes/);
      const other = await exchangeText(`${base}/cvmfs/x/.cvmfspublished`, { timeoutMs: 10_000 });
      assert.equal(other.status, 204, 'other paths reach the original handler');
    } finally {
      await new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); });
      db.close();
    }
  });
});
