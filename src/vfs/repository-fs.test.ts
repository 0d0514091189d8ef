// The filesystem view over a fake client: nlookup counting, hardlinks as one nodeid, nodeids kept or
// replaced across a revision switch, ESTALE for replaced content, negative entries, listings, errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { GridboxError } from '../errors.js';
import type { Client, ClientNode } from '../client/index.js';
import type { RequestContext } from '../fuse/session.js';
import { createRepositoryFs, IMMUTABLE_ATTR_TTL_S } from './repository-fs.js';

const ctx = { uid: 0, gid: 0, pid: 1, signal: new AbortController().signal } as RequestContext;
const S_IFREG = 0o100000, S_IFDIR = 0o040000;

interface FakeFile { ino: number; hash: string; size?: number; dir?: boolean }

/** A client whose tree is a map path → file, replaceable to simulate a new revision. */
function fakeClient(initial: Record<string, FakeFile>, ttlMs = 60_000) {
  let rev = 1;
  let tree = initial;
  let failReads = false;
  const node = (path: string): ClientNode | undefined => {
    const f = path === '' ? { ino: 256, hash: '', dir: true } : tree[path];
    if (f === undefined) return undefined;
    return {
      path, name: path.slice(path.lastIndexOf('/') + 1), catalog: '',
      attr: { ino: f.ino, mode: (f.dir ? S_IFDIR | 0o755 : S_IFREG | 0o644), nlink: 1, uid: 0, gid: 0, size: f.size ?? 3, mtime: 1, mtimeNs: 0, rdev: 0 },
      entry: { id: f.hash ? { algorithm: 'sha1', hex: f.hash } : undefined, entry: { type: f.dir ? 'dir' : 'file' } },
    } as unknown as ClientNode;
  };
  const client = {
    fqrn: 'fake.example.org',
    revision: () => rev,
    rootHash: () => 'x',
    ttlMs: () => ttlMs,
    lookup: async (p: string) => node(p),
    listing: async (p: string) => Object.keys(tree).filter((k) => k.slice(0, k.lastIndexOf('/')) === p).sort().map((k) => node(k)!),
    open: async (p: string) => { if (!node(p)) throw new GridboxError('NOT_FOUND', `no ${p}`); return 7; },
    read: async () => {
      if (failReads) throw new GridboxError('DOWNLOAD_ALL_FAILED', 'every host failed', { cause: new Error('connection refused') });
      return Buffer.from('abc');
    },
    release: async () => undefined,
    xattrs: async () => ({ 'user.fqrn': Buffer.from('fake.example.org') }),
    stats: () => ({ hits: 0, misses: 0, bytesOnWire: 0, bytesInflated: 0, openFiles: 0, cacheBytes: 0, cacheLimit: 1 << 20 }),
    statfs: () => ({ bytes: 10, files: 3 }),
  } as unknown as Client;
  return {
    client,
    next(t: Record<string, FakeFile>): void { tree = t; rev++; },
    failReads(): void { failReads = true; },
  };
}

test('lookups count references, hardlinks share one nodeid, forget frees the node', async () => {
  const f = fakeClient({ '/a': { ino: 300, hash: 'aa' }, '/h': { ino: 300, hash: 'aa' } });
  const fs = createRepositoryFs(f.client);
  const a = await fs.lookup!(ctx, 1, 'a');
  const h = await fs.lookup!(ctx, 1, 'h');
  assert.equal(a.nodeid, h.nodeid);
  assert.equal(a.attrTtl, IMMUTABLE_ATTR_TTL_S);
  assert.equal(fs.stats().nodes, 2);
  fs.forget!(a.nodeid, 1);
  assert.equal(fs.stats().nodes, 2, 'one reference is left');
  fs.forget!(a.nodeid, 1);
  assert.equal(fs.stats().nodes, 1, 'only the root remains');
});

