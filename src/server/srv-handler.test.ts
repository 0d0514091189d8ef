import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { withTempDir } from '../testing/tmp.js';
import { makeRawObject, writeRawObjects } from '../testing/raw-repo.js';
import { listenSrv, LONG_MAX_AGE_S, SHORT_MAX_AGE_S } from './srv-handler.js';

const FQRN = 'test.example.org';

interface Reply { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

/** Raw request: the path goes out exactly as given (no URL normalisation, unlike fetch). */
function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function makeSrv(dir: string): Promise<{ srv: string; obj: ReturnType<typeof makeRawObject> }> {
  const srv = join(dir, 'srv');
  const obj = makeRawObject(Buffer.from('hello object\n'.repeat(100)));
  await writeRawObjects(srv, FQRN, [obj]);
  await writeFile(join(srv, FQRN, '.cvmfspublished'), 'Cabc\nNtest.example.org\n--\n');
  await mkdir(join(srv, FQRN, 'data', 'txn'), { recursive: true });
  await writeFile(join(srv, FQRN, 'data', 'txn', 'partial'), 'staging');
  await writeFile(join(dir, 'secret.key'), 'PRIVATE KEY');
  await symlink(join(dir, 'secret.key'), join(srv, FQRN, 'leak'));
  await symlink('.cvmfspublished', join(srv, FQRN, 'inside-link'));
  await mkdir(join(srv, 'info', 'v1'), { recursive: true });
  await writeFile(join(srv, 'info', 'v1', 'repositories.json'), '{}');
  return { srv, obj };
}

test('serve answers objects with exact length, long immutable caching, ETag and Last-Modified', () => withTempDir(async (dir) => {
  const { srv, obj } = await makeSrv(dir);
  const s = await listenSrv({ srvDir: srv });
  try {
    const r = await get(s.port, `/cvmfs/${FQRN}/${obj.relPath}`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, obj.stored);
    assert.equal(r.headers['content-length'], String(obj.stored.length));
    assert.equal(r.headers['cache-control'], `public, max-age=${LONG_MAX_AGE_S}, immutable`);
    assert.match(String(r.headers.etag), /^".+"$/);
    assert.ok(!Number.isNaN(Date.parse(String(r.headers['last-modified']))));
    const m = await get(s.port, `/cvmfs/${FQRN}/.cvmfspublished`);
    assert.equal(m.status, 200);
    assert.equal(m.headers['cache-control'], `public, max-age=${SHORT_MAX_AGE_S}`);
    assert.equal(m.headers['content-type'], 'application/x-cvmfs');
    const j = await get(s.port, '/cvmfs/info/v1/repositories.json');
    assert.equal(j.headers['cache-control'], `public, max-age=${SHORT_MAX_AGE_S}`);
  } finally { await s.close(); }
}));

test('serve answers If-None-Match with 304, HEAD without a body, and single ranges', () => withTempDir(async (dir) => {
  const { srv, obj } = await makeSrv(dir);
  const s = await listenSrv({ srvDir: srv });
  try {
    const path = `/cvmfs/${FQRN}/${obj.relPath}`;
    const first = await get(s.port, path);
    const etag = String(first.headers.etag);
    const again = await get(s.port, path, { 'if-none-match': etag });
    assert.equal(again.status, 304);
    assert.equal(again.body.length, 0);
    const other = await get(s.port, path, { 'if-none-match': '"nope"' });
    assert.equal(other.status, 200);
    const head = await get(s.port, path, {}, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(obj.stored.length));
    assert.equal(head.body.length, 0);
    const part = await get(s.port, path, { range: 'bytes=2-9' });
    assert.equal(part.status, 206);
    assert.deepEqual(part.body, obj.stored.subarray(2, 10));
    assert.equal(part.headers['content-range'], `bytes 2-9/${obj.stored.length}`);
    assert.equal((await get(s.port, path, { range: `bytes=${obj.stored.length + 5}-` })).status, 416);
    assert.equal((await get(s.port, path, {}, 'POST')).status, 405);
  } finally { await s.close(); }
}));

test('serve refuses paths outside srv/, staging files and directory listings', () => withTempDir(async (dir) => {
  const { srv } = await makeSrv(dir);
  const s = await listenSrv({ srvDir: srv });
  try {
    const refused = [
      `/cvmfs/${FQRN}/../../secret.key`,
      `/cvmfs/${FQRN}/%2e%2e/%2e%2e/secret.key`,
      `/cvmfs/${FQRN}/%2E%2E%2F%2E%2E%2Fsecret.key`,
      `/cvmfs/${FQRN}/..%5c..%5csecret.key`,
      `/cvmfs/${FQRN}/leak`,
      `/cvmfs/${FQRN}/.cvmfspublished%00.txt`,
      `/cvmfs/${FQRN}/data/txn/partial`,
      `/cvmfs/${FQRN}/%zz`,
    ];
    for (const p of refused) {
      const r = await get(s.port, p);
      assert.ok(r.status === 403 || r.status === 404, `${p} gave ${r.status}`);
      assert.ok(!r.body.toString().includes('PRIVATE'), `${p} leaked the secret`);
    }
    assert.equal((await get(s.port, `/cvmfs/${FQRN}/leak`)).status, 403);
    assert.equal((await get(s.port, `/cvmfs/${FQRN}/`)).status, 403);
    for (const p of [`/cvmfs/${FQRN}`, `/cvmfs/${FQRN}/data`, '/cvmfs/info', '/secret.key', '/']) {
      assert.equal((await get(s.port, p)).status, 404, p);
    }
    const inside = await get(s.port, `/cvmfs/${FQRN}/inside-link`);
    assert.equal(inside.status, 200, 'a symlink that stays inside srv/ is served');
  } finally { await s.close(); }
}));

test('serve never answers from memory with bytes of a file that was rewritten, replaced or removed', () => withTempDir(async (dir) => {
  const { srv, obj } = await makeSrv(dir);
  const s = await listenSrv({ srvDir: srv, memoryCacheBytes: 1 << 20 });
  try {
    const path = `/cvmfs/${FQRN}/${obj.relPath}`;
    const file = join(srv, FQRN, obj.relPath);
    assert.deepEqual((await get(s.port, path)).body, obj.stored);
    assert.deepEqual((await get(s.port, path)).body, obj.stored, 'second answer, from memory');
    // In place, same size and inode (a repair tool rewriting a corrupt copy): the bytes on disk win.
    const patched = Buffer.from(obj.stored);
    patched[7] ^= 0xff;
    await writeFile(file, patched);
    const r1 = await get(s.port, path);
    assert.deepEqual(r1.body, patched);
    // Replaced by rename (a new inode), as publishers and snapshots do.
    await writeFile(`${file}.new`, obj.stored);
    await rename(`${file}.new`, file);
    const r2 = await get(s.port, path);
    assert.deepEqual(r2.body, obj.stored);
    assert.notEqual(r2.headers.etag, r1.headers.etag, 'a new version gets a new ETag');
    // Replaced by a symlink out of srv/: resolved afresh and refused, never followed from memory.
    await rm(file);
    await symlink(join(dir, 'secret.key'), file);
    const leak = await get(s.port, path);
    assert.equal(leak.status, 403);
    assert.ok(!leak.body.toString().includes('PRIVATE'));
    await rm(file);
    assert.equal((await get(s.port, path)).status, 404);
    const manifest = `/cvmfs/${FQRN}/.cvmfspublished`;
    assert.equal((await get(s.port, manifest)).body.toString(), 'Cabc\nNtest.example.org\n--\n');
    await writeFile(join(srv, FQRN, '.cvmfspublished.tmp'), 'Cdef\n');
    await rename(join(srv, FQRN, '.cvmfspublished.tmp'), join(srv, FQRN, '.cvmfspublished'));
    assert.equal((await get(s.port, manifest)).body.toString(), 'Cdef\n', 'a new manifest is served at once');
  } finally { await s.close(); }
}));

test('serve streams files larger than what it reads whole, ranges included', () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const big = makeRawObject(Buffer.alloc(3 << 20, 7), '', 'sha1', false);
  await writeRawObjects(srv, FQRN, [big]);
  const s = await listenSrv({ srvDir: srv });
  try {
    const path = `/cvmfs/${FQRN}/${big.relPath}`;
    const r = await get(s.port, path);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, big.stored);
    const part = await get(s.port, path, { range: 'bytes=1048570-1048580' });
    assert.equal(part.status, 206);
    assert.deepEqual(part.body, big.stored.subarray(1048570, 1048581));
  } finally { await s.close(); }
}));

