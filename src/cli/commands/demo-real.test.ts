// `npm run demo` (src/testing/demo-real.ts) end to end: real Debian image, registry, sync, serve, FUSE mount,
// pilot setup, two jobs as uid 65534 in the images their REQUIRED_OS picks, the report, and nothing left over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { corpusUnavailable } from '../../testing/corpus.js';
import { haveRegistry } from '../../testing/registry.js';

const DEMO = fileURLToPath(new URL('../../testing/demo-real.js', import.meta.url));
const skip = corpusUnavailable() ?? (haveRegistry() ? undefined : 'docker-registry is not installed')
  ?? (spawnSync('setpriv', ['--version']).status === 0 ? undefined : 'setpriv is not installed');

test('npm run demo: the real chain, jobs as uid 65534 land in their images, report shown, everything cleaned up', { skip, timeout: 900_000 }, () => {
  const r = spawnSync(process.execPath, [DEMO], { encoding: 'utf8', timeout: 900_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  const out = r.stdout;
  assert.match(out, /pilot setup \(as uid 65534\) .*HAS_SINGULARITY=True status REQUIRED, unprivileged mode/);
  assert.match(out, /REQUIRED_OS debian12, cold\) took [\d.]+ s, [\d.]+ MiB on the wire = [\d.]+% of the [\d.]+ MiB compressed image:\n\s+usr\/bin: \d+ files, dpkg: \d+ lines\n\s+inside: Debian GNU\/Linux 12 \(bookworm\) as uid 65534/);
  assert.match(out, /REQUIRED_OS busybox1, warm\) took [\d.]+ s, [^\n]*:\n\s+inside: BusyBox v[\d.]+ as uid 65534/);
  assert.match(out, /cold demo\.gridbox\.local\/127\.0\.0\.1:\d+\/corpus\/debian:12: first instruction [\d.]+ ms, exit after [\d.]+ ms, fetched [\d.]+ MiB \([\d.]+% of the [\d.]+ MiB compressed image\)/);
  assert.match(out, /starts per image/);
  assert.match(out, /cleaned up: no mount left, serve and registry stopped, work dir removed/);
  const work = /mounted at (\S+)\/cvmfs\//.exec(out)?.[1];
  assert.ok(work !== undefined);
  assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(work), 'no mount left behind');
  const ps = spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).stdout;
  assert.ok(!ps.includes(work), `no process of the demo left:\n${ps.split('\n').filter((l) => l.includes(work)).join('\n')}`);
});
