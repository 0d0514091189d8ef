// The streaming fill end to end with real parts (loopback origins, the downloader, the posix cache):
// a corrupt object never becomes visible in the cache and fails over to the next host; concurrent misses
// of a large object run one download; a big object streams with memory bounded by a constant (a child
// process's VmHWM); the wire and inflation counters count what the server sent and what the cache got.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import { ObjectCache } from '../cache/object-cache.js';
import { WRITER_MEMORY_BYTES } from '../cache/cache-store.js';
import { Downloader } from '../download/downloader.js';
import { isGridboxError } from '../errors.js';
import { hashBytes, objectPath, type ObjectId } from '../hash/object-id.js';
import type { CatalogEntry } from '../catalog/types.js';
import { pseudoRandomBytes } from '../testing/raw-repo.js';
import { withTempDir } from '../testing/tmp.js';
import { downloaderSource } from './default-deps.js';
import { Fetcher } from './fetcher.js';

const FQRN = 'stream.example.org';

interface Obj { id: ObjectId; content: Buffer; stored: Buffer }

function makeObj(content: Buffer): Obj {
  const stored = deflateSync(content, { level: 1 });
  return { id: hashBytes('sha1', stored), content, stored };
}

/** An origin serving objects from memory; `corrupt` flips bytes in every body; counts requests and body bytes. */
async function origin(objs: Obj[], o: { corrupt?: boolean; delayMs?: number } = {}): Promise<{ url: string; requests: () => number; bodyBytes: () => number; close: () => Promise<void> }> {
  const byPath = new Map(objs.map((x) => [`/cvmfs/${FQRN}/data/${objectPath(x.id, '')}`, x.stored]));
  let requests = 0, bodyBytes = 0;
  const server: Server = createServer((req, res) => {
    requests++;
    let body = byPath.get(req.url ?? '');
    if (body === undefined) { res.writeHead(404).end(); return; }
    if (o.corrupt) { body = Buffer.from(body); for (let i = 0; i < body.length; i += 4099) body[i] ^= 0x5a; }
    bodyBytes += body.length;
    const b = body;
    setTimeout(() => res.writeHead(200, { 'content-length': String(b.length) }).end(b), o.delayMs ?? 0);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/cvmfs/${FQRN}`, requests: () => requests, bodyBytes: () => bodyBytes,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

function fileEntry(o: Obj): CatalogEntry {
  return {
    path: '/f', compression: 'zlib', hardlinkGroup: 0, linkcount: 1, id: o.id,
    entry: { path: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, size: o.content.length, mtime: 0, mtimeNs: 0 },
  };
}

async function readWhole(f: Fetcher, o: Obj): Promise<Buffer> {
  const file = await f.open(fileEntry(o));
  try { return await file.read(0, o.content.length); } finally { await file.close(); }
}

test('a corrupt object never becomes visible in the cache: the fill fails over to the next host, only the verified copy is renamed in', () => withTempDir(async (dir) => {
  // Larger than the writer's memory part, so the bytes go through a temp file.
  const o = makeObj(pseudoRandomBytes(WRITER_MEMORY_BYTES * 3 + 17, 5));
  const bad = await origin([o], { corrupt: true });
  const good = await origin([o]);
  const cache = await ObjectCache.openDir(join(dir, 'cache'), 'shared', 1 << 30);
  const d1 = new Downloader({ serverUrls: [bad.url, good.url], maxRetries: 0 });
  const d2 = new Downloader({ serverUrls: [bad.url], maxRetries: 0 });
  try {
    // Only corrupt copies: the read fails with the data error and nothing is left behind.
    const onlyBad = new Fetcher(downloaderSource(d2), cache);
    await assert.rejects(readWhole(onlyBad, o), (e: unknown) => isGridboxError(e, 'STORE_HASH_MISMATCH'));
    assert.equal(await cache.store.has(o.id), false, 'a corrupt object is not in the cache');
    assert.deepEqual(await readdir(join(dir, 'cache', 'shared', 'txn')), [], 'its temp file is gone');

    const f = new Fetcher(downloaderSource(d1), cache);
    assert.ok((await readWhole(f, o)).equals(o.content));
    assert.equal(d1.status().counters.hashMismatches, 2, 'the corrupt copy, then again with no-cache');
    assert.equal(d1.status().counters.hostFailovers, 1, 'failed over to the good host');
    assert.equal(good.requests(), 1);
    assert.equal(await cache.store.has(o.id), true);
    assert.deepEqual(await readdir(join(dir, 'cache', 'shared', 'txn')), []);
    const h = await cache.lookup(o.id);
    assert.ok((await h!.readAll()).equals(o.content), 'the cached copy is the verified one');
    await h!.close();
  } finally { cache.close(); await d1.close(); await d2.close(); await bad.close(); await good.close(); }
}));

test('concurrent opens of a large object run one download and share it; counters give the wire bytes and the inflated bytes', () => withTempDir(async (dir) => {
  // Compressible content: the wire carries much less than the cache receives.
  const content = Buffer.concat([pseudoRandomBytes(1 << 20, 9), Buffer.alloc(6 << 20, 7)]);
  const o = makeObj(content);
  const srv = await origin([o], { delayMs: 100 });
  const cache = await ObjectCache.openDir(join(dir, 'cache'), 'shared', 1 << 30);
  const d = new Downloader({ serverUrls: [srv.url] });
  const source = downloaderSource(d);
  const f = new Fetcher(source, cache);
  try {
    const reads = await Promise.all(Array.from({ length: 6 }, () => readWhole(f, o)));
    for (const r of reads) assert.ok(r.equals(content));
    assert.equal(srv.requests(), 1, 'one download for six concurrent misses');
    assert.equal(source.wireBytes?.(), srv.bodyBytes(), 'wire bytes are what the server sent');
    assert.equal(source.wireBytes?.(), o.stored.length);
    assert.equal(f.stats.bytesInflated, content.length, 'inflated bytes are what reached the cache');
    assert.ok(f.stats.bytesInflated > 5 * (source.wireBytes?.() ?? 0));
    assert.equal(f.stats.misses, 1);
  } finally { cache.close(); await d.close(); await srv.close(); }
}));

test('an object far larger than the memory bound streams into the cache with bounded peak RSS (child process)', { timeout: 300_000 }, (t) => withTempDir(async (dir) => {
  // 384 MiB after inflation, a few MiB on the wire: the old path held all of it in memory at once.
  const size = 384 * 1024 * 1024;
  const content = Buffer.alloc(size);
  pseudoRandomBytes(4 << 20, 3).copy(content, 0);
  pseudoRandomBytes(4 << 20, 4).copy(content, size - (4 << 20));
  const o = makeObj(content);
  const srv = await origin([o]);
  try {
    const script = `
      const { Downloader } = await import(${JSON.stringify(new URL('../download/downloader.js', import.meta.url).href)});
      const { FsCacheStore } = await import(${JSON.stringify(new URL('../cache/cache-store.js', import.meta.url).href)});
      const { parseObjectId } = await import(${JSON.stringify(new URL('../hash/object-id.js', import.meta.url).href)});
      const [url, idText, size, cacheDir] = process.argv.slice(1);
      const id = parseObjectId(idText);
      const store = await FsCacheStore.open(cacheDir, 'shared');
      const d = new Downloader({ serverUrls: [url] });
      const w = await d.fetchObjectTo(id, '', { expectedSize: Number(size) }, () => store.begin(id));
      const h = await w.commit();
      await h.close();
      await d.close();
      const hwm = /^VmHWM:\\s+(\\d+) kB$/m.exec((await import('node:fs')).readFileSync('/proc/self/status', 'utf8'))[1];
      console.log(JSON.stringify({ hwmKiB: Number(hwm), size: h.size }));
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, srv.url, `${o.id.hex}`, String(size), join(dir, 'cache')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
    const code = await new Promise<number | null>((r) => child.on('close', r));
    assert.equal(code, 0, err);
    const r = JSON.parse(out) as { hwmKiB: number; size: number };
    assert.equal(r.size, size);
    t.diagnostic(`peak RSS ${(r.hwmKiB / 1024).toFixed(1)} MiB streaming a ${size / 1048576} MiB object`);
    assert.ok(r.hwmKiB * 1024 < 160 * 1024 * 1024, `peak RSS ${r.hwmKiB} KiB while streaming a ${size}-byte object`);
    const cached = join(dir, 'cache', 'shared', o.id.hex.slice(0, 2), o.id.hex.slice(2));
    const { createHash } = await import('node:crypto');
    const { createReadStream } = await import('node:fs');
    const hash = createHash('sha1');
    for await (const c of createReadStream(cached)) hash.update(c as Buffer);
    assert.equal(hash.digest('hex'), createHash('sha1').update(content).digest('hex'), 'the cached file holds the content');
  } finally { await srv.close(); }
}));
