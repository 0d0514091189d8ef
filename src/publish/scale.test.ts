// Scale (issue 8): a generated tree of up to 10^6 entries (small and empty files, one wide and one deep
// directory, a package hierarchy; built once into /var/tmp/gridbox-test-cache) publishes with automatic
// catalog splitting (at 10^6, CernVM-FS's default CVMFS_AUTOCATALOGS_MAX_WEIGHT of 100000); the FUSE mount
// lists and `find`s it with the right count; a republish after changing 10 files writes exactly those 10
// data objects and the catalogs on their paths; the publish stays under 512 MiB peak RSS (at 10^6 the
// streaming publisher peaked at 350 MiB; scale-memory.test.ts checks that the peak does not grow with the
// entry count). The publish source is an overlay over the cached tree, so the 10 changes never touch the
// cache. The suite runs the full 10^6 entries (438 s alone on a quiet 2-core machine, with the tree
// already cached; building the tree adds a few minutes once); GRIDBOX_SCALE_ENTRIES=300000 runs a smaller
// tree when iterating on this file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '../testing/tmp.js';
import { mib, runMeasured } from '../testing/big-sparse-file.js';
import { ensureScaleTree, scaleTreeFiles } from '../bench/scale-tree.js';
import { FsStore } from '../store/fs-store.js';
import { formatObjectId } from '../hash/object-id.js';
import { FQRN, cliEnv, cliMain, fuseSkipReason, runChild, startOrigin, mustRun as must } from '../vfs/mount-fixture.test.js';
import { catalogOf } from './catalog-plan.js';
import { readHead } from './head.js';
import { repoLayout } from './repo-layout.js';
import { forEachCatalog } from './revision-load.js';

const ENTRIES = Number(process.env.GRIDBOX_SCALE_ENTRIES ?? 1_000_000);
// CernVM-FS's default max weight for 10^6; smaller trees are split proportionally so splitting still shows.
const AUTOCATALOG_MAX = ENTRIES >= 1_000_000 ? 100_000 : Math.max(1000, Math.floor(ENTRIES / 10));
const LONG_MS = 1_800_000;
const PUBLISH_RSS_LIMIT = 512 * 2 ** 20;

function skipReason(): string | undefined {
  const fuse = fuseSkipReason();
  if (fuse !== undefined) return fuse;
  if (!readFileSafe('/proc/filesystems').includes('\toverlay\n')) return 'no overlayfs (the republish changes 10 files in an overlay over the cached tree)';
  return undefined;
}

function readFileSafe(p: string): string {
  try { return readFileSync(p, 'utf8'); } catch { return ''; }
}

const bash = (script: string, env?: NodeJS.ProcessEnv) => runChild('bash', ['-c', script], { env, timeoutMs: LONG_MS });
const gridbox = (args: string[], env: NodeJS.ProcessEnv) => runChild(process.execPath, [cliMain(), ...args], { env, timeoutMs: LONG_MS });

/** Every file name under data/XX/ of the served store. */
function storeFiles(srv: string): Set<string> {
  const out = new Set<string>();
  const data = join(srv, 'data');
  for (const d of readdirSync(data)) {
    if (!/^[0-9a-f]{2}$/.test(d)) continue;
    for (const f of readdirSync(join(data, d))) out.add(`${d}${f}`);
  }
  return out;
}

interface CatalogView { ids: Map<string, string>; entries: number; maxRows: number }

async function catalogs(layout: ReturnType<typeof repoLayout>, tmp: string): Promise<CatalogView> {
  const head = await readHead(layout);
  const view: CatalogView = { ids: new Map(), entries: 0, maxRows: 0 };
  await forEachCatalog(new FsStore(layout.srv), head.rootId, tmp, (mount, id, _size, rows) => {
    view.ids.set(mount, formatObjectId(id));
    view.maxRows = Math.max(view.maxRows, rows.length);
    for (const r of rows) if (!r.nestedMountpoint) view.entries++; // a mountpoint's stub row is the child's root row again
  });
  return view;
}

/** Seconds since `t0`, for the phase diagnostics (reported, never asserted on). */
const since = (t0: number) => ((Date.now() - t0) / 1000).toFixed(1);