function cliMain(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
}

for (const workers of ['1', '2']) test(`gridbox serve --workers ${workers} prints its URL first, logs requests to --access-log and exits 0 on SIGTERM`, () => withTempDir(async (dir) => {
  const { obj } = await makeSrv(dir);
  const log = join(dir, 'access.log');
  const child = spawn(process.execPath, [cliMain(), 'serve', '--root', dir, '--listen', '127.0.0.1:0', '--workers', workers, '--access-log', log], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', resolve);
      child.once('exit', (c) => reject(new Error(`serve exited ${c}`)));
    });
    const m = /^serving (http:\/\/127\.0\.0\.1:(\d+)\/cvmfs\/)$/.exec(line);
    assert.ok(m, `first line: ${line}`);
    for (let i = 0; i < 4; i++) {
      const r: Response = await fetch(`${m[1]}${FQRN}/${obj.relPath}`);
      assert.equal(r.status, 200);
      assert.deepEqual(Buffer.from(await r.arrayBuffer()), obj.stored);
    }
    assert.equal((await fetch(`${m[1]}${FQRN}/nothing-here`)).status, 404);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    const lines = (await readFile(log, 'utf8')).trim().split('\n');
    assert.equal(lines.length, 5, 'one line per request, flushed at exit');
    assert.equal(lines.filter((l) => l.includes(`"GET /cvmfs/${FQRN}/${obj.relPath} HTTP/1.1" 200 ${obj.stored.length} `)).length, 4);
    assert.match(lines.find((l) => l.includes('nothing-here')) ?? '', /^127\.0\.0\.1 - - \[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET \S+nothing-here HTTP\/1\.1" 404 \d+ [\d.]+$/);
  } finally { if (child.exitCode === null) child.kill('SIGKILL'); }
}));

