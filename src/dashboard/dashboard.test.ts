// The dashboard on real data, looked at in headless Chromium: two small images (the second built on the
// first's layer) pushed to a real docker-registry and published by `gridbox sync` in two cycles, a stratum 1
// made by `gridbox snapshot` between them (so it is one revision behind), container starts posted as the
// pilot posts them (`gridbox report --post`), all served by `gridbox serve` processes on 127.0.0.1. The page
// is checked through DOM queries, and a screenshot is saved (GRIDBOX_TEST_ARTIFACTS, default
// /var/tmp/gridbox-test-artifacts/dashboard.png). Also: sync's layer and byte counters from that real sync.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { openAccountingDb, recordStart } from '../accounting/accounting-db.js';
import { exchangeText } from '../accounting/http-exchange.js';
import { readHead } from '../publish/head.js';
import { repoLayout } from '../publish/repo-layout.js';
import { readSyncState } from '../sync/reconcile.js';
import { freeLoopbackPort } from '../testing/free-port.js';
import { GZ, buildTar, gzip, pushImage, sha256 } from '../testing/images.js';
import { haveRegistry, startRegistry } from '../testing/registry.js';
import { withTempDir } from '../testing/tmp.js';
import type { DashboardData } from './dashboard-data.js';

const FQRN = 'dash.example.org';
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const run = promisify(execFile);
const DAY = 86_400_000;

/** Debian's chromium binary (the /usr/bin/chromium wrapper only adds flags from /etc/chromium.d). */
function chromiumPath(): string | undefined {
  for (const p of ['/usr/lib/chromium/chromium', '/usr/bin/chromium']) if (existsSync(p)) return p;
  return undefined;
}

async function gridbox(args: string[]): Promise<string> {
  try {
    return (await run(process.execPath, [MAIN, ...args], { maxBuffer: 16 << 20 })).stdout;
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`gridbox ${args.join(' ')} failed: ${x.stderr || x.message}`);
  }
}

/** `gridbox serve` as a child process; resolves with its URL once it printed it. */
async function serve(args: string[], children: ChildProcess[]): Promise<string> {
  const child = spawn(process.execPath, [MAIN, 'serve', '--workers', '1', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  return new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^serving (\S+)/m.exec(out);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`gridbox serve exited ${code}: ${err}`)));
  });
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

function skipReason(): string | undefined {
  if (!haveRegistry()) return 'docker-registry not installed (apt-get install docker-registry)';
  if (chromiumPath() === undefined) return 'chromium not installed (apt-get install chromium; scripts/deps.sh does)';
  if (!existsSync('/bin/busybox')) return 'busybox not installed (apt-get install busybox-static)';
  return undefined;
}