test('a revision switch keeps nodeids of unchanged files, replaces changed ones and answers ESTALE for them', async () => {
  const f = fakeClient({ '/same': { ino: 300, hash: 'aa' }, '/changed': { ino: 301, hash: 'bb' } });
  const logs: string[] = [];
  const fs = createRepositoryFs(f.client, { log: (l) => logs.push(l) });
  const same1 = await fs.lookup!(ctx, 1, 'same');
  const changed1 = await fs.lookup!(ctx, 1, 'changed');
  const fh = await fs.open!(ctx, changed1.nodeid, 0);
  f.next({ '/same': { ino: 400, hash: 'aa' }, '/changed': { ino: 401, hash: 'cc' } });
  const same2 = await fs.lookup!(ctx, 1, 'same');
  const changed2 = await fs.lookup!(ctx, 1, 'changed');
  assert.equal(same2.nodeid, same1.nodeid, 'unchanged content keeps its nodeid (and the page cache)');
  assert.notEqual(changed2.nodeid, changed1.nodeid);
  await assert.rejects(async () => fs.open!(ctx, changed1.nodeid, 0), (e) => e === constants.errno.ESTALE);
  // The handle opened before the switch still reads.
  assert.deepEqual(await fs.read!(ctx, changed1.nodeid, fh.fh, 0, 3), Buffer.from('abc'));
  assert.ok((await fs.open!(ctx, same1.nodeid, 0)).keepCache);
  assert.equal(fs.stats().revisionSwitches, 1);
  assert.ok(logs.some((l) => /serving revision 2/.test(l)));
});

test('missing names are remembered for the catalog TTL as negative entries', async () => {
  const f = fakeClient({}, 30_000);
  const fs = createRepositoryFs(f.client);
  const e = await fs.lookup!(ctx, 1, 'nope');
  assert.equal(e.nodeid, 0);
  assert.equal(e.entryTtl, 30);
  assert.equal(fs.stats().nodes, 1);
});

test('readdirplus lists ".", "..", then children with consecutive cookies and counted entries', async () => {
  const f = fakeClient({ '/d': { ino: 500, hash: '', dir: true }, '/d/x': { ino: 501, hash: 'aa' }, '/d/y': { ino: 502, hash: 'bb' } });
  const fs = createRepositoryFs(f.client);
  const d = await fs.lookup!(ctx, 1, 'd');
  const all = await fs.readdirplus!(ctx, d.nodeid, 0, 0, 65536);
  assert.deepEqual(all.map((e) => [e.name, e.off]), [['.', 1], ['..', 2], ['x', 3], ['y', 4]]);
  assert.equal(fs.stats().nodes, 4);
  const rest = await fs.readdirplus!(ctx, d.nodeid, 0, 3, 65536);
  assert.deepEqual(rest.map((e) => e.name), ['y']);
  // A small buffer still returns at least one entry.
  assert.ok((await fs.readdirplus!(ctx, d.nodeid, 0, 0, 1)).length >= 1);
});

test('a read whose sources all failed is counted and logged with its cause, and reaches the kernel as EIO', async () => {
  const f = fakeClient({ '/a': { ino: 300, hash: 'aa' } });
  const logs: string[] = [];
  const fs = createRepositoryFs(f.client, { log: (l) => logs.push(l) });
  const a = await fs.lookup!(ctx, 1, 'a');
  const fh = await fs.open!(ctx, a.nodeid, 0);
  f.failReads();
  await assert.rejects(async () => fs.read!(ctx, a.nodeid, fh.fh, 0, 3), (e) => e instanceof GridboxError && e.code === 'DOWNLOAD_ALL_FAILED');
  assert.equal(fs.stats().ioErrors, 1);
  assert.match(logs.join('\n'), /read "\/a" failed: DOWNLOAD_ALL_FAILED: every host failed <- connection refused/);
});

