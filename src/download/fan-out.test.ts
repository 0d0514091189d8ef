// Fan-out on one machine, every part real: one stratum 0 → 2 stratum 1s (`gridbox snapshot --loop`, served by
// `gridbox serve --access-log`; one of them "far" behind a latency proxy) → 2 squids with collapsed
// forwarding → 50 clients with their own caches (48 `gridbox get` processes and 2 FUSE mounts), split across
// the squids, ordering the stratum 1s by measured round trip (CVMFS_USE_GEOAPI=yes). Mid-way the near stratum 1
// is stopped and a new revision is published. Checked: every client gets the right bytes; each stratum 1 sees
// each object at most once per squid; the stop fails no client; the new revision reaches every get that starts
// once the replicas have it plus the TTL (CVMFS_MAX_TTL, here 3 s, also bounds the manifest age squid may hand
// out), and both mounts switch to it on their own (the delay is printed, not asserted: tests never assert on timings).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { listenSrv } from '../server/srv-handler.js';
import { startSquid, squidBinary, type Squid } from '../testing/squid.js';
import { withTempDir } from '../testing/tmp.js';
import {
  inPool, mustRun, readTree, runGridbox, serveRequestCounts, squidForwards, startStratum1, treeDifference, waitFor, type Stratum1,
} from '../testing/fan-out.js';

const FQRN = 'fanout.example.org';
const CLIENTS = 50;
/** Of the CLIENTS, this many are FUSE mounts (long-running, so the TTL check matters); the rest are gets. */
const MOUNTS = 2;
const PARALLEL = 10;
const MAX_TTL_S = 3;
const CHUNKS = ['--chunk-min', '262144', '--chunk-avg', '524288', '--chunk-max', '1048576'];

async function writeTree(src: string, files: Record<string, Buffer | string>): Promise<void> {
  for (const [rel, body] of Object.entries(files)) {
    await mkdir(join(src, rel, '..'), { recursive: true });
    await writeFile(join(src, rel), body);
  }
}

const skipReason = squidBinary() === undefined ? 'squid is not installed'
  : process.getuid?.() !== 0 || !existsSync('/dev/fuse') ? 'the fan-out mounts FUSE: needs root and /dev/fuse' : false;

