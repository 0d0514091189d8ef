import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RegistryClient, parseChallenge, parseDockerConfig } from './registry-client.js';
import { parseReference } from './reference.js';
import { flattenImage } from './pull.js';
import { digestOf } from './digest.js';
import { openContent, type FlatTree } from './flatten.js';
import { haveRegistry, startRegistry, type RegistryAuth, type TestRegistry } from '../testing/registry.js';
import { hostileImages } from '../testing/hostile-layers.js';
import { imageConfig, pushBlob, pushImage, pushIndex, standardLayers, GZ } from '../testing/images.js';
import { withTempDir } from '../testing/tmp.js';
import { isGridboxError } from '../errors.js';

const REPO = 'org/test';
const TAGS = ['latest', 'config-only', 'multi', 'latest-arm64'];

async function pushStandard(reg: TestRegistry): Promise<void> {
  const layers = await standardLayers();
  const env = ['PATH=/usr/local/bin:/usr/bin:/bin', 'GREETING=hello'];
  const amd = await pushImage(reg, REPO, 'latest', layers, imageConfig('amd64', env));
  await pushImage(reg, REPO, 'config-only', layers, imageConfig('amd64', [...env, 'EXTRA=1']));
  const arm = await pushImage(reg, REPO, 'latest-arm64', layers, imageConfig('arm64', env, { WorkingDir: '/arm' }));
  const att = await pushImage(reg, REPO, 'attestation', [{ data: (await standardLayers())[3].data, mediaType: GZ }], imageConfig('unknown', []));
  await pushIndex(reg, REPO, 'multi', [
    { ...att, platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } },
    { ...amd, platform: { os: 'linux', architecture: 'amd64' } },
    { ...arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ]);
}

async function withRegistry(t: TestContext, auth: RegistryAuth, fn: (reg: TestRegistry, dir: string) => Promise<void>): Promise<void> {
  if (!haveRegistry()) { t.skip('docker-registry not installed (apt-get install docker-registry)'); return; }
  await withTempDir(async (dir) => {
    const reg = await startRegistry(dir, { auth });
    try { await fn(reg, dir); } finally { await reg.stop(); }
  });
}

async function text(tree: FlatTree, path: string): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of openContent(tree.contents.get(path)!)) parts.push(c as Buffer);
  return Buffer.concat(parts).toString();
}