test('a READ of a chunked file starts fetching the next chunks ahead, each once per handle', async () => {
  const MiB = 1 << 20;
  const chunks = [0, 1, 2, 3, 4].map((i) => ({ offset: i * 4 * MiB, size: 4 * MiB, id: { algorithm: 'sha1', hex: String(i).repeat(40) } }));
  const reads: Array<[number, number]> = [];
  const big = {
    path: '/big', name: 'big', catalog: '',
    attr: { ino: 400, mode: S_IFREG | 0o644, nlink: 1, uid: 0, gid: 0, size: 20 * MiB, mtime: 1, mtimeNs: 0, rdev: 0 },
    entry: { chunks, entry: { type: 'file', size: 20 * MiB } },
  } as unknown as ClientNode;
  const client = {
    fqrn: 'fake.example.org', revision: () => 1, rootHash: () => 'x', ttlMs: () => 60_000,
    lookup: async (p: string) => (p === '/big' ? big : undefined),
    openNode: async () => 9,
    read: async (_h: number, offset: number, length: number) => { reads.push([offset, length]); return Buffer.alloc(Math.min(length, 8)); },
    release: async () => undefined,
  } as unknown as Client;
  const fs = createRepositoryFs(client);
  const e = await fs.lookup!(ctx, 1, 'big');
  const o = await fs.open!(ctx, e.nodeid, 0);
  await fs.read!(ctx, e.nodeid, o.fh, 0, MiB);
  await fs.read!(ctx, e.nodeid, o.fh, MiB, MiB);
  await new Promise((r) => setImmediate(r));
  // The READs themselves, then one probe per chunk ahead (chunks 1 and 2), not repeated by the second READ.
  assert.deepEqual(reads, [[0, MiB], [4 * MiB, 1], [8 * MiB, 1], [MiB, MiB]]);
  await fs.read!(ctx, e.nodeid, o.fh, 4 * MiB, MiB);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(reads.slice(4), [[4 * MiB, MiB], [12 * MiB, 1]], 'entering chunk 1 fetches chunk 3 ahead');
  await fs.release!(ctx, e.nodeid, o.fh);
});

test('opens of one node share one client handle, kept idle after the last release and closed at forget', async () => {
  const f = fakeClient({ '/a': { ino: 300, hash: 'aa' } });
  let opened = 0, released = 0;
  const client = { ...f.client, open: async () => { opened++; return 7 + opened; }, release: async () => { released++; } } as unknown as Client;
  const fs = createRepositoryFs(client);
  const a = await fs.lookup!(ctx, 1, 'a');
  const o1 = await fs.open!(ctx, a.nodeid, 0);
  const o2 = await fs.open!(ctx, a.nodeid, 0);
  assert.equal(opened, 1, 'the second open reuses the handle');
  assert.equal(o1.fh, o2.fh);
  assert.equal(o1.keepCache, true);
  assert.deepEqual(await fs.read!(ctx, a.nodeid, o1.fh, 0, 3), Buffer.from('abc'));
  await fs.release!(ctx, a.nodeid, o1.fh);
  await fs.release!(ctx, a.nodeid, o2.fh);
  assert.equal(released, 0, 'an idle handle stays open for the next open');
  await fs.open!(ctx, a.nodeid, 0);
  assert.equal(opened, 1, 'a re-open after the last release costs no client open');
  await fs.release!(ctx, a.nodeid, o1.fh);
  fs.forget!(a.nodeid, 1);
  await new Promise((r) => setImmediate(r));
  assert.equal(released, 1, 'forget closes the idle handle');
});

test('openless: OPEN answers ENOSYS and READs with fh 0 go through the node\'s shared handle', async () => {
  const f = fakeClient({ '/a': { ino: 300, hash: 'aa' }, '/b': { ino: 301, hash: 'bb' } });
  let opened = 0;
  const reads: number[] = [];
  const client = {
    ...f.client,
    open: async () => { opened++; return 40 + opened; },
    read: async (h: number) => { reads.push(h); return Buffer.from('abc'); },
  } as unknown as Client;
  const fs = createRepositoryFs(client, { openless: true });
  const a = await fs.lookup!(ctx, 1, 'a');
  const b = await fs.lookup!(ctx, 1, 'b');
  await assert.rejects(async () => fs.open!(ctx, a.nodeid, 0), (e) => e === constants.errno.ENOSYS);
  assert.deepEqual(await fs.read!(ctx, a.nodeid, 0, 0, 3), Buffer.from('abc'));
  assert.deepEqual(await fs.read!(ctx, a.nodeid, 0, 3, 3), Buffer.from('abc'));
  assert.deepEqual(await fs.read!(ctx, b.nodeid, 0, 0, 3), Buffer.from('abc'));
  assert.equal(opened, 2, 'one client handle per node');
  assert.deepEqual(reads, [41, 41, 42]);
});

