// Leftover working dirs of dead writers are removed; a live owner's and unrelated names are kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { formatIdentity, selfIdentity } from './process-identity.js';
import { makeOwnedDir, ownerOfDir, removeDeadOwnedDirs } from './transaction-dirs.js';

test('removeDeadOwnedDirs removes dead owners\' dirs and keeps live, recycled-pid-safe and foreign ones', async () => withTempDir(async (dir) => {
  const mine = makeOwnedDir(dir, 'txn');
  assert.deepEqual(ownerOfDir(basename(mine), 'txn'), selfIdentity());
  writeFileSync(join(mine, 'half-object'), 'x');
  const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
  const me = selfIdentity();
  const deadDir = join(dir, `txn-${formatIdentity({ ...me, pid: dead })}-abcd`);
  const recycled = join(dir, `txn-${formatIdentity({ ...me, startTicks: me.startTicks + 7 })}-beef`); // our pid, other start
  const legacyDead = join(dir, `txn-${dead}-1234`);
  const foreign = join(dir, 'txn-Xy12Ab'); // mkdtemp's shape: owner unknown, kept
  const otherPrefix = join(dir, `spool-${formatIdentity({ ...me, pid: dead })}-abcd`);
  for (const d of [deadDir, recycled, legacyDead, foreign, otherPrefix]) mkdirSync(join(d, 'sub'), { recursive: true });
  const removed = removeDeadOwnedDirs(dir, 'txn').sort();
  assert.deepEqual(removed, [deadDir, recycled, legacyDead].sort());
  assert.ok(existsSync(mine) && existsSync(foreign) && existsSync(otherPrefix));
  assert.deepEqual(removeDeadOwnedDirs(dir, 'spool'), [otherPrefix]);
  assert.deepEqual(readdirSync(dir).sort(), [basename(foreign), basename(mine)].sort());
  assert.deepEqual(removeDeadOwnedDirs(join(dir, 'missing'), 'txn'), []);
}));
