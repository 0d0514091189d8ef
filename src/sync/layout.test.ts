// Tests for the image layout: tree paths, relative public symlinks, and the generated `.singularity.d`
// scripts, which are run with real shells (dash, busybox, bash) to prove the quoting, not just compared
// as strings; plus the mountpoints and empty files every image gets (runtime-contract §3.4-3.5).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { Entry } from '../fstree/entry.js';
import { ACTION_SCRIPT, planEnv, shellEnv } from '../launcher/container-env.js';
import type { Digest } from '../oci/digest.js';
import type { FlatTree } from '../oci/flatten.js';
import type { RuntimeSettings } from '../oci/image.js';
import { withTempDir } from '../testing/tmp.js';
import { EMPTY_FILES, envScript, imageItems, imageTreePath, MOUNTPOINTS, relativeTarget, runscript } from './layout.js';
import type { ChangeItem } from '../publish/changeset.js';

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const BUSYBOX = '/bin/busybox';

/** The POSIX shells an image's /bin/sh may be; bash because CentOS-like images use it. */
const SHELLS: [string, string[]][] = [['dash', ['/bin/dash']], ['busybox sh', [BUSYBOX, 'sh']], ['bash', ['/usr/bin/bash', '--norc', '--noprofile']]];

function availableShells(t: TestContext): [string, string[]][] {
  const found = SHELLS.filter(([, argv]) => existsSync(argv[0]));
  if (!found.some(([name]) => name !== 'bash')) t.skip('neither dash nor busybox-static is installed (scripts/deps.sh installs busybox-static)');
  return found;
}

function sha256Digest(bytes: string): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
}

