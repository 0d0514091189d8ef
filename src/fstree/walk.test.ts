import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { walkTree } from './walk.js';

test('walkTree() lists parents first, children in byte order, without following symlinks', async () => {
  await withTempDir(async (dir) => {
    mkdirSync(join(dir, 'b/sub'), { recursive: true });
    writeFileSync(join(dir, 'b/Z'), 'z');
    writeFileSync(join(dir, 'b/a'), 'aa');
    writeFileSync(join(dir, 'b/sub/f'), 'f');
    symlinkSync('/etc', join(dir, 'link'));
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    const out = await walkTree(dir, { xattrs: false });
    assert.deepEqual(out.map((w) => w.entry.path), ['', 'b', 'b/Z', 'b/a', 'b/sub', 'b/sub/f', 'fifo', 'link']);
    const link = out.find((w) => w.entry.path === 'link')!.entry;
    assert.equal(link.type, 'symlink');
    assert.equal(link.target, '/etc');
    assert.equal(link.size, 4);
    assert.equal(out.find((w) => w.entry.path === 'fifo')!.entry.type, 'fifo');
    assert.equal(out.find((w) => w.entry.path === 'b/a')!.entry.size, 2);
    assert.equal(out[0].entry.type, 'dir');
  });
});

test('walkTree() groups hard links within a directory and splits cross-directory ones', async () => {
  await withTempDir(async (dir) => {
    mkdirSync(join(dir, 'x'));
    writeFileSync(join(dir, 'one'), 'data');
    linkSync(join(dir, 'one'), join(dir, 'two'));
    linkSync(join(dir, 'one'), join(dir, 'x', 'three'));
    writeFileSync(join(dir, 'solo'), 'data');
    const out = await walkTree(dir, { xattrs: false });
    const key = (p: string) => out.find((w) => w.entry.path === p)!.entry.hardlinkKey;
    assert.ok(key('one') !== undefined);
    assert.equal(key('one'), key('two'));
    assert.equal(key('x/three'), undefined, 'a lone member in another directory is a separate file');
    assert.equal(key('solo'), undefined);
  });
});

test('walkTree() reads extended attributes with getfattr', async (t) => {
  if (spawnSync('setfattr', ['--version']).error) return t.skip('setfattr (package attr) is not installed');
  await withTempDir(async (dir) => {
    writeFileSync(join(dir, 'with = odd name'), 'x');
    const r = spawnSync('setfattr', ['-n', 'user.gridbox', '-v', '0x00ff41', join(dir, 'with = odd name')]);
    if (r.status !== 0) return t.skip(`file system has no user xattrs: ${r.stderr}`);
    const out = await walkTree(dir, { xattrs: true });
    const e = out.find((w) => w.entry.path === 'with = odd name')!.entry;
    assert.deepEqual(e.xattrs, { 'user.gridbox': Buffer.from([0, 0xff, 0x41]) });
  });
});

test('walkTree() fails with PUBLISH_SOURCE naming a missing source', async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(walkTree(join(dir, 'missing')), (e: Error & { code?: string }) => e.code === 'PUBLISH_SOURCE' && e.message.includes('missing'));
  });
});