for (const auth of ['none', 'token'] as const) {
  test(`registry client pulls, selects platforms and flattens the test images (auth: ${auth})`, async (t) => {
    await withRegistry(t, auth, async (reg, dir) => {
      await pushStandard(reg);
      const client = new RegistryClient({ platform: { os: 'linux', architecture: 'amd64' } });
      const latest = await client.resolveImage(parseReference(`${reg.host}/${REPO}:latest`));
      assert.equal(latest.settings.workingDir, '/app');
      assert.deepEqual(latest.settings.entrypoint, ['/bin/sh', '-c']);
      assert.deepEqual(latest.settings.labels, { 'org.test.name': 'gridbox', 'org.test.v': '1' });
      const tree = await flattenImage(client, latest, { spoolDir: dir });
      const paths = new Set(tree.entries.map((e) => e.path));
      for (const p of ['app/hello.txt', 'app/v2.txt', 'opt/old/new.txt', 'app/grüße-ñ-日本.txt', 'usr/bin/suid-demo', 'root/secret']) assert.ok(paths.has(p), p);
      for (const p of ['app/to-delete.txt', 'app/data', 'opt/old/x', 'opt/old/sub', 'dev/null']) assert.ok(!paths.has(p), p);
      assert.equal(await text(tree, 'etc/hostname'), 'two\n');
      assert.equal(tree.entries.find((e) => e.path === 'usr/bin/suid-demo')?.mode, 0o755);
      assert.equal(tree.stats.devicesSkipped, 1);
      assert.deepEqual(tree.warnings, []);

      const multi = await client.resolveImage(parseReference(`${reg.host}/${REPO}:multi`));
      assert.equal(multi.manifestDigest, latest.digest, 'amd64 entry chosen, attestation skipped');
      assert.notEqual(multi.digest, multi.manifestDigest);
      const arm = await client.resolveImage(parseReference(`${reg.host}/${REPO}:multi`), { os: 'linux', architecture: 'arm64' });
      assert.equal(arm.settings.workingDir, '/arm');
      await assert.rejects(client.resolveImage(parseReference(`${reg.host}/${REPO}:multi`), { os: 'linux', architecture: 's390x' }), (e) => isGridboxError(e, 'OCI_PLATFORM') && /offered: linux\/amd64, linux\/arm64\/v8$/.test(e.message));

      const cfgOnly = await client.resolveImage(parseReference(`${reg.host}/${REPO}:config-only`));
      assert.deepEqual(cfgOnly.manifest.layers, latest.manifest.layers);
      assert.notEqual(cfgOnly.configDigest, latest.configDigest, 'a config-only change is a different image');

      assert.deepEqual(await client.listTags(reg.host, REPO), ['attestation', ...TAGS].sort());
      const byDigest = await client.getManifest(parseReference(`${reg.host}/${REPO}@${latest.digest}`));
      assert.equal(byDigest.digest, latest.digest);
    });
  });

  test(`a steady-state check costs one HEAD per tag and no GET (auth: ${auth})`, async (t) => {
    await withRegistry(t, auth, async (reg) => {
      await pushStandard(reg);
      const client = new RegistryClient();
      const first = new Map<string, string>();
      for (const tag of TAGS) first.set(tag, (await client.headManifest(parseReference(`${reg.host}/${REPO}:${tag}`))).digest);
      // Lines reach the access log through a pipe: wait until it is quiet so the first round's last
      // HEADs are not counted in the second.
      let before = (await reg.accessLog()).length;
      for (let quiet = 0, i = 0; quiet < 3 && i < 50; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const now = (await reg.accessLog()).length;
        quiet = now === before ? quiet + 1 : 0;
        before = now;
      }
      const counted = { ...client.counters.byMethod };
      const tokens = client.counters.tokens;
      for (const tag of TAGS) assert.equal((await client.headManifest(parseReference(`${reg.host}/${REPO}:${tag}`))).digest, first.get(tag));
      // The access log reaches the file through a pipe: wait until the lines are there, then a little more
      // so an unexpected extra request would show too.
      let seen = (await reg.accessLog()).slice(before);
      for (let i = 0; i < 40 && seen.length < TAGS.length; i++) { await new Promise((r) => setTimeout(r, 50)); seen = (await reg.accessLog()).slice(before); }
      await new Promise((r) => setTimeout(r, 150));
      seen = (await reg.accessLog()).slice(before);
      assert.deepEqual(seen.map((r) => [r.method, r.status]), TAGS.map(() => ['HEAD', 200]));
      assert.equal((client.counters.byMethod.HEAD ?? 0) - (counted.HEAD ?? 0), TAGS.length);
      assert.equal(client.counters.byMethod.GET ?? 0, counted.GET ?? 0);
      assert.equal(client.counters.tokens, tokens, 'token reused from cache');
    });
  });
}

test('registry client authenticates with Basic credentials from a docker config', async (t) => {
  await withRegistry(t, 'htpasswd', async (reg) => {
    await pushImage(reg, REPO, 'v1', [(await standardLayers())[3]], imageConfig('amd64', []));
    const ref = parseReference(`${reg.host}/${REPO}:v1`);
    await assert.rejects(new RegistryClient().headManifest(ref), (e) => isGridboxError(e, 'OCI_AUTH'));
    const creds = parseDockerConfig(JSON.stringify({ auths: { [`http://${reg.host}`]: { auth: Buffer.from('tester:s3cret').toString('base64') } } }));
    const head = await new RegistryClient({ credentials: creds }).headManifest(ref);
    assert.match(head.digest, /^sha256:/);
  });
});

test('malicious layers are each refused with a clear message and other images are unaffected', async (t) => {
  await withRegistry(t, 'none', async (reg, dir) => {
    const evil = await hostileImages();
    for (const [tag, img] of Object.entries(evil)) await pushImage(reg, 'org/evil', tag, img.layers, imageConfig('amd64', []));
    await pushStandard(reg);
    const client = new RegistryClient();
    const opts = { spoolDir: dir, decompress: { maxBytes: 8 * 2 ** 20 }, tar: { maxPaxBytes: 64 * 1024 } };
    for (const [tag, img] of Object.entries(evil)) {
      const image = await client.resolveImage(parseReference(`${reg.host}/org/evil:${tag}`));
      const refused: string[] = image.manifest.layers.map((l) => String(l.digest));
      await assert.rejects(flattenImage(client, image, opts), (e) => isGridboxError(e, img.code)
        && (img.rule === undefined || (e.fields.rule === img.rule && refused.includes(e.fields.layer as string) && e.message.includes(e.fields.layer as string))), tag);
    }
    const good = await flattenImage(client, await client.resolveImage(parseReference(`${reg.host}/${REPO}:latest`)), opts);
    assert.deepEqual(good.warnings, []);
    assert.ok(good.entries.some((e) => e.path === 'app/v2.txt'));
  });
});

