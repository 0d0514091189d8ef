// Start profiles: a start's whole-file opens are recorded per image; the next start of that image opens the
// recorded files through the client (the verifying path every reader takes), skips names that no longer
// exist, and stops at MAX_BYTES_FACTOR × the recorded bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withTempDir } from '../testing/tmp.js';
import type { Client, ClientNode } from '../client/index.js';
import { createStartProfiler, imageOf, MAX_BYTES_FACTOR, mergeProfile, parseProfile, type Profile } from './start-profile.js';

/** Chunked files: path -> chunk sizes. Every other path in `sizes` is a whole file. */
/** `cached`: whole files the client cache holds (prefetch warms them and says so). */
function fakeClient(sizes: Record<string, number>, chunked: Record<string, number[]> = {}, cached: string[] = []) {
  const opened: string[] = [];
  const looked: string[] = [];
  const reads: string[] = [];
  const warmed: string[] = [];
  const chunksOf = (path: string) => {
    let off = 0;
    return chunked[path].map((size) => { const c = { offset: off, size }; off += size; return c; });
  };
  const node = (path: string): ClientNode | undefined => chunked[path] !== undefined ? ({
    path, attr: { size: chunked[path].reduce((a, b) => a + b, 0) }, entry: { chunks: chunksOf(path), entry: { type: 'file' } },
  } as unknown as ClientNode) : sizes[path] === undefined ? undefined : ({
    path, attr: { size: sizes[path] }, entry: { id: { algorithm: 'sha1', hex: 'a'.repeat(40) }, entry: { type: 'file', size: sizes[path] } },
  } as unknown as ClientNode);
  let handles = 0;
  const byHandle = new Map<number, string>();
  const client = {
    fqrn: 'profile.example.org',
    lookup: async (p: string) => { looked.push(p); return node(p); },
    openNode: async (n: ClientNode) => { opened.push(n.path); byHandle.set(++handles, n.path); return handles; },
    read: async (h: number, offset: number) => { reads.push(`${byHandle.get(h)}@${offset}`); return Buffer.alloc(1); },
    release: async () => undefined,
    prefetch: (ns: ClientNode[]) => { warmed.push(...ns.map((n) => n.path)); return ns.filter((n) => cached.includes(n.path)).length; },
  } as unknown as Client;
  return { client, opened, looked, reads, warmed };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 50));
