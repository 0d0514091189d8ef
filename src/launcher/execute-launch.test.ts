import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { isGridboxError } from '../errors.js';
import { loadNativeAddon } from '../plumbing/native-addon.js';
import { checkUserNamespaces, executeLaunch } from './execute-launch.js';
import type { LaunchSpec } from './launch-spec.js';

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

/** A spec for bwrap by hand: the host's / read-only, a tmpfs /tmp holding the data files, `sh -c script`. */
function hostSpec(script: string, files: LaunchSpec['files'] = []): LaunchSpec {
  const argv = ['--unshare-user', '--unshare-pid', '--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp'];
  files.forEach((f, i) => argv.push('--ro-bind-data', String(4 + i), f.dest));
  argv.push('--die-with-parent', '--json-status-fd', '3', '/bin/sh', '-c', script);
  return { argv, env: { PATH: '/usr/bin:/bin' }, files, mkdirs: [], messages: [], pidNamespace: true };
}

// Both ways of starting bwrap must behave the same: the native posix_spawn (the default when the addon is built,
// as npm ci builds it) and child_process (the fallback).
for (const spawner of ['native', 'child_process'] as const) {
  test(`executeLaunch (${spawner}): the payload's exit code, data files of any size (one larger than a pipe), onStarted once`, async () => {
    const big = 'x'.repeat(300_000);
    let started = 0;
    const code = await executeLaunch(hostSpec('test "$(cat /tmp/a)" = "small file" && test "$(wc -c < /tmp/b)" -eq 300000 && exit 42; exit 1', [
      { dest: '/tmp/a', content: 'small file' }, { dest: '/tmp/b', content: big },
    ]), { onStarted: () => { started++; } }, { spawner });
    assert.equal(code, 42);
    assert.equal(started, 1);
  });

  test(`executeLaunch (${spawner}): a payload killed by a signal gives 128+N; stdio inherited, signals at their defaults`, async () => {
    // SIGPIPE is ignored in Node; an ignored signal stays ignored across exec unless the spawner resets it.
    assert.equal(await executeLaunch(hostSpec('grep -q "^SigIgn:.*0000000000000000$" /proc/self/status || exit 7; exec 1>&1 2>&2 0<&0 || exit 8; kill -TERM $$'), {}, { spawner }), 143);
  });

  test(`executeLaunch (${spawner}): bwrap failing before the command is LAUNCH_FAILED`, async () => {
    const spec = hostSpec('exit 0');
    spec.argv.unshift('--bind', '/nonexistent-gridbox-test-source', '/mnt');
    await assert.rejects(executeLaunch(spec, {}, { spawner }), (e: unknown) => isGridboxError(e) && e.code === 'LAUNCH_FAILED' && /bwrap exited with status 1/.test(e.message));
  });
}

test('the addon\'s spawnPiped: an unstartable program is -ENOENT; pipes land on the fixed descriptors', async () => {
  const addon = loadNativeAddon();
  assert.ok(addon?.spawnPiped && addon.waitPid, 'the gridbox-fuse-ioctl addon is built with spawnPiped (npm ci builds it)');
  assert.deepEqual(addon.spawnPiped('/nonexistent-gridbox-program', ['x'], [], 3, 0), [-2]);
  const r = addon.spawnPiped('/bin/sh', ['sh', '-c', 'read line <&4; echo "got $line" >&3; exit 5'], ['PATH=/usr/bin:/bin'], 3, 1);
  assert.equal(r.length, 4); // pid, status read end, one data write end, its capacity
  assert.ok(r[3] >= 4096);
  const { closeSync, readFileSync, writeSync } = await import('node:fs');
  writeSync(r[2], 'hello\n');
  closeSync(r[2]);
  assert.equal(readFileSync(r[1], 'utf8'), 'got hello\n');
  closeSync(r[1]);
  assert.deepEqual(addon.waitPid(r[0]), [5, 0]);
});
