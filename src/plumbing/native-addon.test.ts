// The native addon's small system calls that are not about FUSE (the spawn is tested with the launcher):
// getxattr, which the runtime's accounting uses to read a mount's counters without starting getfattr(1), and
// exitNow, with which the mount daemon ends after its unmount.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
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

test('exitNow ends the process at once with its code: no exit handlers, nothing after it runs', () => {
  assert.ok(loadNativeAddon()?.exitNow, 'the gridbox-fuse-ioctl addon is built with exitNow (npm ci builds it)');
  const script = `
    const { loadNativeAddon } = await import(${JSON.stringify(new URL('./native-addon.js', import.meta.url).href)});
    process.on('exit', () => process.stdout.write('exit handler\\n'));
    setInterval(() => undefined, 1000);
    process.stdout.write('before\\n');
    loadNativeAddon().exitNow(7);
    process.stdout.write('after\\n');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.stderr, '');
  assert.equal(r.status, 7);
  assert.equal(r.stdout, 'before\n');
});