/** Sources `script` in `shell` with exactly `preset` as environment, returns the exported environment. */
function sourceEnv(shell: string[], script: string, preset: Record<string, string>): Record<string, string> {
  const r = spawnSync(shell[0], [...shell.slice(1), '-c', '. "$1" && exec /usr/bin/env -0', 'sh', script], { env: preset, encoding: 'utf8' });
  assert.equal(r.status, 0, `${shell.join(' ')} failed: ${r.stderr}`);
  assert.equal(r.stderr, '', `${shell.join(' ')} printed to stderr`);
  const out: Record<string, string> = {};
  for (const kv of r.stdout.split('\0')) {
    if (kv === '') continue;
    const eq = kv.indexOf('=');
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

interface EnvCase {
  what: string;
  env: string[];
  preset?: Record<string, string>;
  /** Variable → value after sourcing; undefined means "not exported". */
  want: Record<string, string | undefined>;
}

const TRICKY = ['it\'s "quoted"', '$HOME and `id` and $(id) and ${X:-y}', 'back\\slash\\n\\', 'x}y{z}', 'line1\nline2\n', 'k=v=w', ' lead and trail ', '*', "'", '"', '\\', '!event', '~', `"'`, "\\'", "'}'", `x"y'z\\`, '"\'"\'"', '}}}{{{'];

const ENV_CASES: EnvCase[] = [
  { what: 'a plain value', env: ['A=1'], want: { A: '1' } },
  { what: 'shell-special values stay literal', env: TRICKY.map((v, i) => `T${i}=${v}`), want: Object.fromEntries(TRICKY.map((v, i) => [`T${i}`, v])) },
  { what: 'an empty value and a name without "="', env: ['EMPTY=', 'NOEQ'], want: { EMPTY: '', NOEQ: '' } },
  { what: 'names that are not shell identifiers are skipped', env: ['1BAD=x', 'BAD-NAME=x', 'WITH SPACE=x', '=x', 'OK_1=y'], want: { '1BAD': undefined, 'BAD-NAME': undefined, 'WITH SPACE': undefined, OK_1: 'y' } },
  { what: 'a repeated name keeps its last value', env: ['R=first', 'R=second'], want: { R: 'second' } },
  { what: 'a value already set wins over the image default', env: ['A=image'], preset: { A: 'runtime' }, want: { A: 'runtime' } },
  { what: 'an empty preset value takes the image default (":-")', env: ['A=image'], preset: { A: '' }, want: { A: 'image' } },
  { what: 'HOME set by the runtime beats the image HOME', env: ['HOME=/root'], preset: { HOME: '/home/job' }, want: { HOME: '/home/job' } },
  { what: 'PATH is set outright, then missing defaults are appended', env: ['PATH=/opt/bin:/usr/bin'], preset: { PATH: '/host/bin' }, want: { PATH: '/opt/bin:/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin:/bin' } },
  { what: 'a full default PATH is left alone', env: [`PATH=/opt/conda/bin:${DEFAULT_PATH}`], want: { PATH: `/opt/conda/bin:${DEFAULT_PATH}` } },
  { what: 'an empty image PATH becomes the default PATH', env: ['PATH='], want: { PATH: DEFAULT_PATH } },
  { what: 'a PATH with "$" and spaces stays literal', env: ['PATH=/opt/my tools/bin:/x$y'], want: { PATH: `/opt/my tools/bin:/x$y:${DEFAULT_PATH}` } },
  { what: 'no PATH in Env leaves PATH as it was', env: ['A=1'], preset: { PATH: '/keep/me' }, want: { PATH: '/keep/me' } },
];

test('envScript() output, sourced by real shells, exports each Env value literally with Apptainer default rules', async (t) => {
  const shells = availableShells(t);
  await withTempDir(async (dir) => {
    for (const [i, c] of ENV_CASES.entries()) {
      const file = join(dir, `env-${i}.sh`);
      await writeFile(file, envScript(c.env));
      for (const [name, shell] of shells) {
        const got = sourceEnv(shell, file, c.preset ?? { PATH: '/usr/bin:/bin' });
        for (const [k, v] of Object.entries(c.want)) assert.equal(got[k], v, `${c.what}: ${k} under ${name}`);
      }
    }
  });
});

test('envScript() stays valid shell when sourced with set -eu', async (t) => {
  const shells = availableShells(t);
  await withTempDir(async (dir) => {
    const file = join(dir, 'env.sh');
    await writeFile(file, envScript(['PATH=/opt/bin', 'UNSET_BEFORE=v', 'EMPTY=']));
    for (const [name, shell] of shells) {
      const r = spawnSync(shell[0], [...shell.slice(1), '-c', 'set -eu; . "$1"; printf "%s|%s|%s" "$UNSET_BEFORE" "$EMPTY" "$PATH"', 'sh', file], { env: {}, encoding: 'utf8' });
      assert.equal(r.status, 0, `${name}: ${r.stderr}`);
      assert.equal(r.stdout, `v||/opt/bin:${DEFAULT_PATH}`, name);
    }
  });
});

interface RunCase {
  what: string;
  entrypoint: string[];
  cmd: string[];
  args: string[];
  /** argv the helper receives (H stands for the helper's path in entrypoint/cmd/args). */
  want: string[];
  env?: Record<string, string>;
}

const H = '@HELPER@';
const ODD = ['a b', "it's", '"dq"', '$HOME', '$(echo no)', '`echo no`', ';', '|', '&&', '*', 'back\\slash', 'new\nline', ' lead', 'trail ', '', '-n', '--'];

const RUN_CASES: RunCase[] = [
  { what: 'only Cmd, no args: Cmd runs', entrypoint: [], cmd: [H, 'a b', "it's"], args: [], want: ['a b', "it's"] },
  { what: 'only Cmd, args replace Cmd', entrypoint: [], cmd: [H, 'default'], args: [H, 'x y', 'z'], want: ['x y', 'z'] },
  { what: 'only Entrypoint, no args', entrypoint: [H, '--flag'], cmd: [], args: [], want: ['--flag'] },
  { what: 'only Entrypoint, args appended', entrypoint: [H, '--flag'], cmd: [], args: ['x y', '"q"'], want: ['--flag', 'x y', '"q"'] },
  { what: 'both, no args: Cmd is the default arguments of Entrypoint', entrypoint: [H, 'ep'], cmd: ['default 1', '-c', '$HOME'], args: [], want: ['ep', 'default 1', '-c', '$HOME'] },
  { what: 'both, args replace Cmd', entrypoint: [H, 'ep'], cmd: ['default'], args: ['u', 'v w'], want: ['ep', 'u', 'v w'] },
  { what: 'neither, args run as the command', entrypoint: [], cmd: [], args: [H, 'x'], want: ['x'] },
  { what: 'exec-form words are never re-evaluated', entrypoint: [H, ...ODD], cmd: [], args: ODD, want: [...ODD, ...ODD] },
  { what: 'exec-form Cmd words are never re-evaluated', entrypoint: [], cmd: [H, ...ODD], args: [], want: ODD },
  { what: 'empty-string args count as args', entrypoint: [H], cmd: ['default'], args: ['', ''], want: ['', ''] },
  { what: 'shell-form Cmd is evaluated by its shell at run time', entrypoint: [], cmd: ['/bin/sh', '-c', `exec ${H} "$FOO" 'lit $FOO' $FOO`], args: [], env: { FOO: 'bar baz' }, want: ['bar baz', 'lit $FOO', 'bar', 'baz'] },
  { what: 'shell-form Entrypoint ignores Cmd, and args become its $0..', entrypoint: ['/bin/sh', '-c', `exec ${H} ep "$0" "$1"`], cmd: ['ignored'], args: ['zero', 'one two'], want: ['ep', 'zero', 'one two'] },
];

/** Runs the runscript under a shell; the helper prints its argc and argv NUL-separated. */
function runRunscript(shell: string[], script: string, args: string[], cwd: string, env: Record<string, string>, input?: string): { argv?: string[]; stdout: string; status: number | null; stderr: string } {
  const r = spawnSync(shell[0], [...shell.slice(1), script, ...args], { cwd, env: { PATH: '/usr/bin:/bin', ...env }, encoding: 'utf8', input });
  const m = /^N=(\d+)\0/.exec(r.stdout);
  if (!m) return { stdout: r.stdout, status: r.status, stderr: r.stderr };
  const parts = r.stdout.slice(m[0].length).split('\0');
  return { argv: parts.slice(0, Number(m[1])), stdout: r.stdout, status: r.status, stderr: r.stderr };
}

test('runscript() runs every Entrypoint/Cmd combination with Docker semantics under real shells', async (t) => {
  const shells = availableShells(t);
  await withTempDir(async (dir) => {
    const helper = join(dir, 'argv');
    await writeFile(helper, '#!/bin/sh\nprintf "N=%s\\0" "$#"\nfor a in "$@"; do printf "%s\\0" "$a"; done\n');
    await chmod(helper, 0o755);
    // Files a stray unquoted `*` would expand to.
    await writeFile(join(dir, 'glob-bait-1'), '');
    await writeFile(join(dir, 'glob-bait-2'), '');
    const sub = (xs: string[]): string[] => xs.map((x) => x.replaceAll(H, helper));
    for (const [i, c] of RUN_CASES.entries()) {
      const file = join(dir, `runscript-${i}`);
      await writeFile(file, runscript(sub(c.entrypoint), sub(c.cmd)));
      for (const [name, shell] of shells) {
        const r = runRunscript(shell, file, sub(c.args), dir, c.env ?? {});
        assert.equal(r.status, 0, `${c.what} under ${name}: ${r.stderr}`);
        assert.deepEqual(r.argv, c.want, `${c.what} under ${name}`);
      }
    }
  });
});

test('runscript() without Entrypoint or Cmd starts /bin/sh', async (t) => {
  const shells = availableShells(t);
  await withTempDir(async (dir) => {
    const file = join(dir, 'runscript');
    await writeFile(file, runscript([], []));
    for (const [name, shell] of shells) {
      const r = spawnSync(shell[0], [...shell.slice(1), file], { cwd: dir, env: { PATH: '/usr/bin:/bin' }, encoding: 'utf8', input: 'echo "from-sh-$((6*7))"\nexit 3\n' });
      assert.equal(r.stdout, 'from-sh-42\n', name);
      assert.equal(r.status, 3, name);
    }
  });
});

test('imageTreePath() keys trees by config digest, so two tags differing only in config get two trees', () => {
  const base = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${'c'.repeat(64)}`] } };
  const a = sha256Digest(JSON.stringify({ ...base, config: { Env: ['A=1'], Cmd: ['/bin/true'] } }));
  const b = sha256Digest(JSON.stringify({ ...base, config: { Env: ['A=2'], Cmd: ['/bin/true'] } }));
  const pa = imageTreePath(a);
  const pb = imageTreePath(b);
  assert.notEqual(pa, pb);
  assert.equal(pa, `.images/${a.slice(7, 9)}/${a.slice(9)}`);
  assert.match(pb, /^\.images\/[0-9a-f]{2}\/[0-9a-f]{62}$/);
  assert.equal(imageTreePath(a), pa);
});

test('relativeTarget() gives relative symlink targets from nested public names that resolve to the tree', async () => {
  const tree = `.images/ab/${'cd'.repeat(31)}`;
  const cases: [string, string][] = [
    ['x:1', tree],
    ['library/ubuntu:latest', `../${tree}`],
    ['ghcr.io/ns/img:1', `../../${tree}`],
    ['containers.ligo.org/lscsoft/lalsuite/lalsuite-v6.53:stretch', `../../../${tree}`],
    ['gitlab-p4n.aip.de:5005/ns/img:tag', `../../${tree}`],
  ];
  await withTempDir(async (dir) => {
    await mkdir(join(dir, tree), { recursive: true });
    await writeFile(join(dir, tree, 'marker'), 'tree');
    for (const [name, want] of cases) {
      const target = relativeTarget(name, tree);
      assert.equal(target, want, name);
      assert.ok(!posix.isAbsolute(target), name);
      // Through a real symlink, so the repository can be mounted anywhere.
      await mkdir(join(dir, posix.dirname(name)), { recursive: true });
      await symlink(target, join(dir, name));
      assert.equal(await readFile(join(dir, name, 'marker'), 'utf8'), 'tree', name);
    }
  });
});

const LAYER = `sha256:${'e'.repeat(64)}`;

function entry(path: string, type: Entry['type'], extra: Partial<Entry> = {}): Entry {
  return { path, type, mode: type === 'dir' ? 0o755 : type === 'symlink' ? 0o777 : 0o644, uid: 0, gid: 0, size: type === 'dir' ? 4096 : 0, mtime: 1, mtimeNs: 0, ...extra };
}

const SETTINGS: RuntimeSettings = {
  env: ['PATH=/opt/bin', 'GREETING=hello world'], entrypoint: ['/bin/echo'], cmd: ['hi there'],
  workingDir: '/work', labels: { 'org.example.name': 'demo', quote: 'it\'s "x"' }, user: '',
};

async function flatTree(dir: string, entries: Entry[], files: Record<string, string>): Promise<FlatTree> {
  const spool = join(dir, 'spool');
  let offset = 0;
  let data = 'JUNK';
  offset = data.length;
  const contents = new Map<string, { spoolPath: string; offset: number; size: number }>();
  for (const [path, text] of Object.entries(files)) {
    contents.set(path, { spoolPath: spool, offset, size: Buffer.byteLength(text) });
    data += text;
    offset += Buffer.byteLength(text);
  }
  await writeFile(spool, data);
  return { entries, contents, stats: {} as FlatTree['stats'], warnings: [], spoolFiles: [spool] };
}

test('imageItems() adds mountpoints, empty /etc/hosts and /etc/resolv.conf, .singularity.d and root links', async () => {
  await withTempDir(async (dir) => {
    const tree = await flatTree(dir, [
      entry('', 'dir'), entry('bin', 'dir'), entry('bin/sh', 'symlink', { target: 'busybox', size: 7 }),
      entry('etc', 'dir'), entry('etc/hosts', 'file', { size: 9 }), entry('tmp', 'file', { size: 4 }),
      entry('home', 'symlink', { target: 'var/home', size: 8 }), entry('var', 'dir', { mode: 0o700 }),
      entry('data', 'dir'), entry('data/f', 'file', { size: 5 }),
    ], { 'etc/hosts': '127.0.0.1', tmp: 'oops', 'data/f': 'world' });
    const { items, keys } = imageItems(tree, SETTINGS, [LAYER], 1234);
    const byPath = new Map(items.map((it) => [it.entry.path, it]));
    assert.equal(byPath.size, items.length, 'no path twice');
    for (const it of items) {
      if (it.entry.path === '') continue;
      const parent = posix.dirname(it.entry.path) === '.' ? '' : posix.dirname(it.entry.path);
      assert.equal(byPath.get(parent)?.entry.type, 'dir', `parent of ${it.entry.path} is a directory`);
    }
    for (const m of MOUNTPOINTS) {
      if (m === 'home') continue;
      assert.equal(byPath.get(m)?.entry.type, 'dir', m);
    }
    assert.equal(byPath.get('tmp')!.entry.mode, 0o1777, 'a file at /tmp becomes the sticky tmp dir');
    assert.equal(byPath.get('var/tmp')!.entry.mode, 0o1777);
    assert.equal(byPath.get('var')!.entry.mode, 0o700, 'an existing directory keeps its mode');
    assert.deepEqual([byPath.get('home')!.entry.type, byPath.get('home')!.entry.target], ['symlink', 'var/home'], 'a symlinked mountpoint is kept');
    for (const f of EMPTY_FILES) {
      const it = byPath.get(f)!;
      assert.equal(it.entry.type, 'file', f);
      assert.equal(it.entry.size, 0, f);
      assert.equal((await readItem(it)).length, 0, f);
      assert.equal(keys.has(it), false, `${f} is generated, not layer content`);
    }
    const data = byPath.get('data/f')!;
    assert.equal(Buffer.from(await readItem(data)).toString(), 'world');
    assert.equal(keys.get(data), `${LAYER}@${'JUNK127.0.0.1oops'.length}+5`);

    const text = async (p: string): Promise<string> => Buffer.from(await readItem(byPath.get(p)!)).toString();
    assert.equal(await text('.singularity.d/env/90-environment.sh'), envScript(SETTINGS.env));
    assert.equal(await text('.singularity.d/runscript'), runscript(SETTINGS.entrypoint, SETTINGS.cmd));
    assert.equal(byPath.get('.singularity.d/runscript')!.entry.mode, 0o755);
    assert.deepEqual(JSON.parse(await text('.singularity.d/labels.json')), SETTINGS.labels);
    assert.equal(await text('.singularity.d/workdir'), '/work\n');
    assert.equal(byPath.get('.singularity.d/libs')!.entry.type, 'dir');
    for (const a of ['exec', 'run', 'shell', 'start', 'test']) assert.equal(byPath.get(`.singularity.d/actions/${a}`)!.entry.mode, 0o755, a);
    assert.equal(byPath.get('singularity')!.entry.target, '.singularity.d/runscript');
    assert.equal(byPath.get('environment')!.entry.target, '.singularity.d/env/90-environment.sh');
    assert.equal(byPath.get('.cvmfscatalog')!.entry.size, 0);
    for (const it of items) if (it.entry.type === 'file') assert.equal(it.entry.size, (await readItem(it)).length, it.entry.path);
  });
});

test('imageItems() splits a heavy image into nested catalogs where the balancer says, and only then', async () => {
  await withTempDir(async (dir) => {
    // /usr/share holds 60 dirs × 50 links (3,060 entries), /usr/bin 300 links: over IMAGE_CATALOG_MAX in all.
    const entries: Entry[] = [entry('', 'dir'), entry('usr', 'dir'), entry('usr/bin', 'dir'), entry('usr/share', 'dir')];
    for (let i = 0; i < 300; i++) entries.push(entry(`usr/bin/t${i}`, 'symlink', { target: 'busybox', size: 7 }));
    for (let d = 0; d < 60; d++) {
      entries.push(entry(`usr/share/doc${d}`, 'dir'));
      for (let i = 0; i < 50; i++) entries.push(entry(`usr/share/doc${d}/f${i}`, 'symlink', { target: 'x', size: 1 }));
    }
    const tree = await flatTree(dir, entries, {});
    const markers = (max?: number): string[] => imageItems(tree, SETTINGS, [LAYER], 1, max).items
      .filter((it) => it.entry.path.endsWith('.cvmfscatalog')).map((it) => it.entry.path).sort();
    const split = markers();
    assert.ok(split.includes('usr/share/.cvmfscatalog'), `the heavy /usr/share gets its own catalog: ${split.join(' ')}`);
    assert.ok(!split.includes('usr/bin/.cvmfscatalog') && !split.includes('usr/.cvmfscatalog'), `light directories stay in the image's catalog: ${split.join(' ')}`);
    assert.ok(split.includes('.cvmfscatalog'), 'the image root keeps its marker');
    assert.deepEqual(markers(0), ['.cvmfscatalog'], 'max 0: one catalog per image');
    assert.deepEqual(markers(100_000), ['.cvmfscatalog'], 'an image under the max is not split');
  });
});

