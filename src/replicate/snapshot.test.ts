// Stratum-1 snapshots end to end: repositories made with `gridbox mkfs`/`publish`, served on 127.0.0.1 with
// listenSrv, replicated with `gridbox snapshot` (child process) or snapshotRepository (in process for the
// failure cases), and the replica served again and read back through the verifying client CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, link, lstat, mkdir, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { GridboxError } from '../errors.js';
import { Downloader } from '../download/downloader.js';
import { listenSrv, type RunningServer } from '../server/srv-handler.js';
import { squidBinary, startSquid } from '../testing/squid.js';
import { withTempDir } from '../testing/tmp.js';
import { snapshotRepository, type SnapshotReport } from './snapshot.js';

const FQRN = 'replica.example.org';
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const exec = promisify(execFile);
const CHUNK_FLAGS = ['--chunk-min', '65536', '--chunk-avg', '131072', '--chunk-max', '262144'];

async function gridbox(args: string[]): Promise<{ stdout: Buffer; stderr: string }> {
  const r = await exec(process.execPath, [MAIN, ...args], { encoding: 'buffer', maxBuffer: 64 << 20 });
  return { stdout: r.stdout, stderr: r.stderr.toString() };
}

/** A tree with two levels of nested catalogs, a chunked file, a hardlink, a symlink and an empty file. */
async function makeTree(src: string): Promise<void> {
  await mkdir(join(src, 'sw', 'v1', 'lib'), { recursive: true });
  await mkdir(join(src, 'docs'), { recursive: true });
  await writeFile(join(src, 'sw', '.cvmfscatalog'), '');
  await writeFile(join(src, 'sw', 'v1', '.cvmfscatalog'), '');
  await writeFile(join(src, 'sw', 'v1', 'lib', 'big.bin'), randomBytes(700 * 1024 + 321));
  await writeFile(join(src, 'sw', 'v1', 'run.sh'), '#!/bin/sh\necho replica\n');
  await chmod(join(src, 'sw', 'v1', 'run.sh'), 0o755);
  await writeFile(join(src, 'sw', 'README'), 'software area\n');
  await writeFile(join(src, 'docs', 'a.txt'), 'alpha\n');
  await writeFile(join(src, 'docs', 'empty'), '');
  await link(join(src, 'docs', 'a.txt'), join(src, 'docs', 'a-link.txt'));
  await symlink('../sw/v1/run.sh', join(src, 'docs', 'run'));
}

/** Relative path → type, mode, size and content digest, for comparing a tree with its copy. */
async function describe(root: string, rel = ''): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of (await readdir(join(root, rel))).sort()) {
    if (name === '.cvmfscatalog') continue;
    const p = rel === '' ? name : `${rel}/${name}`;
    const st = await lstat(join(root, p));
    if (st.isSymbolicLink()) out.set(p, `link ${await readlink(join(root, p))}`);
    else if (st.isDirectory()) { out.set(p, `dir ${(st.mode & 0o7777).toString(8)}`); for (const [k, v] of await describe(root, p)) out.set(k, v); }
    else out.set(p, `file ${(st.mode & 0o7777).toString(8)} ${st.size} ${(await readFile(join(root, p))).toString('base64')}`);
  }
  return out;
}

/** Every object file under a srv repository's data/, as key → bytes. */
async function objects(srvRepo: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const data = join(srvRepo, 'data');
  for (const d of await readdir(data)) {
    if (!/^[0-9a-f]{2}$/.test(d)) continue;
    for (const f of await readdir(join(data, d))) out.set(d + f, await readFile(join(data, d, f)));
  }
  return out;
}

interface Fixture {
  dir: string;
  src: string;
  source: string;
  replica: string;
  keys: string;
  server: RunningServer;
  requests: string[];
  /** Root catalog of revision 1 (mkfs): after the first publish only the trunk-previous tag points at it. */
  mkfsRoot: string;
}

async function withSource<T>(fn: (f: Fixture) => Promise<T>, mkfsFlags: string[] = []): Promise<T> {
  return withTempDir(async (dir) => {
    const src = join(dir, 'src');
    const source = join(dir, 'stratum0');
    await makeTree(src);
    const made = (await gridbox(['mkfs', FQRN, '--root', source, ...mkfsFlags])).stdout.toString();
    const mkfsRoot = /root catalog ([0-9a-f]{40})/.exec(made)?.[1] ?? '';
    await gridbox(['publish', FQRN, src, '--root', source, '--tag', 'v1', ...CHUNK_FLAGS]);
    const requests: string[] = [];
    const server = await listenSrv({ srvDir: join(source, 'srv'), onRequest: (r) => requests.push(r.url) });
    try {
      return await fn({ dir, src, source, replica: join(dir, 'stratum1'), keys: join(source, 'keys'), server, requests, mkfsRoot });
    } finally {
      await server.close();
    }
  });
}

