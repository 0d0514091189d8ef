// Start profiles: a start's whole-file opens are recorded per image; the next start of that image opens the
// recorded files through the client (the verifying path every reader takes), skips names that no longer
// exist, and stops at MAX_BYTES_FACTOR × the recorded bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { makeTempDir } from '../testing/tmp.js';
import type { Client, ClientNode } from '../client/index.js';
import { createStartProfiler, imageOf, MAX_BYTES_FACTOR } from './start-profile.js';

function fakeClient(sizes: Record<string, number>) {
  const opened: string[] = [];
  const node = (path: string): ClientNode | undefined => sizes[path] === undefined ? undefined : ({
    path, attr: { size: sizes[path] }, entry: { id: { algorithm: 'sha1', hex: 'a'.repeat(40) }, entry: { type: 'file', size: sizes[path] } },
  } as unknown as ClientNode);
  let handles = 0;
  const client = {
    fqrn: 'profile.example.org',
    lookup: async (p: string) => node(p),
    openNode: async (n: ClientNode) => { opened.push(n.path); return ++handles; },
    release: async () => undefined,
  } as unknown as Client;
  return { client, opened };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 50));

test('imageOf names synced images by digest directory, other paths by their top directory', () => {
  assert.equal(imageOf('/.images/ab/abcdef/usr/bin/python3'), '/.images/ab/abcdef');
  assert.equal(imageOf('/sw/lib/libx.so'), '/sw');
  assert.equal(imageOf('/top.txt'), '/');
});

test('a start is recorded once per image and replayed through the client on the next start; missing files are skipped', async () => {
  const dir = await makeTempDir('gridbox-profile-');
  try {
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
    await settle();
    assert.deepEqual(next.opened.sort(), [`${img}/bin/sh`, `${img}/lib/libc.so`]);
    assert.deepEqual({ ...again.stats(), recorded: 0 }, { recorded: 0, replayed: 2, replayedBytes: 300, skipped: 1 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a replay stops at the byte bound even when the files grew', async () => {
  const dir = await makeTempDir('gridbox-profile-');
  try {
    const rec = createStartProfiler({ dir, client: fakeClient({}).client, windowMs: 60_000 });
    for (let i = 0; i < 10; i++) rec.onOpen(`/img/f${i}`, 100);
    await settle();
    await rec.flush();
    // Every file is now 10× bigger: only MAX_BYTES_FACTOR × 1000 bytes may be fetched.
    const sizes = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`/img/f${i}`, 1000]));
    const next = fakeClient(sizes);
    const again = createStartProfiler({ dir, client: next.client });
    again.onOpen('/img/f0', 1000);
    await settle();
    assert.ok(again.stats().replayedBytes <= MAX_BYTES_FACTOR * 1000, JSON.stringify(again.stats()));
    assert.ok(next.opened.length >= 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a damaged profile is ignored and rewritten by the next start', async () => {
  const dir = await makeTempDir('gridbox-profile-');
  try {
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
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