test('imageItems() creates /etc for an image without one and writes no workdir for a relative WorkingDir', async () => {
  await withTempDir(async (dir) => {
    const tree = await flatTree(dir, [entry('', 'dir'), entry('app', 'file', { size: 2 })], { app: 'hi' });
    const { items } = imageItems(tree, { ...SETTINGS, workingDir: 'relative' }, [LAYER], 1);
    const byPath = new Map(items.map((it) => [it.entry.path, it.entry]));
    assert.equal(byPath.get('etc')?.type, 'dir');
    for (const f of EMPTY_FILES) assert.deepEqual([byPath.get(f)?.type, byPath.get(f)?.size], ['file', 0], f);
    assert.equal(byPath.has('.singularity.d/workdir'), false);
    assert.equal(byPath.get('tmp')?.mode, 0o1777);
  });
});

test('the env script under the runtime action script: APPTAINERENV_ > image Env > host, HOME and PATH per Apptainer', async (t) => {
  if (!existsSync(BUSYBOX)) return t.skip('busybox-static is not installed (scripts/deps.sh installs it)');
  const probe = spawnSync('bwrap', ['--unshare-user', '--ro-bind', '/', '/', 'true']);
  if (probe.error || probe.status !== 0) return t.skip(`bwrap cannot create a user namespace here: ${probe.error?.message ?? probe.stderr.toString().trim()}`);
  await withTempDir(async (dir) => {
    const root = join(dir, 'root');
    await mkdir(join(root, 'bin'), { recursive: true });
    await mkdir(join(root, '.singularity.d/env'), { recursive: true });
    for (const d of ['dev', 'proc', 'tmp']) await mkdir(join(root, d));
    copyFileSync(BUSYBOX, join(root, 'bin/busybox'));
    await symlink('busybox', join(root, 'bin/sh'));
    await writeFile(join(root, '.singularity.d/env/90-environment.sh'), envScript([
      'IMG_A=image-a', 'IMG_B=image-b', 'IMG_C=image c $x', 'IMG_D=image-d', 'IMG_E=it\'s }', 'HOME=/root', 'PATH=/opt/bin',
    ]));
    const hostEnv = {
      HOSTONLY: 'h', IMG_A: 'host-a', APPTAINERENV_IMG_B: 'override-b', IMG_C: 'host-c', APPTAINERENV_IMG_C: 'ov-c',
      SINGULARITYENV_IMG_D: 'sing-d', PATH: '/host/bin',
    };
    const fixed = { HOME: '/home/job' };
    const env = shellEnv(planEnv({ hostEnv, cleanEnv: false, explicit: [], fixed }), fixed);
    const r = spawnSync('bwrap', ['--unshare-user', '--bind', root, '/', '--proc', '/proc', '--dev', '/dev', '/bin/sh', '-c', ACTION_SCRIPT, '/.singularity.d/actions/run', '/bin/busybox', 'env'], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const got = Object.fromEntries(r.stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    assert.deepEqual(
      { IMG_A: got.IMG_A, IMG_B: got.IMG_B, IMG_C: got.IMG_C, IMG_D: got.IMG_D, IMG_E: got.IMG_E, HOSTONLY: got.HOSTONLY, HOME: got.HOME, PATH: got.PATH },
      { IMG_A: 'image-a', IMG_B: 'override-b', IMG_C: 'ov-c', IMG_D: 'sing-d', IMG_E: 'it\'s }', HOSTONLY: 'h', HOME: '/home/job', PATH: `/opt/bin:${DEFAULT_PATH}` },
    );
    assert.ok(readFileSync(join(root, '.singularity.d/env/90-environment.sh'), 'utf8').startsWith('#!/bin/sh\n'));
  });
});

/** An item's bytes as the publisher would read them: its spool range or its in-memory bytes. */
async function readItem(it: ChangeItem): Promise<Uint8Array> {
  const src = it.source;
  if (src === undefined) return it.read ? it.read() : new Uint8Array(0);
  if (src.kind === 'bytes') return src.bytes;
  if (src.kind !== 'file') throw new Error('unexpected stream source');
  const whole = await readFile(src.path);
  return whole.subarray(src.offset ?? 0, (src.offset ?? 0) + it.entry.size);
}