/** In-process snapshot through a real Downloader, no retry backoff. */
async function snapshotInProcess(f: Fixture): Promise<SnapshotReport> {
  const downloader = new Downloader({ serverUrls: [`${f.server.url}${FQRN}`], maxRetries: 0, backoffInitMs: 0 });
  try {
    return await snapshotRepository({
      fqrn: FQRN, source: downloader, root: f.replica,
      masterPublicKeysPem: [await readFile(join(f.keys, `${FQRN}.pub`))],
    });
  } finally {
    await downloader.close();
  }
}

const replicaSrv = (f: Fixture) => join(f.replica, 'srv', FQRN);
const sourceSrv = (f: Fixture) => join(f.source, 'srv', FQRN);

test('a snapshot serves the repository byte-identical through the client, and a rerun copies nothing new', { timeout: 240_000 }, async () => withSource(async (f) => {
  const out = (await gridbox(['snapshot', FQRN, '--from', f.server.url, '--root', f.replica, '--keys', f.keys])).stdout.toString();
  const m = /^snapshot replica\.example\.org: revision (\d+) \(new replica\), copied (\d+) objects \((\d+) catalogs\), (\d+) bytes; (\d+) already present$/m.exec(out);
  assert.ok(m, `one summary line expected, got:\n${out}`);
  assert.ok(Number(m[2]) > 10 && Number(m[3]) >= 3 && Number(m[4]) > 700 * 1024, out);

  // Stored bytes exactly as served: every replica object is the source's object, byte for byte.
  const src = await objects(sourceSrv(f));
  const rep = await objects(replicaSrv(f));
  assert.equal(rep.size, Number(m[2]));
  for (const [k, v] of rep) assert.ok(src.get(k)?.equals(v), `replica object ${k} differs from the source`);
  assert.ok([...rep.keys()].some((k) => k.endsWith('P')), 'chunks were copied');
  assert.ok([...rep.keys()].some((k) => k.endsWith('X')), 'the certificate was copied');
  const histories = (m: Map<string, Buffer>) => [...m.keys()].filter((k) => k.endsWith('H')).sort();
  assert.ok(histories(src).length >= 2);
  assert.deepEqual(histories(rep), histories(src), 'the history chain was copied back to its start');
  assert.ok(rep.has(`${f.mkfsRoot}C`), 'the catalog of the tagged revision 1 was copied');
  assert.deepEqual(await readFile(join(replicaSrv(f), '.cvmfspublished')), await readFile(join(sourceSrv(f), '.cvmfspublished')));
  assert.deepEqual(await readFile(join(replicaSrv(f), '.cvmfswhitelist')), await readFile(join(sourceSrv(f), '.cvmfswhitelist')));
  assert.match((await readFile(join(replicaSrv(f), '.cvmfs_last_snapshot'), 'utf8')), /^\w{3} \w{3} \d\d \d\d:\d\d:\d\d UTC \d{4}\n$/);
  await assert.rejects(stat(join(replicaSrv(f), '.cvmfs_master_replica')), { code: 'ENOENT' });

  const replicaServer = await listenSrv({ srvDir: join(f.replica, 'srv') });
  try {
    const common = ['--server', replicaServer.url, '--keys', f.keys, '--cache', join(f.dir, 'cache')];
    const dest = join(f.dir, 'copy');
    await gridbox(['get', FQRN, '/', dest, '--quiet', ...common]);
    assert.deepEqual(await describe(dest), await describe(f.src));
    const big = (await gridbox(['cat', FQRN, '/sw/v1/lib/big.bin', ...common])).stdout;
    assert.ok(big.equals(await readFile(join(f.src, 'sw', 'v1', 'lib', 'big.bin'))));

    // Unchanged source: only the top-level files are fetched, nothing under data/.
    f.requests.length = 0;
    const again = (await gridbox(['snapshot', FQRN, '--from', f.server.url, '--root', f.replica, '--keys', f.keys])).stdout.toString();
    assert.match(again, /copied 0 objects \(0 catalogs\), 0 bytes;/);
    assert.deepEqual(f.requests.filter((u) => u.includes('/data/')), []);
    assert.ok(f.requests.some((u) => u.endsWith('/.cvmfspublished')));

    // A new revision: only what changed is copied, and the replica serves it.
    await writeFile(join(f.src, 'sw', 'v1', 'new.txt'), 'added later\n');
    await gridbox(['publish', FQRN, f.src, '--root', f.source, ...CHUNK_FLAGS]);
    const had = new Set((await objects(replicaSrv(f))).keys());
    f.requests.length = 0;
    const third = (await gridbox(['snapshot', FQRN, '--from', f.server.url, '--root', f.replica, '--keys', f.keys])).stdout.toString();
    const n = /from revision (\d+)\), copied (\d+) objects/.exec(third);
    assert.ok(n && Number(n[2]) > 0 && Number(n[2]) < rep.size, third);
    // Incremental: each object fetched once, and only objects the replica lacked (the diff against the
    // replica's older catalogs); the new file's object is one of them.
    const fetched = f.requests.filter((u) => u.includes('/data/')).map((u) => u.replace(/^.*\/data\/(..)\//, '$1'));
    assert.equal(fetched.length, Number(n[2]), `one request per copied object: ${fetched.join(' ')}`);
    for (const k of fetched) assert.ok(!had.has(k), `${k} was already in the replica but fetched again`);
    const now = await objects(replicaSrv(f));
    assert.deepEqual([...now.keys()].filter((k) => !had.has(k)).sort(), [...fetched].sort());
    assert.equal((await gridbox(['cat', FQRN, '/sw/v1/new.txt', ...common])).stdout.toString(), 'added later\n');
  } finally {
    await replicaServer.close();
  }
}));

test('a corrupted object at the source is refused as STORE_HASH_MISMATCH naming it, and the replica keeps its revision', { timeout: 180_000 }, async () => withSource(async (f) => {
  const first = await snapshotInProcess(f);
  const before = await readFile(join(replicaSrv(f), '.cvmfspublished'));
  const old = new Set((await objects(sourceSrv(f))).keys());
  await writeFile(join(f.src, 'docs', 'b.txt'), 'bravo, soon to be corrupted\n');
  await gridbox(['publish', FQRN, f.src, '--root', f.source, ...CHUNK_FLAGS]);
  const added = [...(await objects(sourceSrv(f))).keys()].filter((k) => !old.has(k) && /^[0-9a-f]{40}$/.test(k));
  assert.equal(added.length, 1, `one new data object expected, got ${added.join(', ')}`);
  const victim = join(sourceSrv(f), 'data', added[0].slice(0, 2), added[0].slice(2));
  const bytes = await readFile(victim);
  bytes[bytes.length - 1] ^= 0xff;
  await writeFile(victim, bytes);

  await assert.rejects(snapshotInProcess(f), (e: unknown) => {
    assert.ok(e instanceof GridboxError);
    assert.equal(e.code, 'STORE_HASH_MISMATCH');
    assert.equal(e.fields.objectId, added[0]);
    assert.match(e.message, new RegExp(added[0].slice(0, 20)));
    return true;
  });
  assert.deepEqual(await readFile(join(replicaSrv(f), '.cvmfspublished')), before, 'the previous manifest is still served');
  const rep = await objects(replicaSrv(f));
  assert.ok(!rep.has(added[0]), 'the corrupt object was not stored');
  assert.equal([...rep.keys()].filter((k) => k.endsWith('C')).length, first.catalogs, 'no catalog of the failed revision was stored');

  const replicaServer = await listenSrv({ srvDir: join(f.replica, 'srv') });
  try {
    const common = ['--server', replicaServer.url, '--keys', f.keys, '--cache', join(f.dir, 'cache')];
    const ls = (await gridbox(['ls', FQRN, '/docs', ...common])).stdout.toString();
    assert.match(ls, /a\.txt/);
    assert.doesNotMatch(ls, /b\.txt/);
  } finally {
    await replicaServer.close();
  }
}));

test('a source without .cvmfs_master_replica is refused with REPLICA_NOT_ALLOWED and nothing is written', { timeout: 120_000 }, async () => withSource(async (f) => {
  await assert.rejects(snapshotInProcess(f), (e: unknown) => {
    assert.ok(e instanceof GridboxError);
    assert.equal(e.code, 'REPLICA_NOT_ALLOWED');
    assert.match(e.message, /\.cvmfs_master_replica/);
    return true;
  });
  await assert.rejects(stat(join(replicaSrv(f), '.cvmfspublished')), { code: 'ENOENT' });
  await assert.rejects(gridbox(['snapshot', FQRN, '--from', f.server.url, '--root', f.replica, '--keys', f.keys]), (e: { code?: number; stderr?: Buffer }) => {
    assert.equal(e.code, 1);
    assert.match(String(e.stderr), /does not allow stratum-1 replication \[REPLICA_NOT_ALLOWED\]/);
    return true;
  });
}, ['--no-master-replica']));

test('a tampered or older manifest is refused and the replica keeps its revision', { timeout: 180_000 }, async () => withSource(async (f) => {
  await snapshotInProcess(f);
  const manifestPath = join(sourceSrv(f), '.cvmfspublished');
  const goodOld = await readFile(manifestPath);
  await writeFile(join(f.src, 'docs', 'c.txt'), 'charlie\n');
  await gridbox(['publish', FQRN, f.src, '--root', f.source, ...CHUNK_FLAGS]);
  const good = await readFile(manifestPath);

  // Tampered: the revision line changed after signing.
  const text = good.toString('latin1');
  const tampered = text.replace(/^S(\d+)$/m, (_l, s: string) => `S${Number(s) + 100}`);
  assert.notEqual(tampered, text);
  await writeFile(manifestPath, Buffer.from(tampered, 'latin1'));
  await assert.rejects(snapshotInProcess(f), { code: 'MANIFEST_BAD_SIGNATURE' });
  assert.deepEqual(await readFile(join(replicaSrv(f), '.cvmfspublished')), goodOld);

  // The genuine new manifest goes through; then the source rolled back to the older one is refused.
  await writeFile(manifestPath, good);
  const r = await snapshotInProcess(f);
  assert.ok(r.objects > 0);
  await writeFile(manifestPath, goodOld);
  await assert.rejects(snapshotInProcess(f), { code: 'MANIFEST_OUTDATED' });
  assert.deepEqual(await readFile(join(replicaSrv(f), '.cvmfspublished')), good);
  await rm(join(f.dir, 'cache'), { recursive: true, force: true });
}));

test('a snapshot through a squid proxy (--proxy) fetches via the proxy and reads back', { skip: squidBinary() === undefined ? 'squid is not installed' : false, timeout: 180_000 }, async () => withSource(async (f) => {
  await chmod(f.dir, 0o755); // squid drops to user proxy, which must traverse to its state dir
  const squid = await startSquid(join(f.dir, 'squid'));
  try {
    const out = (await gridbox(['snapshot', FQRN, '--from', f.server.url, '--root', f.replica, '--keys', f.keys, '--proxy', squid.url])).stdout.toString();
    const copied = Number(/copied (\d+) objects/.exec(out)?.[1]);
    assert.ok(copied > 10, out);
    const viaSquid = (await squid.accessLog()).filter((l) => l.includes(`/cvmfs/${FQRN}/data/`));
    assert.ok(viaSquid.length >= copied, `every object came through squid (${viaSquid.length} log lines for ${copied} objects)`);
    const replicaServer = await listenSrv({ srvDir: join(f.replica, 'srv') });
    try {
      const common = ['--server', replicaServer.url, '--keys', f.keys, '--cache', join(f.dir, 'cache')];
      const big = (await gridbox(['cat', FQRN, '/sw/v1/lib/big.bin', ...common])).stdout;
      assert.ok(big.equals(await readFile(join(f.src, 'sw', 'v1', 'lib', 'big.bin'))));
    } finally {
      await replicaServer.close();
    }
  } finally {
    await squid.stop();
  }
}));

test('a snapshot killed mid-way leaves the previous revision served, and the next run completes the new one', { timeout: 240_000 }, async () => withSource(async (f) => {
  await snapshotInProcess(f);
  const before = await readFile(join(replicaSrv(f), '.cvmfspublished'));
  for (let i = 0; i < 200; i++) await writeFile(join(f.src, 'docs', `k${i}.txt`), `killed run ${i}\n`);
  await gridbox(['publish', FQRN, f.src, '--root', f.source, ...CHUNK_FLAGS]);
  f.requests.length = 0;
  const child = spawn(process.execPath, [MAIN, 'snapshot', FQRN, '--from', f.server.url, '--root', f.replica, '--keys', f.keys, '--connections', '1', '--pipeline', '1'],
    { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // Killed once it has started on the data objects (or, on a fast machine, wherever it got to).
  for (let i = 0; i < 2000 && f.requests.filter((u) => u.includes('/data/')).length < 20 && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 5));
  child.kill('SIGKILL');
  await exited;
  const after = await readFile(join(replicaSrv(f), '.cvmfspublished'));
  assert.ok(after.equals(before) || after.equals(await readFile(join(sourceSrv(f), '.cvmfspublished'))), 'old or new manifest, never anything else');

  const r = await snapshotInProcess(f);
  assert.ok(r.previousRevision !== undefined);
  assert.deepEqual(await readFile(join(replicaSrv(f), '.cvmfspublished')), await readFile(join(sourceSrv(f), '.cvmfspublished')));
  const replicaServer = await listenSrv({ srvDir: join(f.replica, 'srv') });
  try {
    const dest = join(f.dir, 'copy');
    await gridbox(['get', FQRN, '/', dest, '--quiet', '--server', replicaServer.url, '--keys', f.keys, '--cache', join(f.dir, 'cache')]);
    assert.deepEqual(await describe(dest), await describe(f.src));
  } finally {
    await replicaServer.close();
  }
}));
