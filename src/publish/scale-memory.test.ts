// Memory bounded by design (issue 8): `gridbox publish` of the generated scale tree at N entries and at
// 4N entries (same shape: bench/scale-tree.ts, cached under /var/tmp/gridbox-test-cache) must reach
// nearly the same peak RSS (VmHWM). A publisher that holds per-entry objects (the whole revision tree,
// every content id, every stored hash) grows by hundreds of MiB between the two and fails here; the
// streaming publisher holds a summary per directory, the listings on its current path, a bounded window
// of rows and the catalogs being written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureScaleTree } from '../bench/scale-tree.js';
import { mib, runMeasured } from '../testing/big-sparse-file.js';
import { withTempDir } from '../testing/tmp.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const FQRN = 'memory.gridbox.local';
const SMALL = 25_000;
const LARGE = 4 * SMALL;
/**
 * Allowed growth of the peak from N to 4N entries. The old in-memory publisher grew by ~290 MiB here
 * (438 MiB at 10^5 entries); what remains is garbage the collector has not yet returned and caches
 * bounded by constants.
 */
const GROWTH_LIMIT = 64 * 2 ** 20;

/** Site limit on address space (`ulimit -v`, KiB) the larger publish runs under. */
const VM_LIMIT_KIB = 4_194_304;

async function publishPeak(dir: string, entries: number, vmLimitKiB?: number): Promise<number> {
  const tree = ensureScaleTree(entries);
  const root = join(dir, `repo-${entries}`);
  const mk = await runMeasured(process.execPath, [MAIN, 'mkfs', FQRN, '--root', root]);
  assert.equal(mk.code, 0, mk.stderr);
  // Autocatalogs scaled to the tree (as the scale test does), so both publishes write several catalogs.
  const args = [MAIN, 'publish', FQRN, tree.dir, '--root', root, '--workers', '2', '--autocatalog-max', String(Math.floor(entries / 10))];
  // Under a limit, bash sets it and execs node in its place: the measured pid is the publisher's.
  const pub = vmLimitKiB === undefined ? await runMeasured(process.execPath, args)
    : await runMeasured('bash', ['-c', `ulimit -v ${vmLimitKiB} && exec "$0" "$@"`, process.execPath, ...args]);
  assert.equal(pub.code, 0, pub.stderr);
  assert.match(pub.stdout, new RegExp(`${tree.files} files`));
  return pub.peakRssBytes;
}

test(`publish peak RSS does not grow with the entry count (${SMALL} vs ${LARGE} entries, the larger under ulimit -v ${VM_LIMIT_KIB})`, { timeout: 900_000 }, async (t) => {
  await withTempDir(async (dir) => {
    const small = await publishPeak(dir, SMALL);
    const large = await publishPeak(dir, LARGE, VM_LIMIT_KIB);
    t.diagnostic(`peak RSS: ${mib(small)} at ${SMALL} entries, ${mib(large)} at ${LARGE} entries`);
    assert.ok(small > 0 && large > 0, 'both peaks measured');
    assert.ok(large - small < GROWTH_LIMIT, `peak RSS grew by ${mib(large - small)} from ${SMALL} to ${LARGE} entries (limit ${mib(GROWTH_LIMIT)})`);
  });
});
