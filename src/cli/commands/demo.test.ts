// The README's first command must stay true: `gridbox demo` runs end to end and cleans up after itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'main.js');

test('gridbox demo publishes, serves, reads back, mounts, runs a pilot job and unmounts', () => {
  const r = spawnSync(process.execPath, [MAIN, 'demo'], { encoding: 'utf8', timeout: 240_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /client fetched the chunked file, verified: identical to the source/);
  assert.match(r.stdout, /printed: "hello from the grid"/);
  assert.match(r.stdout, /exited 42 \(the job's own exit code 42 passed back\)/);
  assert.match(r.stdout, /image NAME="gridbox demo"/);
  assert.match(r.stdout, /unmounted; done/);
  const work = /work dir kept: (\S+)|mounted \S+ at (\S+)/.exec(r.stdout)?.[2];
  assert.ok(work !== undefined);
  assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(work), 'no mount left behind');
});