test('openless: a node replaced by a new revision still reads the content it names (a descriptor opened before)', async () => {
  const f = fakeClient({ '/a': { ino: 300, hash: 'aa' } });
  const opened: string[] = [];
  const client = { ...f.client, open: async (p: string) => { opened.push(p); return 9; } } as unknown as Client;
  const fs = createRepositoryFs(client, { openless: true });
  const a = await fs.lookup!(ctx, 1, 'a');
  f.next({ '/a': { ino: 401, hash: 'cc' } });
  assert.deepEqual(await fs.read!(ctx, a.nodeid, 0, 0, 3), Buffer.from('abc'), 'no ESTALE for a read');
  const a2 = await fs.lookup!(ctx, 1, 'a');
  assert.notEqual(a2.nodeid, a.nodeid, 'a new lookup finds the new content under a new nodeid');
});

test('the start profiler hears a lookup before it resolves and the catalog that answered it, whole-file opens and chunked READs with their catalog', async () => {
  const MiB = 1 << 20;
  const chunks = [0, 1, 2].map((i) => ({ offset: i * 4 * MiB, size: 4 * MiB, id: { algorithm: 'sha1', hex: String(i).repeat(40) } }));
  const big = {
    path: '/big', name: 'big', catalog: '/sub',
    attr: { ino: 400, mode: S_IFREG | 0o644, nlink: 1, uid: 0, gid: 0, size: 12 * MiB, mtime: 1, mtimeNs: 0, rdev: 0 },
    entry: { chunks, entry: { type: 'file', size: 12 * MiB } },
  } as unknown as ClientNode;
  const f = fakeClient({ '/a': { ino: 300, hash: 'aa' } });
  const heard: string[] = [];
  let resolving = false;
  const client = {
    ...f.client,
    lookup: async (p: string) => { resolving = true; try { return p === '/big' ? big : f.client.lookup(p); } finally { resolving = false; } },
    openNode: async () => 9,
    read: async (_h: number, _o: number, length: number) => Buffer.alloc(Math.min(length, 8)),
  } as unknown as Client;
  const profiler = {
    onLookup: (p: string) => heard.push(`lookup ${p}${resolving ? ' (late)' : ''}`),
    onOpen: (p: string, size: number, cat?: string) => heard.push(`open ${p} ${size} ${cat}`),
    onChunk: (p: string, i: number, size: number, cat?: string) => heard.push(`chunk ${p} ${i} ${size / MiB} ${cat}`),
    onCatalog: (p: string, cat: string) => heard.push(`catalog ${p} ${cat}`),
    flush: async () => undefined,
    stats: () => ({ recorded: 0, replayed: 0, replayedBytes: 0, skipped: 0 }),
  };
  const fs = createRepositoryFs(client, { openless: true, profiler });
  const a = await fs.lookup!(ctx, 1, 'a');
  const b = await fs.lookup!(ctx, 1, 'big');
  await fs.read!(ctx, a.nodeid, 0, 0, 3);
  await fs.read!(ctx, a.nodeid, 0, 3, 3); // not offset 0: the same open
  await fs.read!(ctx, b.nodeid, 0, 4 * MiB - 10, 20); // spans chunks 0 and 1
  assert.deepEqual(heard, ['lookup /a', 'catalog /a ', 'lookup /big', 'catalog /big /sub', 'open /a 3 ', 'chunk /big 0 4 /sub', 'chunk /big 1 4 /sub']);
});
