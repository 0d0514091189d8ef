// The shims' runtime bundle (esbuild): built once per compiled tree and reused, runs the runtime like main.js,
// is never trusted once a compiled file it was made from changed (it hands over to main.js instead), keeps
// modules reached by dynamic import() lazy, and gives each module its own import.meta.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { withTempDir } from '../../testing/tmp.js';
import { bundleText, ensureRuntimeBundle } from './install-shims-bundle.js';
import { APPTAINER_COMPAT_VERSION } from './apptainer.js';

const version = (script: string): string =>
  spawnSync(process.execPath, [script, 'version'], { env: { PATH: '/usr/bin:/bin', GRIDBOX_ARGV0: 'apptainer' }, encoding: 'utf8' }).stdout.trim();

test('the runtime bundle is reused while fresh, and hands over to main.js once its sources changed', async () => {
  const bundle = await ensureRuntimeBundle();
  assert.ok(bundle !== undefined, 'the bundle can be built here');
  assert.equal(await ensureRuntimeBundle(), bundle);
  assert.equal(version(bundle), APPTAINER_COMPAT_VERSION);
  const text = readFileSync(bundle, 'utf8');
  const literal = `"${APPTAINER_COMPAT_VERSION}"`;
  assert.ok(text.includes(literal), 'the version string is in the bundle itself');
  await withTempDir(async (dir) => {
    // The bundle's own code runs while its manifest matches the compiled files (also from outside dist/)…
    const marked = join(dir, 'marked.cjs');
    writeFileSync(marked, text.replace(literal, '"0.0.0-from-the-bundle"'));
    assert.equal(version(marked), '0.0.0-from-the-bundle');
    // …and not once a size or mtime differs: then main.js answers.
    const stale = join(dir, 'stale.cjs');
    const staleText = text.replace(literal, '"0.0.0-from-the-bundle"').replace(/(const manifest = \[\["[^"]+",)(\d+)/, '$1$2999');
    assert.notEqual(staleText, text.replace(literal, '"0.0.0-from-the-bundle"'), 'the manifest was found and changed');
    writeFileSync(stale, staleText);
    assert.equal(version(stale), APPTAINER_COMPAT_VERSION);
  });
});

test('each bundled module keeps its own import.meta.url/dirname/filename; other import.meta uses refuse to bundle', async () => {
  await withTempDir(async (dir) => {
    mkdirSync(join(dir, 'lib/deep'), { recursive: true });
    writeFileSync(join(dir, 'data.txt'), 'found\n');
    writeFileSync(join(dir, 'lib/deep/where.js'), `import { readFileSync } from 'node:fs';
export const data = readFileSync(new URL('../../data.txt', import.meta.url), 'utf8').trim();
export const here = [import.meta.dirname, import.meta.filename];
`);
    writeFileSync(join(dir, 'entry.js'), `import { data, here } from './lib/deep/where.js';
console.log(JSON.stringify({ data, here, entry: import.meta.url }));
`);
    const { text, files } = await bundleText(join(dir, 'entry.js'), join(dir, 'main.js'));
    assert.deepEqual(files.sort(), [join(dir, 'entry.js'), join(dir, 'lib/deep/where.js')]);
    mkdirSync(join(dir, 'elsewhere'));
    writeFileSync(join(dir, 'elsewhere/b.cjs'), text);
    const r = spawnSync(process.execPath, [join(dir, 'elsewhere/b.cjs')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      data: 'found', here: [join(dir, 'lib/deep'), join(dir, 'lib/deep/where.js')], entry: pathToFileURL(join(dir, 'entry.js')).href,
    });
    // A native addon named by a relative path is required from its absolute place, wherever the bundle lives.
    writeFileSync(join(dir, 'lib/addon.cjs'), "exports.load = () => require('../build/addon.node');\n");
    writeFileSync(join(dir, 'native.js'), "import { load } from './lib/addon.cjs';\nconsole.log(typeof load);\n");
    const native = (await bundleText(join(dir, 'native.js'), join(dir, 'main.js'))).text;
    assert.ok(native.includes(`require(${JSON.stringify(join(dir, 'build/addon.node'))})`), native);
    writeFileSync(join(dir, 'resolve.js'), "console.log(import.meta.resolve('./x.js'));\n");
    await assert.rejects(bundleText(join(dir, 'resolve.js'), join(dir, 'main.js')), /import\.meta/);
  });
});

function userNamespacesMissing(): string | undefined {
  if (!existsSync('/usr/bin/bwrap')) return '/usr/bin/bwrap is not installed';
  if (!existsSync('/bin/busybox')) return 'busybox-static is not installed';
  const probe = spawnSync('/usr/bin/bwrap', ['--unshare-user', '--ro-bind', '/', '/', '/bin/true']);
  if (probe.status !== 0) return `user namespaces are unavailable: ${probe.stderr.toString().trim()}`;
  return undefined;
}

test('a plain exec through the bundle never loads better-sqlite3 (reached only by dynamic import), posting does', async (t) => {
  const missing = userNamespacesMissing();
  if (missing) { t.skip(missing); return; }
  const bundle = await ensureRuntimeBundle();
  assert.ok(bundle !== undefined);
  await withTempDir(async (dir) => {
    const img = join(dir, 'img');
    for (const d of ['bin', 'dev', 'proc', 'tmp']) mkdirSync(join(img, d), { recursive: true });
    copyFileSync('/bin/busybox', join(img, 'bin/busybox'));
    symlinkSync('busybox', join(img, 'bin/true'));
    // Preloaded before the bundle: lists every CommonJS module loaded when the runtime exits.
    const probe = join(dir, 'probe.cjs');
    writeFileSync(probe, "process.on('exit', () => require('node:fs').writeFileSync(process.env.PROBE_OUT, Object.keys(require.cache).join('\\n')));\n");
    const loaded = (extra: Record<string, string>): string[] => {
      const out = join(dir, `loaded-${Object.keys(extra).length}`);
      const r = spawnSync(process.execPath, ['-r', probe, bundle, 'exec', '-C', img, '/bin/true'], {
        env: { PATH: '/usr/bin:/bin', GRIDBOX_ARGV0: 'apptainer', GRIDBOX_ACCOUNTING_DB: join(dir, 'acct.db'), PROBE_OUT: out, ...extra },
        encoding: 'utf8', timeout: 60_000,
      });
      assert.equal(r.status, 0, r.stderr);
      return readFileSync(out, 'utf8').split('\n');
    };
    const plain = loaded({});
    assert.ok(plain.includes(bundle), 'the probe sees the modules loaded');
    assert.deepEqual(plain.filter((m) => m.includes('better-sqlite3')), []);
    // Posting starts (to a closed loopback port; the failure is swallowed) imports the accounting database.
    const posting = loaded({ GRIDBOX_ACCOUNTING_URL: 'http://127.0.0.1:1/' });
    assert.ok(posting.some((m) => m.includes('/node_modules/better-sqlite3/')), posting.join('\n'));
  });
});
