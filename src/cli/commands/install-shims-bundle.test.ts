// The shims' runtime bundle: built once per compiled tree and reused, runs the runtime like main.js, and is
// never trusted once a compiled file it was made from changed (it hands over to main.js instead).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTempDir } from '../../testing/tmp.js';
import { ensureRuntimeBundle } from './install-shims-bundle.js';
import { APPTAINER_COMPAT_VERSION } from './apptainer.js';

const version = (script: string): string =>
  spawnSync(process.execPath, [script, 'version'], { env: { PATH: '/usr/bin:/bin', GRIDBOX_ARGV0: 'apptainer' }, encoding: 'utf8' }).stdout.trim();

test('the runtime bundle is reused while fresh, and hands over to main.js once its sources changed', async () => {
  const bundle = await ensureRuntimeBundle();
  assert.ok(bundle !== undefined, 'the bundle can be built here');
  assert.equal(await ensureRuntimeBundle(), bundle);
  assert.equal(version(bundle), APPTAINER_COMPAT_VERSION);
  const text = readFileSync(bundle, 'utf8');
  const literal = `'${APPTAINER_COMPAT_VERSION}'`;
  assert.ok(text.includes(literal), 'the version string is in the bundle itself');
  await withTempDir(async (dir) => {
    // The bundle's own code runs while its manifest matches the compiled files…
    const marked = join(dir, 'marked.cjs');
    writeFileSync(marked, text.replace(literal, "'0.0.0-from-the-bundle'"));
    assert.equal(version(marked), '0.0.0-from-the-bundle');
    // …and not once a size or mtime differs: then main.js answers.
    const stale = join(dir, 'stale.cjs');
    writeFileSync(stale, text.replace(literal, "'0.0.0-from-the-bundle'").replace(/(const manifest = \[\[("[^"]+"),)(\d+)/, '$1$3999'));
    assert.equal(version(stale), APPTAINER_COMPAT_VERSION);
  });
});