test('fan-out: 2 stratum 1s, 2 squids, 48 gridbox get clients and 2 mounts; a stratum 1 stopped and a revision published mid-way',
  { skip: skipReason, timeout: 600_000 }, () => withTempDir(async (dir) => {
    await chmod(dir, 0o755); // squid drops to user proxy, which must traverse to its state dir
    const src = join(dir, 'src');
    const s0 = join(dir, 's0');
    const rev2: Record<string, Buffer | string> = { 'rev.txt': 'first revision\n', 'big.bin': randomBytes(2_500_000) };
    for (let i = 0; i < 16; i++) rev2[`small/f${i}.txt`] = randomBytes(500 + i * 211).toString('base64');
    for (let i = 0; i < 4; i++) rev2[`mid/m${i}.bin`] = randomBytes(80_000 + i * 40_000);
    await writeTree(src, rev2);
    await mustRun(['mkfs', FQRN, '--root', s0]);
    await mustRun(['publish', FQRN, src, '--root', s0, ...CHUNKS]);
    const want2 = await readTree(src);

    const stratum0 = await listenSrv({ srvDir: join(s0, 'srv') });
    const s1: Stratum1[] = [];
    const squids: Squid[] = [];
    const results: { client: number; phase: number; code: number | null; error?: string; revision?: string }[] = [];
    const mounts: string[] = [];
    /** The stratum 1 each get ended on (its summary line), for the report. */
    const usedHost = new Map<number, string>();
    let mountEnv: NodeJS.ProcessEnv = {};
    try {
      const keysDir = join(s0, 'keys');
      s1.push(...await Promise.all([
        startStratum1({ name: 'near', root: join(dir, 's1-near'), fqrn: FQRN, stratum0: stratum0.url, keysDir, loopS: 1 }),
        startStratum1({ name: 'far', root: join(dir, 's1-far'), fqrn: FQRN, stratum0: stratum0.url, keysDir, loopS: 1, latencyMs: 100 }),
      ]));
      squids.push(...await Promise.all([startSquid(join(dir, 'squid-a')), startSquid(join(dir, 'squid-b'))]));
      const [near, far] = s1;
      const configDir = join(dir, 'etc-cvmfs'); // no site config: only what each client is given
      await mkdir(configDir);
      const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CVMFS_')));

      /** Client i's configuration: squid i%2 first, the servers listed far first for half of them (the probe sorts). */
      const envOf = (i: number): NodeJS.ProcessEnv => ({
        ...baseEnv, GRIDBOX_CVMFS_CONFIG_DIR: configDir, GRIDBOX_RUN_DIR: join(dir, 'run'),
        CVMFS_SERVER_URL: (i % 4 < 2 ? [near, far] : [far, near]).map((s) => s.url).join(';'),
        CVMFS_HTTP_PROXY: (i % 2 === 0 ? [squids[0], squids[1]] : [squids[1], squids[0]]).map((s) => s.url).join(';'),
        CVMFS_USE_GEOAPI: 'yes', CVMFS_MAX_TTL: String(MAX_TTL_S / 60),
        CVMFS_TIMEOUT: '5', CVMFS_MAX_RETRIES: '1', CVMFS_BACKOFF_INIT: '0.05', CVMFS_BACKOFF_MAX: '0.2',
      });
      mountEnv = envOf(0);
      /** A `gridbox get` of the whole repository into its own directory, with its own cache. */
      const client = (i: number, phase: number, want: (tree: Map<string, Buffer>) => string | undefined) => async () => {
        const env = envOf(i);
        const dest = join(dir, 'out', String(i));
        await mkdir(join(dir, 'out'), { recursive: true });
        const r = await runGridbox(['get', FQRN, '/', dest, '--keys', keysDir, '--cache', join(dir, 'cache', String(i))], env);
        const entry: (typeof results)[number] = { client: i, phase, code: r.code };
        const from = /\bfrom (\S+)/.exec(r.stderr)?.[1];
        if (from !== undefined) usedHost.set(i, from === near.url ? 'near' : from === far.url ? 'far' : from);
        if (r.code !== 0) entry.error = r.stderr.trim().slice(-1500);
        else {
          const tree = await readTree(dest);
          entry.revision = tree.get('rev.txt')?.toString().trim();
          entry.error = want(tree);
        }
        results.push(entry);
      };
      const exactly = (w: Map<string, Buffer>) => (t: Map<string, Buffer>) => treeDifference(t, w);

      const t0 = Date.now();
      const marks: string[] = [];
      const mark = (what: string): void => { marks.push(`${what} ${((Date.now() - t0) / 1000).toFixed(1)} s`); };
      // The mounts (clients 0 and 1, one per squid) come up with the cold gets and read everything.
      const mounting = Promise.all(Array.from({ length: MOUNTS }, async (_, i) => {
        const mnt = join(dir, 'mnt', String(i));
        await mkdir(mnt, { recursive: true });
        await mustRun(['mount', FQRN, mnt, '--keys', keysDir, '--cache', join(dir, 'cache', String(i))], envOf(i));
        mounts.push(mnt);
        const difference = treeDifference(await readTree(mnt), want2);
        results.push({ client: i, phase: 1, code: 0, revision: 'first revision', error: difference === undefined ? undefined : `mount ${i}: ${difference}` });
      }));
      // Phase 1: 18 cold gets at once (20 clients with the mounts), the misses collapse in squid.
      await inPool(PARALLEL, Array.from({ length: 20 - MOUNTS }, (_, i) => client(MOUNTS + i, 1, exactly(want2))));
      await mounting;

      // Phase 2: 15 clients; while they run the near stratum 1 stops and revision 3 is published.
      const rev3: Record<string, Buffer | string> = { 'rev.txt': 'second revision\n', 'new.txt': randomBytes(30_000).toString('hex'), 'mid/m1.bin': randomBytes(150_000) };
      await writeTree(src, rev3);
      const want3 = await readTree(src);
      const phase2 = inPool(PARALLEL, Array.from({ length: 15 }, (_, i) => client(20 + i, 2, (t) => (treeDifference(t, want2) && treeDifference(t, want3)))));
      mark('phase 1');
      await waitFor('the first phase-2 client', () => results.some((r) => r.phase === 2), 300_000);
      const farBeforeStop = [...(await serveRequestCounts(far.accessLogPath))].filter(([p]) => p.includes('/data/')).length;
      await near.stopServe();
      mark('near stopped');
      await mustRun(['publish', FQRN, src, '--root', s0, ...CHUNKS]);
      await waitFor('revision 3 on the far stratum 1', () => far.revisions().includes(3), 120_000, () => far.revisions().join(','));
      const replicatedAt = Date.now();
      mark('revision 3 replicated');
      // Each mount switches on its own once the TTL runs out (any access past it starts the check).
      const switchDelays = await Promise.all(mounts.map(async (mnt) => {
        const until = Date.now() + 120_000;
        while ((await readFile(join(mnt, 'rev.txt'), 'utf8')) !== 'second revision\n') {
          if (Date.now() > until) throw new Error(`${mnt} never showed revision 3`);
          await new Promise((r) => setTimeout(r, 100));
        }
        const switched = (Date.now() - replicatedAt) / 1000;
        // The kernel may keep the old root listing until the root's attributes expire (entries live at most the TTL).
        let difference: string | undefined;
        while ((difference = treeDifference(await readTree(mnt), want3)) !== undefined) {
          if (Date.now() > until) assert.fail(`${mnt} at revision 3 never showed its whole tree: ${difference}`);
          await new Promise((r) => setTimeout(r, 250));
        }
        return [switched, (Date.now() - replicatedAt) / 1000];
      }));
      mark('mounts at revision 3');
      await phase2;
      mark('phase 2');

      // Phase 3: clients started a TTL after the replica had revision 3 must all see it.
      const wait = replicatedAt + MAX_TTL_S * 1000 + 500 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await inPool(PARALLEL, Array.from({ length: CLIENTS - 35 }, (_, i) => client(35 + i, 3, exactly(want3))));
      mark('phase 3');

      // Every client: exit 0 and a tree equal to one revision (the right one where it is known).
      assert.equal(results.length, CLIENTS);
      const bad = results.filter((r) => r.code !== 0 || r.error !== undefined);
      assert.deepEqual(bad, [], 'every client got correct bytes');
      const revs = (phase: number) => results.filter((r) => r.phase === phase).map((r) => r.revision);
      assert.ok(revs(3).every((r) => r === 'second revision'), 'the new revision reached every client within the TTL');

      // Each stratum 1 saw each object at most once per squid: from squid's side (forwards per URL) and the server's.
      await new Promise((r) => setTimeout(r, 400)); // the access log flushes every 200 ms
      for (const s of s1) await s.close();
      const forwards = await Promise.all(squids.map(async (q) => squidForwards(await q.accessLog())));
      const rows: string[] = [];
      for (const s of s1) {
        const served = await serveRequestCounts(s.accessLogPath);
        const objects = [...served].filter(([p]) => p.includes('/data/'));
        const over = objects.filter(([, n]) => n > squids.length);
        assert.deepEqual(over, [], `${s.name}: no object more often than once per squid`);
        for (const [qi, f] of forwards.entries()) {
          const mine = [...f].filter(([url]) => url.startsWith(s.url) && url.includes('/data/'));
          assert.deepEqual(mine.filter(([, n]) => n > 1), [], `squid ${qi} forwarded no object of ${s.name} twice`);
          rows.push(`${s.name} via squid ${qi}: ${mine.length} object requests`);
        }
        const manifests = served.get(`/cvmfs/${FQRN}/.cvmfspublished`) ?? 0;
        const heads = (await serveRequestCounts(s.accessLogPath, 'HEAD')).get(`/cvmfs/${FQRN}/.cvmfspublished`) ?? 0;
        rows.push(`${s.name}: ${objects.length} objects, ${objects.reduce((n, [, c]) => n + c, 0)} object GETs, ${manifests} manifest GETs, ${heads} probe HEADs`);
      }
      const nearObjects = [...(await serveRequestCounts(near.accessLogPath))].filter(([p]) => p.includes('/data/')).length;
      assert.ok(nearObjects > 0, 'the near stratum 1 served objects before it stopped');
      const farObjects = [...(await serveRequestCounts(far.accessLogPath))].filter(([p]) => p.includes('/data/')).length;
      assert.ok(farObjects > 0, 'the far stratum 1 took over');
      // After the stop, squid answered for the near stratum 1 with errors (probes, revalidations): clients saw it down.
      const nearErrors = (await Promise.all(squids.map((q) => q.accessLog()))).flat()
        .filter((l) => l.split(/\s+/)[6]?.startsWith(near.url) && /\/5\d\d$/.test(l.split(/\s+/)[3] ?? '')).length;
      assert.ok(nearErrors > 0, 'clients probed the stopped stratum 1 and were told it is down');
      rows.push(`mounts read revision 3's rev.txt / whole tree ${switchDelays.map(([a, b]) => `${a.toFixed(1)} s / ${b.toFixed(1)} s`).join(' and ')} after the replica had it (TTL ${MAX_TTL_S} s)`);
      rows.push(`far object GETs before the stop: ${farBeforeStop}; squid 5xx for the stopped near stratum 1: ${nearErrors}; ${marks.join(', ')}`);
      const hostsBy = (phase: number) => results.filter((r) => r.phase === phase && usedHost.has(r.client)).map((r) => usedHost.get(r.client)![0]).join('');
      rows.push(`gets ended on (n=near, f=far): phase 1 ${hostsBy(1)}, phase 2 ${hostsBy(2)}, phase 3 ${hostsBy(3)}`);
      const byPhase = [1, 2, 3].map((p) => `phase ${p}: ${revs(p).map((r) => (r === 'first revision' ? 2 : 3)).join('')}`);
      process.stderr.write(`fan-out: ${rows.join('; ')}; revisions seen ${byPhase.join(', ')}\n`);
    } finally {
      for (const mnt of mounts) await runGridbox(['umount', mnt], mountEnv);
      for (const s of s1) await s.close();
      for (const q of squids) await q.stop();
      await stratum0.close();
    }
  }));
