// End to end: images the test builds are pushed to a real docker-registry on 127.0.0.1, `gridbox sync`
// publishes them, and the published trees are read back through the gridbox client (served on
// loopback) and run with the runtime. Also: steady state counted at the registry, malicious layers,
// dropped images and the grace period, and token auth.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { GZ, buildTar, gzip, imageConfig, pushImage, pushIndex, sha256, standardLayers } from '../testing/images.js';
import { haveRegistry, startRegistry, type RegistryAuth, type TestRegistry } from '../testing/registry.js';
import { withTempDir } from '../testing/tmp.js';
import { harmlessImage, hostileImages } from '../testing/hostile-layers.js';
import { listenSrv } from '../server/srv-handler.js';
import { RegistryClient } from '../oci/registry-client.js';
import { readHead } from '../publish/head.js';
import { readSettings, repoLayout } from '../publish/repo-layout.js';
import { parseImageList } from './image-list.js';
import { readSyncState, syncCycle, type CycleReport, type SyncOptions } from './reconcile.js';

const FQRN = 'images.example.org';
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const run = promisify(execFile);

async function gridbox(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [MAIN, ...args], { maxBuffer: 64 << 20, env: { ...process.env, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

async function withRegistry(t: TestContext, auth: RegistryAuth, fn: (reg: TestRegistry, dir: string) => Promise<void>): Promise<void> {
  if (!haveRegistry()) { t.skip('docker-registry not installed (apt-get install docker-registry)'); return; }
  await withTempDir(async (dir) => {
    const reg = await startRegistry(dir, { auth });
    try { await fn(reg, dir); } finally { await reg.stop(); }
  });
}

/** A runnable image: busybox as /bin/sh plus a file, so a job can run inside the published tree. */
async function busyboxLayer(): Promise<Buffer> {
  const bb = await readFile('/bin/busybox');
  return gzip(await buildTar([
    { name: 'bin/', type: 'directory' }, { name: 'bin/busybox', content: bb, mode: 0o755 },
    { name: 'bin/sh', type: 'symlink', linkname: 'busybox' }, { name: 'app/', type: 'directory' }, { name: 'app/data.txt', content: 'payload\n' },
  ]));
}

/** Registry requests logged since `from`, waiting until the log has at least `atLeast` more lines. */
async function requestsSince(reg: TestRegistry, from: number, atLeast: number): Promise<{ method: string; path: string; status: number }[]> {
  let seen = (await reg.accessLog()).slice(from);
  for (let i = 0; i < 60 && seen.length < atLeast; i++) { await new Promise((r) => setTimeout(r, 50)); seen = (await reg.accessLog()).slice(from); }
  await new Promise((r) => setTimeout(r, 200));
  return (await reg.accessLog()).slice(from);
}

test('sync publishes test images, keeps a steady state for one HEAD per tag, and drops names then trees', { timeout: 300_000 }, async (t) => {
  await withRegistry(t, 'none', async (reg, dir) => {
    if (!(await gridbox(['--help'])).stdout.includes('sync')) { t.skip('CLI main.js not built'); return; }
    const root = join(dir, 'repo');
    assert.equal((await gridbox(['mkfs', FQRN, '--root', root])).code, 0);
    const env = ['PATH=/usr/local/bin:/usr/bin:/bin', 'GREETING=hello'];
    const layers = await standardLayers();
    const amd = await pushImage(reg, 'org/test', 'latest', layers, imageConfig('amd64', env));
    await pushImage(reg, 'org/test', 'config-only', layers, imageConfig('amd64', [...env, 'EXTRA=1']));
    const arm = await pushImage(reg, 'org/test', 'arm', layers, imageConfig('arm64', env, { WorkingDir: '/arm' }));
    await pushIndex(reg, 'org/test', 'multi', [
      { ...amd, platform: { os: 'linux', architecture: 'amd64' } }, { ...arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    ]);
    await pushImage(reg, 'org/job', '1', [{ data: await busyboxLayer(), mediaType: GZ }],
      { architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/bin', 'GREETING=hi'], Entrypoint: ['/bin/sh', '-c'], Cmd: ['echo "$GREETING from $(pwd) $(cat data.txt)"'], WorkingDir: '/app' } });
    const list = join(dir, 'docker_images.txt');
    const names = ['org/test:latest', 'org/test:config-only', 'org/test:multi', 'org/job:1'].map((n) => `${reg.host}/${n}`);
    await writeFile(list, `# test images\n${names.join('\n')}\n\n`);
    const notify = join(dir, 'notify.jsonl');

    // Cycle 1: everything is new.
    const c1 = await gridbox(['sync', list, '--repo', FQRN, '--root', root, '--platform', 'linux/amd64', '--notify', notify]);
    assert.equal(c1.code, 0, c1.stderr);
    assert.match(c1.stdout, /^new +127\.0\.0\.1:\d+\/org\/test:latest -> \.images\//m);
    const layout = repoLayout(root, FQRN);
    const state = await readSyncState(layout);
    const tree = (n: string): string => state.images[`${reg.host}/${n}`].tree;
    assert.notEqual(tree('org/test:latest'), tree('org/test:config-only'), 'a config-only change gets its own tree');
    assert.equal(tree('org/test:latest'), tree('org/test:multi'), 'the index resolves to the amd64 manifest');
    const revision1 = (await readHead(layout)).revision;
    const notes = (await readFile(notify, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { action: string; status?: string });
    assert.deepEqual(notes.map((n) => n.action), ['start_cycle', 'image', 'image', 'image', 'image', 'publish', 'end_cycle']);

    // Published trees, read through the client.
    const server = await listenSrv({ srvDir: join(root, 'srv') });
    const dest = join(dir, 'job');
    try {
      const common = ['--server', server.url, '--keys', join(root, 'keys'), '--cache', join(dir, 'cache')];
      const cat = async (p: string): Promise<string> => { const r = await gridbox(['cat', FQRN, p, ...common]); assert.equal(r.code, 0, `${p}: ${r.stderr}`); return r.stdout; };
      const ls = async (p: string): Promise<string> => (await gridbox(['ls', FQRN, p, ...common])).stdout;
      const t1 = `/${tree('org/test:latest')}`;
      assert.match(await ls(`/${reg.host}/org`), new RegExp(`test:latest -> \\.\\./\\.\\./${tree('org/test:latest').replaceAll('.', '\\.')}$`, 'm'));
      assert.equal(await cat(`${t1}/app/hello.txt`), 'hello world\n');
      assert.equal(await cat(`${t1}/app/${'d'.repeat(60)}/${'f'.repeat(60)}.txt`), 'long name\n');
      assert.equal(await cat(`${t1}/app/grüße-ñ-日本.txt`), 'utf8\n');
      assert.equal(await cat(`${t1}/etc/hostname`), 'two\n');
      assert.equal(await cat(`${t1}/opt/old/new.txt`), 'new');
      const app = await ls(`${t1}/app`);
      assert.doesNotMatch(app, /to-delete|\bdata\b/, 'whiteouts removed lower-layer entries');
      assert.match(app, /^-rw-r--r-- +2 .* hello\.txt$/m, 'hard link kept within the directory');
      assert.doesNotMatch(await ls(`${t1}/opt/old`), /\bx$|\bsub$/m, 'opaque directory hid the lower layer');
      assert.match(await ls(`${t1}/usr/bin`), /^-rwxr-xr-x .* suid-demo$/m, 'setuid stripped');
      assert.doesNotMatch(await ls(`${t1}/dev`), /null/, 'device skipped by the default policy');
      assert.match(await ls(`${t1}/root`), /^-rw-r--r-- .* secret$/m, 'owner-readable file readable by job users');
      for (const m of ['cvmfs', 'srv', 'proc', 'sys', 'tmp', 'home']) assert.match(await ls(t1), new RegExp(`^d.* ${m}$`, 'm'));
      assert.equal(await cat(`${t1}/etc/resolv.conf`), '');
      assert.equal(await cat(`${t1}/.singularity.d/workdir`), '/app\n');
      assert.deepEqual(JSON.parse(await cat(`${t1}/.singularity.d/labels.json`)), { 'org.test.name': 'gridbox', 'org.test.v': '1' });
      assert.match(await cat(`${t1}/.singularity.d/env/90-environment.sh`), /^export GREETING="\$\{GREETING:-hello\}"$/m);
      assert.match(await cat(`/${tree('org/test:config-only')}/.singularity.d/env/90-environment.sh`), /EXTRA:-1/);

      // A job runs inside a published tree with the runtime.
      // (The parent is fetched: `get` of a nested-catalog root itself trips over its mountpoint.)
      const got = await gridbox(['get', FQRN, `/${dirname(tree('org/job:1'))}`, dest, '--quiet', ...common]);
      assert.equal(got.code, 0, got.stderr);
    } finally {
      await server.close();
    }
    const job = await gridbox(['run', join(dest, tree('org/job:1').split('/').pop()!)], { GREETING: '' });
    if (job.code !== 0 && /user namespace|bwrap|LAUNCH_NO/i.test(job.stderr)) t.diagnostic(`runtime unavailable here: ${job.stderr}`);
    else assert.equal(job.stdout.trim(), 'hi from /app payload', job.stderr);

    // Cycle 2: steady state — one HEAD per tag, no GET, no publish.
    const before = (await reg.accessLog()).length;
    const c2 = await gridbox(['sync', list, '--repo', FQRN, '--root', root, '--platform', 'linux/amd64']);
    assert.equal(c2.code, 0, c2.stderr);
    assert.match(c2.stdout, /nothing to publish/);
    const seen = (await requestsSince(reg, before, names.length)).filter((r) => r.path !== '/v2/');
    assert.equal(seen.filter((r) => r.method === 'HEAD').length, names.length, JSON.stringify(seen));
    assert.equal(seen.filter((r) => r.method === 'GET').length, 0, JSON.stringify(seen));
    assert.equal((await readHead(layout)).revision, revision1);

    // Cycle 3: a tag dropped from the list loses its name at once; its tree waits for the grace period.
    await writeFile(list, names.filter((n) => !n.endsWith('config-only')).join('\n'));
    const settings = await readSettings(layout);
    const client = new RegistryClient({ platform: { os: 'linux', architecture: 'amd64' } });
    const base: SyncOptions = { layout, settings, client, platform: { os: 'linux', architecture: 'amd64' } };
    const list3 = parseImageList(await readFile(list, 'utf8'));
    const r3 = await syncCycle(list3, base);
    assert.deepEqual(r3.outcomes.filter((o) => o.status === 'removed').map((o) => o.name), [`${reg.host}/org/test:config-only`]);
    assert.equal(r3.treesRemoved.length, 0);
    const s3 = await readSyncState(layout);
    assert.ok(s3.trees[tree('org/test:config-only')].unreferencedSince !== undefined);
    // Cycle 4, past the grace period: the tree goes too.
    const r4 = await syncCycle(list3, { ...base, now: () => Date.now() + 3 * 86_400_000 });
    assert.deepEqual(r4.treesRemoved, [tree('org/test:config-only')]);
    assert.equal((await readHead(layout)).revision, revision1 + 2);
  });
});

test('hostile layers fail their image by default, naming image, layer, entry and rule; the rest of the cycle publishes; --lenient skips the entries', { timeout: 300_000 }, async (t) => {
  await withRegistry(t, 'none', async (reg, dir) => {
    const root = join(dir, 'repo');
    assert.equal((await gridbox(['mkfs', FQRN, '--root', root])).code, 0);
    const evil = await hostileImages();
    const layerDigests: Record<string, string[]> = {};
    for (const [tag, img] of Object.entries(evil)) {
      await pushImage(reg, 'org/evil', tag, img.layers, imageConfig('amd64', [`TAG=${tag}`])); // own configs: trees are keyed by config digest
      layerDigests[tag] = img.layers.map((l) => sha256(l.data));
    }
    const harmless = await harmlessImage();
    await pushImage(reg, 'org/harmless', '1', harmless.layers, imageConfig('amd64', ['H=1']));
    await pushImage(reg, 'org/good', '1', [{ data: await busyboxLayer(), mediaType: GZ }], imageConfig('amd64', ['A=1']));
    const layout = repoLayout(root, FQRN);
    const list = join(dir, 'docker_images.txt');
    const ruleTags = Object.keys(evil).filter((tag) => evil[tag].rule !== undefined);
    await writeFile(list, [...ruleTags.map((tag) => `${reg.host}/org/evil:${tag}`), `${reg.host}/org/harmless:1`, `${reg.host}/org/good:1`].join('\n') + '\n');
    const cli = await gridbox(['sync', list, '--repo', FQRN, '--root', root, '--json']);
    assert.equal(cli.code, 1, cli.stderr);
    const report = JSON.parse(cli.stdout) as CycleReport;
    const byTag = new Map(report.outcomes.map((o) => [o.name.replace(/^.*:/, ''), o]));
    assert.equal(byTag.get('1')?.status, 'new');
    assert.equal(report.outcomes.filter((o) => o.status === 'new').length, 2, 'harmless and good published');
    for (const [tag, img] of Object.entries(evil)) {
      if (img.rule === undefined) continue; // limits: checked below through the library
      const o = byTag.get(tag)!;
      assert.equal(o.status, 'failed', `${tag}: ${JSON.stringify(o)}`);
      assert.ok(o.refused && layerDigests[tag].includes(o.refused.layer!), `${tag}: ${JSON.stringify(o.refused)}`);
      assert.deepEqual([o.refused.code, o.refused.entry, o.refused.rule], ['OCI_UNSAFE_PATH', img.entry, img.rule], tag);
      for (const part of [`${reg.host}/org/evil:${tag}`, o.refused.layer!, JSON.stringify(img.entry), `rule ${img.rule}`]) assert.ok(o.error!.includes(part), `${tag}: ${part} not in ${o.error}`);
    }
    // Corrupt and over-limit layers fail too, under the library's limits.
    const limited = await syncCycle(parseImageList(`${reg.host}/org/evil:*\n${reg.host}/org/harmless:1\n${reg.host}/org/good:1\n`), {
      layout, settings: await readSettings(layout), client: new RegistryClient(), flatten: { decompress: { maxBytes: 8 * 2 ** 20 }, tar: { maxPaxBytes: 64 * 1024 } },
    });
    for (const o of limited.outcomes) {
      const tag = o.name.replace(/^.*:/, '');
      assert.deepEqual([o.status, o.refused?.code], tag === '1' ? ['unchanged', undefined] : ['failed', evil[tag].code], JSON.stringify(o));
    }

    const state = await readSyncState(layout);
    assert.deepEqual(Object.keys(state.images).sort(), [`${reg.host}/org/good:1`, `${reg.host}/org/harmless:1`]);
    for (const escaped of ['escape.txt', 'planted', 'cron.d/evil']) {
      for (const base of [dir, join(dir, '..'), root, join(root, 'srv')]) assert.equal(existsSync(join(base, escaped)), false, `${base}/${escaped}`);
    }
    const server = await listenSrv({ srvDir: join(root, 'srv') });
    try {
      const common = ['--server', server.url, '--keys', join(root, 'keys'), '--cache', join(dir, 'cache')];
      const rootLs = (await gridbox(['ls', FQRN, '/', ...common])).stdout.trim().split('\n').map((l) => l.split(' ').pop());
      assert.deepEqual(rootLs.sort(), ['.images', reg.host].sort(), 'nothing outside the image trees and names');
      const h = `/${state.images[`${reg.host}/org/harmless:1`].tree}`;
      for (const [p, content] of Object.entries(harmless.files)) assert.equal((await gridbox(['cat', FQRN, `${h}/${p}`, ...common])).stdout, content, p);

      // The client follows the public name's symlink (and links inside the image) within the repository.
      const name = `/${reg.host}/org/harmless:1`;
      const on = (cmd: string, p: string, ...extra: string[]) => gridbox([cmd, FQRN, p, ...extra, ...common]);
      assert.equal((await on('cat', `${name}/etc/os-release`)).stdout, harmless.files['etc/os-release']);
      const etc = await on('ls', `${name}/etc`);
      assert.equal(etc.code, 0, etc.stderr);
      assert.match(etc.stdout, / os-release$/m);
      assert.match(etc.stdout, /^l.* localtime -> \/usr\/share\/zoneinfo\/Etc\/UTC$/m);
      assert.match((await on('ls', name)).stdout, /^l.* harmless:1 -> (\.\.\/)+\.images\/[0-9a-f]{2}\/[0-9a-f]+$/m, 'the name itself, like ls -l');
      assert.match((await on('ls', `${name}/`)).stdout, /^d.* etc$/m, 'a trailing "/" lists the image');
      assert.match((await on('stat', name)).stdout, /^Type: +symlink$/m);
      assert.match((await on('stat', name, '-L')).stdout, /^Type: +dir$/m);
      assert.match((await on('stat', `${name}/lib/libx.so`)).stdout, /^File: +\/\.images\/.*\/usr\/lib\/libx\.so$/m);
      const got = await on('get', `${name}/etc`, join(dir, 'got-etc'), '--quiet');
      assert.equal(got.code, 0, got.stderr);
      assert.equal(await readFile(join(dir, 'got-etc', 'os-release'), 'utf8'), harmless.files['etc/os-release']);
      const loop = await on('cat', `${name}/loop1`);
      assert.deepEqual([loop.code, /Too many levels of symbolic links/.test(loop.stderr)], [1, true], loop.stderr);
      for (const p of [`${name}/dangling`, `${name}/etc/localtime`, `${name}/../../../../../../../etc/passwd`, `${name}/abs/hostname`]) {
        // An image's absolute link and any climb above the top resolve inside the repository, where these do not exist.
        const r = await on('cat', p);
        assert.deepEqual([r.code, r.stdout], [1, ''], `${p}: ${r.stderr}`);
        assert.match(r.stderr, /No such file or directory/, p);
      }

      // --lenient: the same images publish with the hostile entries skipped and warned about.
      const lenient = await gridbox(['sync', list, '--repo', FQRN, '--root', root, '--lenient', '--json']);
      const lr = JSON.parse(lenient.stdout) as CycleReport;
      const lstate = await readSyncState(layout);
      for (const tag of ruleTags) {
        const img = evil[tag];
        const o = lr.outcomes.find((x) => x.name.endsWith(`:${tag}`))!;
        assert.equal(o.status, 'new', `${tag}: ${JSON.stringify(o)}`);
        assert.equal(o.warnings?.length, 1, tag);
        assert.match(o.warnings![0], new RegExp(`rule ${img.rule}`));
        const tree = `/${lstate.images[`${reg.host}/org/evil:${tag}`].tree}`;
        const ls = (await gridbox(['ls', FQRN, tree, ...common])).stdout;
        assert.match(ls, / ok\.txt$/m, tag);
        assert.doesNotMatch(ls, /escape|shadow/, tag);
      }
      assert.match(lenient.stderr, /warning: .*org\/evil:dotdot: .*rule path-traversal/);
    } finally {
      await server.close();
    }
  });
});

test('sync pulls through token auth and a dry run publishes nothing', { timeout: 120_000 }, async (t) => {
  await withRegistry(t, 'token', async (reg, dir) => {
    const root = join(dir, 'repo');
    assert.equal((await gridbox(['mkfs', FQRN, '--root', root])).code, 0);
    await pushImage(reg, 'org/private', 'v1', [{ data: await busyboxLayer(), mediaType: GZ }], imageConfig('amd64', ['X=1']));
    const list = join(dir, 'wishlist.yaml');
    await writeFile(list, `version: 1\ninput:\n  - 'http://${reg.host}/org/private:v1'\noutput_format: '$(scheme)://mirror/$(repository):$(tag)'\n`);
    const auth = join(dir, 'auth.json');
    await writeFile(auth, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${reg.username}:${reg.password}`).toString('base64') } } }));
    const layout = repoLayout(root, FQRN);
    const rev0 = (await readHead(layout)).revision;
    const dry = await gridbox(['sync', list, '--repo', FQRN, '--root', root, '--auth', auth, '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^new +mirror\/org\/private:v1$/m);
    assert.equal((await readHead(layout)).revision, rev0);
    const real = await gridbox(['sync', list, '--repo', FQRN, '--root', root, '--auth', auth, '--json']);
    assert.equal(real.code, 0, real.stderr);
    const rep = JSON.parse(real.stdout) as { outcomes: { name: string; status: string }[] };
    assert.deepEqual(rep.outcomes.map((o) => [o.name, o.status]), [['mirror/org/private:v1', 'new']]);
    assert.equal((await readHead(layout)).revision, rev0 + 1);
  });
});

test('a re-sync after only the top layer changed reads neither the lower layer nor stores its files again', { timeout: 120_000 }, async (t) => {
  await withRegistry(t, 'none', async (reg, dir) => {
    const root = join(dir, 'repo');
    assert.equal((await gridbox(['mkfs', FQRN, '--root', root])).code, 0);
    const base = await busyboxLayer();
    const top = async (text: string): Promise<Buffer> => gzip(await buildTar([{ name: 'etc/', type: 'directory' }, { name: 'etc/motd', content: text }, { name: 'app/data.txt', content: `${text} data\n` }]));
    await pushImage(reg, 'org/layers', '1', [{ data: base, mediaType: GZ }, { data: await top('one'), mediaType: GZ }], imageConfig('amd64', ['V=1']));
    const layout = repoLayout(root, FQRN);
    const opts: SyncOptions = { layout, settings: await readSettings(layout), client: new RegistryClient() };
    const list = parseImageList(`${reg.host}/org/layers:1\n`);
    const r1 = await syncCycle(list, opts);
    assert.equal(r1.failed, false, JSON.stringify(r1.outcomes));
    assert.ok(r1.published!.objectsWritten >= 2, 'busybox and the top layer\'s files were stored');

    await pushImage(reg, 'org/layers', '1', [{ data: base, mediaType: GZ }, { data: await top('two'), mediaType: GZ }], imageConfig('amd64', ['V=2']));
    const before = (await reg.accessLog()).length;
    const r2 = await syncCycle(list, opts);
    assert.equal(r2.failed, false, JSON.stringify(r2.outcomes));
    const blobGets = (await requestsSince(reg, before, 3)).filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
    assert.equal(blobGets.some((r) => r.path.endsWith(sha256(base))), false, `base layer downloaded again: ${JSON.stringify(blobGets)}`);
    assert.equal(blobGets.length, 2, 'the config and the new top layer');
    assert.equal(r2.published!.filesReused, 1, 'bin/busybox taken from the remembered base layer (data.txt is shadowed by the top layer)');

    const tree = (await readSyncState(layout)).images[`${reg.host}/org/layers:1`].tree;
    const server = await listenSrv({ srvDir: join(root, 'srv') });
    try {
      const common = ['--server', server.url, '--keys', join(root, 'keys'), '--cache', join(dir, 'cache')];
      const cat = async (p: string): Promise<string> => { const r = await gridbox(['cat', FQRN, `/${tree}/${p}`, ...common]); assert.equal(r.code, 0, `${p}: ${r.stderr}`); return r.stdout; };
      assert.equal(await cat('etc/motd'), 'two');
      assert.equal(await cat('app/data.txt'), 'two data\n');
      const ls = await gridbox(['ls', FQRN, `/${tree}/bin`, ...common]);
      assert.match(ls.stdout, new RegExp(`\\b${(await readFile('/bin/busybox')).length}\\b.* busybox$`, 'm'), 'busybox with its full size');
    } finally {
      await server.close();
    }
  });
});

test('a cycle whose only image fails to flatten publishes no revision and keeps the old name', { timeout: 120_000 }, async (t) => {
  await withRegistry(t, 'none', async (reg, dir) => {
    const root = join(dir, 'repo');
    assert.equal((await gridbox(['mkfs', FQRN, '--root', root])).code, 0);
    const layout = repoLayout(root, FQRN);
    const opts: SyncOptions = { layout, settings: await readSettings(layout), client: new RegistryClient() };
    const list = parseImageList(`${reg.host}/org/flaky:1\n`);
    await pushImage(reg, 'org/flaky', '1', [{ data: await busyboxLayer(), mediaType: GZ }], imageConfig('amd64', ['A=1']));
    assert.equal((await syncCycle(list, opts)).failed, false);
    const good = await readSyncState(layout);
    const rev = (await readHead(layout)).revision;
    await pushImage(reg, 'org/flaky', '1', (await hostileImages()).dotdot.layers, imageConfig('amd64', ['A=2']));
    const r = await syncCycle(list, opts);
    assert.equal(r.failed, true);
    assert.equal(r.outcomes[0].status, 'failed');
    assert.equal(r.published, undefined);
    assert.equal((await readHead(layout)).revision, rev, 'no empty revision');
    assert.deepEqual((await readSyncState(layout)).images, good.images, 'the name keeps its working tree');
  });
});
