// The native addon's small system calls that are not about FUSE (the spawn is tested with the launcher):
// getxattr, which the runtime's accounting uses to read a mount's counters without starting getfattr(1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { loadNativeAddon } from './native-addon.js';

test('getxattr reads a user attribute as text and gives -errno for a missing one or a missing file', async () => {
  const addon = loadNativeAddon();
  const getxattr = addon?.getxattr;
  assert.ok(getxattr, 'the gridbox-fuse-ioctl addon is built with getxattr (npm ci builds it)');
  await withTempDir(async (dir) => {
    const f = join(dir, 'f');
    writeFileSync(f, 'x');
    execFileSync('setfattr', ['-n', 'user.rx', '-v', '4321', f]);
    assert.equal(getxattr(f, 'user.rx'), '4321');
    assert.equal(getxattr(f, 'user.ndownload'), -61); // ENODATA
    assert.equal(getxattr(join(dir, 'missing'), 'user.rx'), -2); // ENOENT
  });
});