/** Waits until `cond` holds (a loaded machine may take a while to read a profile and replay it), at most 10 s. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (const t0 = Date.now(); !cond(); await settle()) if (Date.now() - t0 > 10_000) assert.fail(`timed out waiting for ${what}`);
}

test('imageOf names synced images by digest directory, other paths by their top directory', () => {
  assert.equal(imageOf('/.images/ab/abcdef/usr/bin/python3'), '/.images/ab/abcdef');
  assert.equal(imageOf('/sw/lib/libx.so'), '/sw');
  assert.equal(imageOf('/top.txt'), '/');
});

test('a start is recorded once per image and replayed through the client on the next start; missing files are skipped', () => withTempDir(async (dir) => {
  const img = '/.images/ab/abcdef';
  const first = fakeClient({});
  const rec = createStartProfiler({ dir, client: first.client, windowMs: 60_000 });
  rec.onOpen(`${img}/bin/sh`, 100);
  rec.onOpen(`${img}/lib/libc.so`, 200);
  rec.onOpen(`${img}/gone`, 50);
  rec.onOpen('/other/file', 10);
  await settle();
  await rec.flush();
  assert.equal(rec.stats().recorded, 2, 'one profile per image');

  // Next mount: the image changed a little (one file gone); the first open of the image starts the replay.
  const next = fakeClient({ [`${img}/bin/sh`]: 100, [`${img}/lib/libc.so`]: 200 });
  const again = createStartProfiler({ dir, client: next.client });
  again.onOpen(`${img}/bin/sh`, 100);
  await until(() => again.stats().replayed + again.stats().skipped === 3, 'the replay');
  assert.deepEqual(next.opened.sort(), [`${img}/bin/sh`, `${img}/lib/libc.so`]);
  assert.deepEqual(next.warmed.sort(), [`${img}/bin/sh`, `${img}/lib/libc.so`], 'whole files are also read ahead from the client cache');
  assert.deepEqual({ ...again.stats(), recorded: 0 }, { recorded: 0, replayed: 2, replayedBytes: 300, skipped: 1 });
}, 'gridbox-profile-'));

test('files already in the client cache are only warmed, not opened; the rest are fetched through an open', () => withTempDir(async (dir) => {
  const rec = createStartProfiler({ dir, client: fakeClient({}).client, windowMs: 60_000 });
  rec.onOpen('/img/cached', 10);
  rec.onOpen('/img/new', 20);
  await rec.flush();
  const next = fakeClient({ '/img/cached': 10, '/img/new': 20 }, {}, ['/img/cached']);
  const again = createStartProfiler({ dir, client: next.client });
  again.onLookup('/img/x');
  await until(() => again.stats().replayed === 2, 'the replay');
  assert.deepEqual(next.opened, ['/img/new']);
  assert.deepEqual(next.warmed.sort(), ['/img/cached', '/img/new']);
  assert.equal(again.stats().replayedBytes, 30);
}, 'gridbox-profile-'));

test('a replay stops at the byte bound even when the files grew', () => withTempDir(async (dir) => {
  const rec = createStartProfiler({ dir, client: fakeClient({}).client, windowMs: 60_000 });
  for (let i = 0; i < 10; i++) rec.onOpen(`/img/f${i}`, 100);
  await settle();
  await rec.flush();
  // Every file is now 10× bigger: only MAX_BYTES_FACTOR × 1000 bytes may be fetched.
  const sizes = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`/img/f${i}`, 1000]));
  const next = fakeClient(sizes);
  const again = createStartProfiler({ dir, client: next.client });
  again.onOpen('/img/f0', 1000);
  await until(() => next.opened.length >= 1, 'the replay');
  await settle();
  assert.ok(again.stats().replayedBytes <= MAX_BYTES_FACTOR * 1000, JSON.stringify(again.stats()));
  assert.ok(next.opened.length >= 1);
}, 'gridbox-profile-'));

test('a damaged profile is ignored and rewritten by the next start', () => withTempDir(async (dir) => {
  const rec = createStartProfiler({ dir, client: fakeClient({}).client, windowMs: 60_000 });
  rec.onOpen('/img/a', 1);
  await rec.flush();
  const { readdir, writeFile } = await import('node:fs/promises');
  const [f] = await readdir(dir);
  await writeFile(`${dir}/${f}`, '{not json');
  const next = fakeClient({ '/img/a': 1 });
  const again = createStartProfiler({ dir, client: next.client, windowMs: 60_000 });
  again.onOpen('/img/a', 1);
  await settle();
  await again.flush();
  assert.deepEqual(next.opened, []);
  assert.equal(again.stats().recorded, 1);
}, 'gridbox-profile-'));

test('the replay starts at the first lookup inside an image, before anything is read; lookups of image roots and above start nothing', () => withTempDir(async (dir) => {
  const img = '/.images/ab/abcdef';
  const rec = createStartProfiler({ dir, client: fakeClient({}).client, windowMs: 60_000 });
  rec.onOpen(`${img}/bin/sh`, 100);
  rec.onOpen('/.images/stray', 1); // a profile of the pseudo-image "/.images": a lookup of /.images/ab must not start it
  await rec.flush();
  const next = fakeClient({ [`${img}/bin/sh`]: 100, '/.images/stray': 1 });
  const again = createStartProfiler({ dir, client: next.client });
  again.onLookup('/.images');
  again.onLookup('/.images/ab');
  again.onLookup(img); // the image root itself: a stat of it (a pilot checking its images) starts nothing
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(next.opened, []);
  again.onLookup(`${img}/etc`);
  await until(() => next.opened.length > 0, 'the replay');
  await settle();
  assert.deepEqual(next.opened, [`${img}/bin/sh`], 'replayed with no open at all, and only the image looked into');
}, 'gridbox-profile-'));

test('chunked files replay only the chunks the start read, and recorded catalogs are loaded first', () => withTempDir(async (dir) => {
  const rec = createStartProfiler({ dir, client: fakeClient({}).client, windowMs: 60_000 });
  rec.onChunk('/sw/lib/big.so', 0, 10, '/sw/lib');
  rec.onChunk('/sw/lib/big.so', 2, 10, '/sw/lib');
  rec.onChunk('/sw/lib/big.so', 2, 10, '/sw/lib'); // the same chunk again counts once
  rec.onOpen('/sw/bin/tool', 5, '/sw');
  await rec.flush();
  const { readdir, readFile } = await import('node:fs/promises');
  const [f] = await readdir(dir);
  const stored = JSON.parse(await readFile(`${dir}/${f}`, 'utf8')) as { bytes: number; catalogs: string[] };
  assert.equal(stored.bytes, 25);
  assert.deepEqual(stored.catalogs.sort(), ['/sw', '/sw/lib']);

  const next = fakeClient({ '/sw/bin/tool': 5 }, { '/sw/lib/big.so': [10, 10, 10, 10] });
  const again = createStartProfiler({ dir, client: next.client });
  again.onLookup('/sw/bin');
  await until(() => again.stats().replayed + again.stats().skipped === 2, 'the replay');
  assert.deepEqual(next.looked.slice(0, 2).sort(), ['/sw', '/sw/lib'], 'catalog mountpoints are looked up before the files');
  assert.deepEqual(next.reads.sort(), ['/sw/lib/big.so@0', '/sw/lib/big.so@20']);
  assert.deepEqual(next.warmed, ['/sw/bin/tool'], 'chunked files are read by their chunks, not warmed whole');
  assert.deepEqual(again.stats(), { recorded: 0, replayed: 2, replayedBytes: 25, skipped: 0 });
}, 'gridbox-profile-'));

test('a profile with foreign or malformed rows replays only its well-formed file rows', () => {
  const p = parseProfile(JSON.stringify({ fqrn: 'x', image: '/i', bytes: 3, files: [['/i/a', 1], ['/i/b'], [7, 1], ['/i/c', 2, [0, -1]], ['/i/d', 2, [1]]], catalogs: ['/i', 3] }));
  assert.deepEqual(p?.files, [['/i/a', 1], ['/i/d', 2, [1]]]);
  assert.deepEqual(p?.catalogs, ['/i']);
  assert.equal(parseProfile('[1,2]'), undefined);
  assert.equal(parseProfile('null'), undefined);
});

test('a start that read files its profile lacked merges them in: a probe first, the real job next, both replayed after', () => withTempDir(async (dir) => {
  const img = '/.images/ab/abcdef';
  // Mount 1: the pilot's probe (exec IMG true) is the image's first start on this node.
  const probe = createStartProfiler({ dir, client: fakeClient({}).client, windowMs: 60_000 });
  probe.onOpen(`${img}/bin/true`, 10);
  await probe.flush();
  // Mount 2: the real job; the probe's file is replayed, and the job's own files are recorded as well.
  const job = fakeClient({ [`${img}/bin/true`]: 10 });
  const second = createStartProfiler({ dir, client: job.client, windowMs: 60_000 });
  second.onOpen(`${img}/bin/python3`, 300);
  second.onOpen(`${img}/bin/true`, 10);
  await until(() => second.stats().replayed === 1, 'the probe profile replay');
  await second.flush();
  assert.equal(second.stats().recorded, 1, 'the merged profile was written');
  // Mount 3: both starts' files come back; a start that adds nothing rewrites nothing.
  const all = fakeClient({ [`${img}/bin/true`]: 10, [`${img}/bin/python3`]: 300 });
  const third = createStartProfiler({ dir, client: all.client, windowMs: 60_000 });
  third.onOpen(`${img}/bin/python3`, 300);
  await until(() => third.stats().replayed === 2, 'the merged replay');
  assert.deepEqual(all.opened.sort(), [`${img}/bin/python3`, `${img}/bin/true`]);
  await third.flush();
  assert.equal(third.stats().recorded, 0);
}, 'gridbox-profile-'));

test('an image quiet for a while starts again: its next start is recorded and merged, without a second replay', () => withTempDir(async (dir) => {
  const c = fakeClient({ '/img/a': 1 });
  const rec = createStartProfiler({ dir, client: c.client, windowMs: 100, quietMs: 300 });
  rec.onOpen('/img/a', 1);
  await until(() => rec.stats().recorded === 1, 'the first start saved at the end of its window');
  rec.onOpen('/img/b', 2); // inside the quiet time: the same start, after its window, not recorded
  await new Promise((r) => setTimeout(r, 400));
  rec.onLookup('/img/etc'); // the image was quiet for 400 ms: a new start
  rec.onOpen('/img/c', 3);
  await until(() => rec.stats().recorded === 2, 'the second start merged at the end of its window');
  const { readdir, readFile } = await import('node:fs/promises');
  const [f] = await readdir(dir);
  const p = parseProfile(await readFile(`${dir}/${f}`, 'utf8'))!;
  assert.deepEqual(p.files.map((x) => x[0]).sort(), ['/img/a', '/img/c']);
  assert.equal(p.bytes, 4);
  assert.deepEqual(c.opened, [], 'no replay in the mount that recorded the profile');
}, 'gridbox-profile-'));

test('mergeProfile: the fresh start first, chunk sets joined, nothing written when nothing is new', () => {
  const stored: Profile = { fqrn: 'x', image: '/i', bytes: 21, files: [['/i/a', 1], ['/i/big', 20, [0, 1]]], catalogs: ['/i'] };
  assert.equal(mergeProfile(stored, { ...stored, files: [['/i/a', 1], ['/i/big', 10, [1]]], bytes: 11 }), undefined);
  const m = mergeProfile(stored, { fqrn: 'x', image: '/i', bytes: 22, files: [['/i/new', 2], ['/i/big', 20, [1, 3]]], catalogs: ['/i', '/i/sub'] })!;
  assert.deepEqual(m.files, [['/i/new', 2], ['/i/big', 30, [0, 1, 3]], ['/i/a', 1]]);
  assert.deepEqual(m.catalogs, ['/i', '/i/sub']);
  assert.equal(m.bytes, 33);
  assert.deepEqual(mergeProfile(undefined, stored), stored);
});

test('a catalog the start only looked into (a listed or stat-ed directory) is recorded and loaded first next time', () => withTempDir(async (dir) => {
  const img = '/.images/ab/abcdef';
  const rec = createStartProfiler({ dir, client: fakeClient({}).client, windowMs: 60_000 });
  rec.onLookup(`${img}/bin`);
  rec.onCatalog(`${img}/usr`, img);
  rec.onCatalog(`${img}/usr/bin`, `${img}/usr/bin`); // `ls /usr/bin`: no file opened there
  rec.onCatalog(`${img}/usr/bin/ls`, `${img}/usr/bin`);
  rec.onCatalog('/elsewhere/x', '/elsewhere'); // outside any image looked into: not this image's
  rec.onCatalog(`${img}/etc`, ''); // the root catalog is always loaded
  rec.onOpen(`${img}/bin/sh`, 100, img);
  await rec.flush();
  const { readdir, readFile } = await import('node:fs/promises');
  const files = await readdir(dir);
  assert.equal(files.length, 1, 'one image recorded');
  const stored = JSON.parse(await readFile(`${dir}/${files[0]}`, 'utf8')) as Profile;
  assert.deepEqual(stored.catalogs?.sort(), [img, `${img}/usr/bin`]);

  const next = fakeClient({ [`${img}/bin/sh`]: 100 });
  const again = createStartProfiler({ dir, client: next.client });
  again.onLookup(`${img}/etc`);
  await until(() => again.stats().replayed === 1, 'the replay');
  assert.deepEqual(next.looked.slice(0, 2).sort(), [img, `${img}/usr/bin`], 'both catalogs are looked up before the files');
}, 'gridbox-profile-'));
