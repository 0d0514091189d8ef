import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withTempDir } from '../testing/tmp.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), 'main.js');
const gridbox = (args: string[]) => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });

test('a failure inside a command keeps its own code and exit status, not USAGE', async () => {
  await withTempDir(async (dir) => {
    const r = gridbox(['publish', 'x.example.org', dir, '--root', join(dir, 'none')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /\[PUBLISH_NO_REPO\]/);
  });
});

test('usage errors exit 2 and --help exits 0 for commands built on commander', () => {
  const bad = gridbox(['publish', 'x.example.org', '/tmp', '--root', '/tmp', '--no-such-flag']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /no-such-flag/);
  for (const cmd of ['publish', 'serve', 'ls', 'snapshot']) {
    const help = gridbox([cmd, '--help']);
    assert.equal(help.status, 0, `${cmd} --help`);
    assert.match(help.stdout, /Usage:/);
    assert.equal(help.stderr, '');
  }
});
