// resolvePath() over a small tree of plain rows: links followed on the way, lstat versus stat for the
// last component, physical "..", confinement to the root, the /cvmfs/<fqrn> prefix, ELOOP, and how many
// exact lookups the common cases cost (the FUSE layer looks up every name through it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isGridboxError } from '../errors.js';
import { MAX_SYMLINK_HOPS, resolvePath, type ResolvableNode } from './resolve-path.js';

type Row = ResolvableNode;

function tree(spec: Record<string, string | null>): { rows: Map<string, Row>; lookups: string[]; lookup: (p: string) => Promise<Row | undefined> } {
  // spec: path -> symlink target, or null for a directory; "=file" for a file.
  const rows = new Map<string, Row>([['', { path: '', entry: { entry: { type: 'dir' } } }]]);
  for (const [path, v] of Object.entries(spec)) {
    const entry = v === null ? { type: 'dir' } : v === '=file' ? { type: 'file' } : { type: 'symlink', target: v };
    rows.set(path, { path, entry: { entry } });
  }
  const lookups: string[] = [];
  return { rows, lookups, lookup: async (p) => { lookups.push(p); return rows.get(p); } };
}

const repo = () => tree({
  '/.images': null, '/.images/ab': null, '/.images/ab/cdef': null, '/.images/ab/cdef/etc': null, '/.images/ab/cdef/etc/os-release': '=file',
  '/.images/ab/cdef/etc/localtime': '/usr/share/zoneinfo/UTC', '/.images/ab/cdef/bin': 'usr/bin',
  '/reg': null, '/reg/org': null, '/reg/org/img:1': '../../.images/ab/cdef', '/reg/org/abs:1': '/cvmfs/test.repo/.images/ab/cdef',
  '/reg/org/chroot:1': '/.images/ab/cdef', '/reg/org/up:1': '../../../../../../.images/ab/cdef',
  '/loop': null, '/loop/a': 'b', '/loop/b': 'a', '/loop/self': '.', '/loop/deep': 'self/self/self/a',
  '/dangling': '/nowhere', '/empty': '', '/file': '=file', '/hop0': '/.images',
});

const at = async (t: ReturnType<typeof tree>, path: string, follow = false): Promise<string | undefined> => (await resolvePath(path, t.lookup, { follow, fqrn: 'test.repo' }))?.path;

test('resolvePath() follows links on the way and the last one only when asked or with a trailing "/"', async () => {
  const t = repo();
  assert.equal(await at(t, '/reg/org/img:1/etc/os-release'), '/.images/ab/cdef/etc/os-release');
  assert.equal(await at(t, 'reg/org/img:1/etc'), '/.images/ab/cdef/etc', 'relative input is taken from the root');
  assert.equal(await at(t, '/reg/org/img:1'), '/reg/org/img:1', 'the link itself, like lstat');
  assert.equal(await at(t, '/reg/org/img:1', true), '/.images/ab/cdef');
  assert.equal(await at(t, '/reg/org/img:1/'), '/.images/ab/cdef');
  assert.equal(await at(t, '/reg/org/img:1/.'), '/.images/ab/cdef');
  assert.equal(await at(t, '/reg/org/img:1/etc/../etc/./os-release'), '/.images/ab/cdef/etc/os-release');
  assert.equal(await at(t, '/reg/org/img:1/..'), '/.images/ab', '".." after a link is physical, not lexical');
  assert.equal(await at(t, '/'), '');
});

test('resolvePath() confines every path to the repository root, like RESOLVE_IN_ROOT', async () => {
  const t = repo();
  assert.equal(await at(t, '/reg/org/chroot:1/etc/os-release'), '/.images/ab/cdef/etc/os-release', 'absolute targets start at the repository root');
  assert.equal(await at(t, '/reg/org/abs:1/etc/os-release'), '/.images/ab/cdef/etc/os-release', '/cvmfs/<fqrn>/ is the repository root');
  assert.equal(await at(t, '/reg/org/up:1/etc/os-release'), '/.images/ab/cdef/etc/os-release', 'too many ".." stop at the root');
  assert.equal(await at(t, '/../../../.images/../reg/org/img:1/etc'), '/.images/ab/cdef/etc');
  assert.equal(await at(t, '/reg/org/img:1/etc/localtime', true), undefined, 'an image-absolute target dangles in the repository view');
  assert.equal(await at(t, '/reg/org/img:1/bin'), '/.images/ab/cdef/bin');
});

test('resolvePath() answers undefined for dangling and empty links and files used as directories', async () => {
  const t = repo();
  assert.equal(await at(t, '/dangling'), '/dangling');
  assert.equal(await at(t, '/dangling', true), undefined);
  assert.equal(await at(t, '/dangling/x'), undefined);
  assert.equal(await at(t, '/empty/x'), undefined);
  assert.equal(await at(t, '/file/x'), undefined);
  assert.equal(await at(t, '/file/..'), undefined, 'ENOTDIR, as the kernel');
  assert.equal(await at(t, '/missing/x/y'), undefined);
});

test('resolvePath() fails a loop with ELOOP after MAX_SYMLINK_HOPS links', async () => {
  const t = repo();
  for (const p of ['/loop/a/x', '/loop/a/']) {
    await assert.rejects(resolvePath(p, t.lookup), (e) => isGridboxError(e, 'ELOOP') && e.message.includes(JSON.stringify(p)) && e.message.includes(String(MAX_SYMLINK_HOPS)));
  }
  assert.equal(await at(t, '/loop/a'), '/loop/a', 'the link itself is still there to look at');
  assert.equal(await at(t, '/loop/self/self/self/'), '/loop', 'a link to "." is not a loop');
  assert.equal(await at(t, '/loop/self/self/self'), '/loop/self');
  // A chain of exactly MAX_SYMLINK_HOPS links resolves; one more does not.
  const chain = (n: number): Record<string, string | null> => Object.fromEntries([...Array(n).keys()].map((i) => [`/c${i}`, i === n - 1 ? '/.images' : `/c${i + 1}`]));
  const ok = tree({ '/.images': null, ...chain(MAX_SYMLINK_HOPS) });
  assert.equal(await at(ok, '/c0/'), '/.images');
  const tooLong = tree({ '/.images': null, ...chain(MAX_SYMLINK_HOPS + 1) });
  await assert.rejects(resolvePath('/c0/', tooLong.lookup), (e) => isGridboxError(e, 'ELOOP'));
});

test('resolvePath() costs one exact lookup for a plain path and two for a miss below a directory', async () => {
  const t = repo();
  await at(t, '/.images/ab/cdef/etc/os-release');
  assert.deepEqual(t.lookups.splice(0), ['/.images/ab/cdef/etc/os-release']);
  await at(t, '/.images/ab/cdef/etc/nothing');
  assert.deepEqual(t.lookups.splice(0), ['/.images/ab/cdef/etc/nothing', '/.images/ab/cdef/etc']);
});
