import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { isGridboxError } from '../errors.js';
import { checkUserNamespaces } from './execute-launch.js';

async function procSys(values: Record<string, string>, fn: (dir: string) => void): Promise<void> {
  await withTempDir(async (dir) => {
    for (const [name, v] of Object.entries(values)) {
      mkdirSync(join(dir, name, '..'), { recursive: true });
      writeFileSync(join(dir, name), `${v}\n`);
    }
    fn(dir);
  });
}

test('checkUserNamespaces() fails with LAUNCH_NO_USERNS when max_user_namespaces is 0', async () => {
  await procSys({ 'user/max_user_namespaces': '0' }, (dir) => {
    assert.throws(() => checkUserNamespaces(dir, 1000), (e) => isGridboxError(e, 'LAUNCH_NO_USERNS') && /max_user_namespaces/.test(e.message));
  });
});

test('checkUserNamespaces() fails for a normal user when unprivileged_userns_clone is 0, not for root', async () => {
  await procSys({ 'user/max_user_namespaces': '100', 'kernel/unprivileged_userns_clone': '0' }, (dir) => {
    assert.throws(() => checkUserNamespaces(dir, 1000), (e) => isGridboxError(e, 'LAUNCH_NO_USERNS'));
    assert.doesNotThrow(() => checkUserNamespaces(dir, 0));
  });
});

test('checkUserNamespaces() passes when the knobs allow namespaces or are absent (mainline kernels)', async () => {
  await procSys({ 'user/max_user_namespaces': '96365' }, (dir) => assert.doesNotThrow(() => checkUserNamespaces(dir, 1000)));
  await procSys({}, (dir) => assert.doesNotThrow(() => checkUserNamespaces(dir, 1000)));
});