test('a pull-through mirror is used first and the registry when the mirror is down', async (t) => {
  await withRegistry(t, 'none', async (upstream, dir) => {
    await pushStandard(upstream);
    const mirror = await startRegistry(`${dir}/mirror`, { proxyOf: upstream.url });
    try {
      const client = new RegistryClient({ mirrors: { [upstream.host]: mirror.url } });
      const img = await client.resolveImage(parseReference(`${upstream.host}/${REPO}:latest`));
      assert.ok((await mirror.accessLog()).some((r) => r.method === 'GET' && r.path.includes(img.configDigest)));
      const down = new RegistryClient({ mirrors: { [upstream.host]: 'http://127.0.0.1:1' }, retries: 0 });
      assert.equal((await down.headManifest(parseReference(`${upstream.host}/${REPO}:latest`))).digest, img.digest);
    } finally { await mirror.stop(); }
  });
});

async function fakeServer(handler: (req: IncomingMessage, res: ServerResponse) => void, host = '127.0.0.1'): Promise<{ host: string; close: () => Promise<void> }> {
  const s = createServer(handler);
  await new Promise<void>((resolve) => s.listen(0, host, resolve));
  return { host: `${host}:${(s.address() as AddressInfo).port}`, close: () => new Promise((r) => { s.closeAllConnections(); s.close(() => r()); }) };
}

test('blob redirects to another host drop Authorization; 429 Retry-After is honoured; bad blobs fail verification', async () => {
  const blob = Buffer.from('blob bytes');
  const digest = digestOf(blob);
  const seenAuth: (string | undefined)[] = [];
  const cdn = await fakeServer((req, res) => { seenAuth.push(req.headers.authorization); res.end(req.url === '/bad' ? Buffer.from('tampered!!') : blob); }, '127.0.0.2');
  let tries = 0;
  const reg = await fakeServer((req, res) => {
    if (!req.headers.authorization) { res.writeHead(401, { 'www-authenticate': 'Basic realm="x"' }).end(); return; }
    if (req.url?.endsWith('/tags/list?n=1000')) { res.writeHead(200, { link: '</v2/r/tags/list?n=1000&last=b>; rel="next"' }).end('{"tags":["b","a"]}'); return; }
    if (req.url?.includes('last=b')) { res.end('{"tags":["c"]}'); return; }
    if (req.url?.includes('busy') && tries++ < 2) { res.writeHead(429, { 'retry-after': '0' }).end(); return; }
    res.writeHead(307, { location: `http://${cdn.host}/${req.url?.includes('bad') ? 'bad' : 'good'}` }).end();
  });
  try {
    const client = new RegistryClient({ credentials: () => ({ username: 'u', password: 'p' }), backoffMs: 1 });
    assert.equal((await client.fetchBlob(reg.host, 'r', { digest, size: blob.length }, 1024)).toString(), 'blob bytes');
    assert.deepEqual(seenAuth, [undefined]);
    assert.equal((await client.fetchBlob(reg.host, 'busy', { digest, size: blob.length }, 1024)).length, blob.length);
    assert.equal(tries, 3);
    await assert.rejects(client.fetchBlob(reg.host, 'bad', { digest, size: blob.length }, 1024), (e) => isGridboxError(e, 'OCI_DIGEST_MISMATCH') && /expected digest/.test(e.message));
    assert.deepEqual(await client.listTags(reg.host, 'r'), ['a', 'b', 'c']);
    const slow = new RegistryClient({ credentials: () => ({ username: 'u', password: 'p' }), maxRetryAfterMs: 10 });
    tries = -100;
    const limited = await fakeServer((_req, res) => { res.writeHead(429, { 'retry-after': '3600' }).end(); });
    try {
      await assert.rejects(slow.fetchBlob(limited.host, 'busy', { digest, size: blob.length }, 1024), (e) => isGridboxError(e, 'OCI_RATE_LIMITED'));
    } finally { await limited.close(); }
  } finally { await reg.close(); await cdn.close(); }
});

test('parseChallenge() reads quoted parameters with commas and spaces', () => {
  assert.deepEqual(parseChallenge('Bearer realm="http://a/token",service="reg",scope="repository:a/b:pull,push repository:c:pull"'),
    { scheme: 'bearer', realm: 'http://a/token', service: 'reg', scope: 'repository:a/b:pull,push repository:c:pull' });
  assert.equal(parseChallenge('Negotiate abc'), undefined);
});
