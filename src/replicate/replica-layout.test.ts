// The replica's lock and file mechanics: a live holder is refused, a dead one's lock is taken over,
// top-level files are replaced atomically, and the last-snapshot stamp has `date --utc`'s shape.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { formatSnapshotTime, lockReplica, replicaLayout, writeFileAtomic } from './replica-layout.js';

test('lockReplica refuses a live holder and takes over a lock left by a dead process', async () => withTempDir(async (dir) => {
  const layout = replicaLayout(dir, 'sw.example.org');
  const release = await lockReplica(layout);
  await assert.rejects(lockReplica(layout), (e: { code?: string; message?: string }) => e.code === 'PUBLISH_LOCKED' && new RegExp(`pid ${process.pid}`).test(e.message ?? ''));
  await release();
  // A pid that has exited: a child that ran and was reaped.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout.trim();
  await mkdir(layout.state, { recursive: true });
  await writeFile(layout.lock, `${dead}\n`);
  const again = await lockReplica(layout);
  assert.equal(JSON.parse(await readFile(layout.lock, 'utf8')).pid, process.pid);
  await again();
  // Only the kernel-lock file stays (it must never be replaced); the holder's description is gone.
  assert.deepEqual(await readdir(layout.state), ['snapshot.lock.lockdb']);
}));

test('writeFileAtomic replaces the file and leaves no temp file behind', async () => withTempDir(async (dir) => {
  const layout = replicaLayout(dir, 'sw.example.org');
  await mkdir(layout.srv, { recursive: true });
  await writeFileAtomic(layout.txn, layout.manifest, Buffer.from('old'));
  await writeFileAtomic(layout.txn, layout.manifest, Buffer.from('new'));
  assert.equal(await readFile(layout.manifest, 'utf8'), 'new');
  assert.deepEqual(await readdir(layout.txn), []);
}));

test('replicaLayout refuses a name that could escape the root, and the snapshot stamp looks like date --utc', () => {
  assert.throws(() => replicaLayout('/r', '../etc'), { code: 'USAGE' });
  assert.equal(formatSnapshotTime(new Date(Date.UTC(2026, 10, 5, 3, 4, 5))), 'Thu Nov 05 03:04:05 UTC 2026');
});