test('the dashboard shows synced images, tags, container starts and a lagging stratum 1 in Chromium', { timeout: 300_000 }, async (t: TestContext) => {
  const why = skipReason();
  if (why !== undefined) { t.skip(why); return; }
  const { chromium } = await import('playwright-core');
  await withTempDir(async (dir) => {
    const children: ChildProcess[] = [];
    const reg = await startRegistry(join(dir, 'registry'));
    try {
      // Two images: "base" (busybox and a few files) and "app" (base's layer plus its own): app's copy of
      // the base layer is stored once, which the page must show as bytes saved.
      const baseTar = await buildTar([
        { name: 'bin/', type: 'directory' }, { name: 'bin/busybox', content: await readFile('/bin/busybox'), mode: 0o755 },
        { name: 'bin/sh', type: 'symlink', linkname: 'busybox' }, { name: 'etc/', type: 'directory' }, { name: 'etc/motd', content: 'gridbox base\n' },
      ]);
      const appTar = await buildTar([{ name: 'app/', type: 'directory' }, { name: 'app/run.sh', content: '#!/bin/sh\necho analysis\n', mode: 0o755 },
        { name: 'app/table.csv', content: 'x,y\n'.repeat(2000) }]);
      const base = gzip(baseTar), app = gzip(appTar);
      // The config names its layers (rootfs.diff_ids), as real images do: two images, two configs, two trees.
      const config = (tars: Buffer[]): object => ({ architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/bin'], Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: tars.map((x) => sha256(x)) } });
      await pushImage(reg, 'lab/base', '1.0', [{ data: base, mediaType: GZ }], config([baseTar]));
      await pushImage(reg, 'lab/analysis', '2.1', [{ data: base, mediaType: GZ }, { data: app, mediaType: GZ }], config([baseTar, appTar]));
      const baseName = `${reg.host}/lab/base:1.0`, appName = `${reg.host}/lab/analysis:2.1`;

      const root = join(dir, 'stratum0');
      await gridbox(['mkfs', FQRN, '--root', root]);
      const list = join(dir, 'docker_images.txt');
      await writeFile(list, `${baseName}\n`);
      const prom = join(dir, 'sync.prom');
      await gridbox(['sync', list, '--repo', FQRN, '--root', root, '--platform', 'linux/amd64', '--metrics-file', prom]);
      // The real sync's counters: one layer, its compressed bytes.
      const m1 = await readFile(prom, 'utf8');
      assert.equal(sample(m1, 'gridbox_sync_layers_total'), 1, m1);
      assert.equal(sample(m1, 'gridbox_sync_layer_bytes_total'), base.length, m1);
      assert.equal(sample(m1, 'gridbox_sync_images_total{status="new"}'), 1, m1);

      // The stratum 0 with the accounting endpoint and the dashboard; the stratum 1 is told by its port.
      const s1Port = await freeLoopbackPort();
      const accounting = join(dir, 'accounting.db');
      const s0 = await serve(['--root', root, '--listen', '127.0.0.1:0', '--accounting-db', accounting, '--stratum1', `http://127.0.0.1:${s1Port}/cvmfs`], children);
      const replica = join(dir, 'stratum1');
      await gridbox(['snapshot', FQRN, '--from', s0, '--root', replica, '--keys', join(root, 'keys'), '--quiet']);
      await serve(['--root', replica, '--listen', `127.0.0.1:${s1Port}`, '--no-dashboard'], children);

      // A second cycle after the snapshot: app joins, one more revision the stratum 1 does not have yet.
      await writeFile(list, `${baseName}\n${appName}\n`);
      await gridbox(['sync', list, '--repo', FQRN, '--root', root, '--platform', 'linux/amd64', '--metrics-file', prom]);
      const m2 = await readFile(prom, 'utf8');
      // The base layer is remembered from cycle 1: only app's own layer is downloaded.
      assert.equal(sample(m2, 'gridbox_sync_layers_total'), 1, m2);
      assert.equal(sample(m2, 'gridbox_sync_layer_bytes_total'), app.length, m2);
      const layout = repoLayout(root, FQRN);
      const head = await readHead(layout);
      const state = await readSyncState(layout);
      const appDigest = state.images[appName].digest;

      // Container starts as a pilot records them on its node, then posted like `gridbox report --post`.
      const nodeDb = join(dir, 'node-accounting.db');
      const db = openAccountingDb(nodeDb);
      const now = Date.now();
      const starts = [
        { image: appName, day: 2, status: 0 }, { image: appName, day: 1, status: 0 }, { image: appName, day: 1, status: 1 },
        { image: appName, day: 0, status: 0 }, { image: baseName, day: 0, status: 0 },
      ];
      for (const [i, s] of starts.entries()) {
        recordStart(db, {
          node: 'wn01.example.org', startedAt: now - s.day * DAY - i * 60_000, via: 'pilot', imageName: `${FQRN}/${s.image}`,
          imageDigest: state.images[s.image].configDigest, firstInstructionMs: 180 + 20 * i, exitMs: 2000 + 100 * i, exitStatus: s.status,
          bytesFetched: 1_500_000, cacheHits: 10, cacheMisses: 40,
        });
      }
      db.close();
      const posted = await gridbox(['report', '--db', nodeDb, '--post', s0.replace(/\/cvmfs\/$/, '')]);
      assert.match(posted, /posted 5 records/);

      // The JSON endpoint says what the page should show.
      const origin = new URL(s0).origin;
      const data = JSON.parse((await exchangeText(`${origin}/dashboard/data.json`, { timeoutMs: 30_000 })).text) as DashboardData;
      const repo = data.repositories.find((r) => r.fqrn === FQRN)!;
      assert.equal(repo.revision, head.revision);
      assert.equal(data.stratum1.length, 1);
      assert.equal(data.stratum1[0].revisionsBehind, 1, JSON.stringify(data.stratum1));
      const appRow = repo.images.find((i) => i.name === appName)!;
      assert.ok(appRow.savedBytes! >= (await readFile('/bin/busybox')).length, `app shares busybox with base: ${JSON.stringify(appRow)}`);

      const browser = await chromium.launch({ executablePath: chromiumPath(), headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
      try {
        const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        // Nothing may be fetched from outside the loopback server.
        const outside: string[] = [];
        page.on('request', (r) => { if (!r.url().startsWith(origin)) outside.push(r.url()); });
        const res = await page.goto(`${origin}/dashboard`, { waitUntil: 'load' });
        assert.equal(res?.status(), 200);
        const text = (sel: string): Promise<string> => page.locator(sel).first().innerText();
        const repoSel = `.repository[data-fqrn="${FQRN}"]`;
        assert.equal(await text(`${repoSel} .revision`), String(head.revision));
        assert.equal(await page.locator(`${repoSel} tr.tag[data-tag="trunk"]`).count(), 1);
        assert.equal(await page.locator(`${repoSel} tr.tag[data-tag="trunk-previous"]`).count(), 1);
        assert.ok(await page.locator(`${repoSel} svg.revisions circle`).count() >= 2, 'both synced revisions are plotted');
        for (const name of [baseName, appName]) {
          const row = page.locator(`${repoSel} tr.image[data-name="${name}"]`);
          assert.equal(await row.count(), 1, name);
          assert.ok(Number(await row.locator('td.files').innerText()) >= 1, `${name} has files`);
        }
        const appImg = page.locator(`${repoSel} tr.image[data-name="${appName}"]`);
        assert.equal(await appImg.locator('td[data-status]').getAttribute('data-status'), 'new');
        assert.equal(await appImg.locator('code').getAttribute('title'), appDigest);
        assert.equal(Number(await appImg.locator('td.saved').getAttribute('data-bytes')), appRow.savedBytes);
        assert.match(await text(`${repoSel} .dedup`), /saved by deduplication/);
        assert.equal(await page.locator(`tr.start-image[data-image="${FQRN}/${appName}"]`).getAttribute('data-starts'), '4');
        assert.equal(await page.locator(`tr.start-image[data-image="${FQRN}/${baseName}"]`).getAttribute('data-starts'), '1');
        assert.match(await page.locator('svg.starts').textContent() ?? '', /5 starts, 1 node/);
        const s1 = page.locator('tr.stratum1');
        assert.equal(await s1.getAttribute('data-behind'), '1');
        assert.equal(await s1.getAttribute('data-url'), `http://127.0.0.1:${s1Port}/cvmfs/${FQRN}`);
        for (const chart of ['svg.revisions', 'svg.image-bytes', 'svg.starts', 'svg.replication-lag']) {
          const box = await page.locator(chart).first().boundingBox();
          assert.ok(box !== null && box.width > 100 && box.height > 50, `${chart} is drawn`);
        }
        assert.deepEqual(outside, []);
        const shot = join(process.env.GRIDBOX_TEST_ARTIFACTS ?? '/var/tmp/gridbox-test-artifacts', 'dashboard.png');
        await mkdir(dirname(shot), { recursive: true });
        await page.screenshot({ path: shot, fullPage: true });
        t.diagnostic(`dashboard screenshot: ${shot}`);
      } finally {
        await browser.close();
      }
    } finally {
      for (const c of children) c.kill('SIGTERM');
      await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
      await reg.stop();
    }
  });
});