test(`a tree of ${ENTRIES} entries publishes with autocatalogs, mounts and finds whole, and a 10-file change rewrites only its objects and catalogs`, { skip: skipReason(), timeout: LONG_MS }, async (t) => {
  let t0 = Date.now();
  const tree = ensureScaleTree(ENTRIES);
  t.diagnostic(`tree ready in ${since(t0)} s: ${tree.dir}`);
  assert.equal(tree.entries, ENTRIES);
  const tmp = await makeTempDir('gridbox-scale-');
  const env = cliEnv(tmp);
  const root = join(tmp, 'repo');
  const layout = repoLayout(root, FQRN);
  const src = join(tmp, 'src'), upper = join(tmp, 'upper'), work = join(tmp, 'work'), mnt = join(tmp, 'mnt');
  for (const d of [src, upper, work, mnt]) mkdirSync(d);
  let overlay = false, mounted = false;
  let origin: Awaited<ReturnType<typeof startOrigin>> | undefined;
  try {
    await must(bash(`mount -t overlay overlay -o lowerdir=${tree.dir},upperdir=${upper},workdir=${work} ${src}`), 'overlay mount');
    overlay = true;
    await must(gridbox(['mkfs', FQRN, '--root', root], env), 'mkfs');
    t0 = Date.now();
    const measured = await runMeasured(process.execPath, [cliMain(), 'publish', FQRN, src, '--root', root, '--autocatalog-max', String(AUTOCATALOG_MAX)], { env });
    assert.equal(measured.code, 0, `publish failed (${measured.code}): ${measured.stderr}${measured.stdout}`);
    const pub1 = measured.stdout;
    t.diagnostic(`publish: ${since(t0)} s, peak RSS ${mib(measured.peakRssBytes)}: ${pub1.trim()}`);
    // Bounded by design (the streaming publisher holds no per-entry objects): the bound at any size.
    assert.ok(measured.peakRssBytes > 0 && measured.peakRssBytes < PUBLISH_RSS_LIMIT, `publish peak RSS ${mib(measured.peakRssBytes)} must stay under ${mib(PUBLISH_RSS_LIMIT)}`);
    const first = await catalogs(layout, tmp);
    assert.equal(first.entries, ENTRIES + 1, `catalogs hold every entry and the root once (${pub1.trim()})`);
    assert.ok(first.ids.size >= Math.floor(ENTRIES / AUTOCATALOG_MAX), `split into ${first.ids.size} catalogs`);
    // Every catalog within the max, except one holding a flat directory wider than that (cannot be split).
    const bound = Math.max(AUTOCATALOG_MAX, tree.widest + 1);
    assert.ok(first.maxRows <= bound, `largest catalog has ${first.maxRows} rows > ${bound}`);

    // The mount: find counts every entry; the wide directory lists whole.
    origin = await startOrigin(join(root, 'srv'));
    await must(gridbox(['mount', FQRN, mnt, '--server', origin.url, '--key', join(root, 'keys', `${FQRN}.pub`), '--cache', join(tmp, 'cache')], env), 'mount');
    mounted = true;
    t0 = Date.now();
    const found = Number((await must(bash(`find ${mnt} -mindepth 1 | wc -l`), 'find')).trim());
    assert.equal(found, ENTRIES);
    const wide = Number((await must(bash(`ls -f ${mnt}/wide | wc -l`), 'ls')).trim());
    assert.equal(wide, Number((await must(bash(`ls -f ${tree.dir}/wide | wc -l`), 'ls source')).trim()));
    t.diagnostic(`mount, find and ls: ${since(t0)} s`);
    await must(gridbox(['umount', mnt], env), 'umount');
    mounted = false;

    // Change 10 files spread over the tree (in the overlay's upper layer), republish.
    const step = Math.floor(tree.files / 10);
    const changed = scaleTreeFiles(ENTRIES, (k) => k % step === step - 1).slice(0, 10);
    assert.equal(changed.length, 10);
    for (const rel of changed) writeFileSync(join(src, rel), `changed for the republish: ${rel}\n`);
    const before = storeFiles(layout.srv);
    t0 = Date.now();
    const pub2 = await must(gridbox(['publish', FQRN, src, '--root', root, '--autocatalog-max', String(AUTOCATALOG_MAX)], env), 'republish');
    t.diagnostic(`republish: ${since(t0)} s: ${pub2.trim()}`);
    const added = [...storeFiles(layout.srv)].filter((f) => !before.has(f));
    const second = await catalogs(layout, tmp);
    assert.deepEqual([...second.ids.keys()].sort(), [...first.ids.keys()].sort(), 'the same catalog layout');
    const mounts = new Set(second.ids.keys());
    const onPaths = new Set<string>();
    for (const rel of changed) {
      for (let m = catalogOf(`/${rel}`, mounts); ; m = catalogOf(m.slice(0, m.lastIndexOf('/')), mounts)) {
        onPaths.add(m);
        if (m === '') break;
      }
    }
    const rewritten = new Set([...second.ids].filter(([m, id]) => first.ids.get(m) !== id).map(([m]) => m));
    assert.deepEqual([...rewritten].sort(), [...onPaths].sort(), 'exactly the catalogs on the changed paths are new');
    const bySuffix = (s: string) => added.filter((f) => (/[A-Z]$/.exec(f)?.[0] ?? '') === s).length;
    assert.equal(bySuffix(''), 10, `new data objects: ${added.join(' ')}`);
    assert.equal(bySuffix('C'), onPaths.size, 'new catalog objects');
    // Besides those, only the new history database (suffix H) may appear.
    assert.deepEqual(added.filter((f) => !['', 'C', 'H'].includes(/[A-Z]$/.exec(f)?.[0] ?? '')), [], 'no other kind of object');
    assert.ok(bySuffix('H') <= 1, `${bySuffix('H')} history objects`);
  } finally {
    if (mounted) await gridbox(['umount', mnt], env);
    await origin?.close();
    if (overlay) await bash(`umount ${src}`);
    await rm(tmp, { recursive: true, force: true });
    if (existsSync(tmp)) throw new Error(`cannot remove ${tmp}`);
  }
});
