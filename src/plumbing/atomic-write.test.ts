// Temp file then rename: the target holds old or new content, and no temp file is left on success or failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { tempOwnerPid, tempPathFor, writeFileAtomic, writeFileAtomicSync } from './atomic-write.js';

test('writeFileAtomic replaces the content, applies the mode and leaves no temp file', async () => withTempDir(async (dir) => {
  const p = join(dir, 'f.json');
  await writeFileAtomic(p, 'old');
  await writeFileAtomic(p, new TextEncoder().encode('new'), { mode: 0o600, fsync: true });
  assert.equal(readFileSync(p, 'utf8'), 'new');
  assert.equal(statSync(p).mode & 0o777, 0o600);
  writeFileAtomicSync(p, 'sync', { fsync: true });
  assert.equal(readFileSync(p, 'utf8'), 'sync');
  assert.deepEqual(readdirSync(dir), ['f.json']);
}));

test('a failed write leaves the old file and no temp file', async () => withTempDir(async (dir) => {
  const p = join(dir, 'target');
  mkdirSync(p); // renaming a file over a directory fails
  await assert.rejects(writeFileAtomic(p, 'x'), { code: 'EISDIR' });
  assert.throws(() => writeFileAtomicSync(p, 'x'), { code: 'EISDIR' });
  assert.deepEqual(readdirSync(dir), ['target']);
}));

test('temp files can live in tmpDir, and their names give the writer pid back', async () => withTempDir(async (dir) => {
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp);
  const p = join(dir, 'out');
  const t = tempPathFor(p, tmp);
  assert.ok(t.startsWith(tmp + '/'));
  assert.ok(t.includes(`.tmp.${process.pid}.`));
  assert.notEqual(tempPathFor(p), tempPathFor(p));
  assert.equal(tempOwnerPid(t), process.pid);
  assert.equal(tempOwnerPid('.x.tmp.4242.abcdef'), 4242);
  assert.equal(tempOwnerPid('plain-file'), undefined);
  await writeFileAtomic(p, 'data', { tmpDir: tmp });
  assert.equal(readFileSync(p, 'utf8'), 'data');
  assert.deepEqual(readdirSync(tmp), []);
}));

test('beforeRename runs with the new content complete in the temp file and the old one still in place', async () => withTempDir(async (dir) => {
  const p = join(dir, 'manifest');
  await writeFileAtomic(p, 'old');
  const seen: string[][] = [];
  const look = (): void => {
    const temp = readdirSync(dir).filter((n) => n !== 'manifest');
    assert.equal(temp.length, 1);
    seen.push([readFileSync(p, 'utf8'), readFileSync(join(dir, temp[0]), 'utf8')]);
  };
  await writeFileAtomic(p, 'new', { beforeRename: look });
  writeFileAtomicSync(p, 'newer', { beforeRename: look });
  assert.deepEqual(seen, [['old', 'new'], ['new', 'newer']]);
  assert.equal(readFileSync(p, 'utf8'), 'newer');
}));