test('gridbox serve --workers 2 whose workers cannot open the accounting database exits with the reason instead of waiting for them', () => withTempDir(async (dir) => {
  await makeSrv(dir);
  const db = join(dir, 'fleet.db');
  await writeFile(db, 'not a database, but long enough that SQLite reads a header from it..........................');
  const child = spawn(process.execPath, [cliMain(), 'serve', '--root', dir, '--listen', '127.0.0.1:0', '--workers', '2', '--accounting-db', db], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d; });
    const code = await new Promise<number | null>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`serve still running after 30 s; stderr: ${stderr}`)), 30_000);
      child.once('exit', (c) => { clearTimeout(t); resolve(c); });
    });
    assert.notEqual(code, 0);
    assert.match(stderr, /accounting database .*fleet\.db/);
  } finally { if (child.exitCode === null) child.kill('SIGKILL'); }
}));

test('gridbox serve --workers 2 stops cleanly when SIGTERM reaches its whole process group (a service manager stopping it)', () => withTempDir(async (dir) => {
  await makeSrv(dir);
  const child = spawn(process.execPath, [cliMain(), 'serve', '--root', dir, '--listen', '127.0.0.1:0', '--workers', '2'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d; });
  try {
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', () => resolve());
      child.once('exit', (c) => reject(new Error(`serve exited ${c}: ${stderr}`)));
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    process.kill(-child.pid!, 'SIGTERM');
    assert.equal(await exited, 0, stderr);
    assert.equal(stderr, '');
  } finally { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } }
}));
