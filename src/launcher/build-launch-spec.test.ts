import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isGridboxError } from '../errors.js';
import { buildLaunchSpec, groupWithCaller, passwdWithCaller } from './build-launch-spec.js';
import { fakeFsView } from './fake-fs-view.js';
import type { FakeEntry } from './fake-fs-view.js';
import { describeImage } from './image-info.js';
import type { HostFacts, LaunchSpec } from './launch-spec.js';
import { parseApptainerArgs } from './parse-apptainer-args.js';
import { resolveInImage } from './resolve-in-image.js';
import { planRootfs } from './underlay.js';

const HOST_FS: Record<string, FakeEntry> = {
  '/dev/null': { file: '' }, '/dev/pts': 'dir', '/proc': 'dir', '/sys': 'dir', '/tmp': 'dir', '/var/tmp': 'dir',
  '/etc/hosts': { file: '127.0.0.1 localhost\n' }, '/etc/localtime': { file: '' }, '/etc/resolv.conf': { file: '' },
  '/home/alice': 'dir', '/x/exec': 'dir', '/x/slot/exec': 'dir', '/cvmfsroot': 'dir', '/data': 'dir',
  '/nv/usr/lib/x86_64-linux-gnu/libcuda.so.1': { file: '' }, '/nv/usr/bin/nvidia-smi': { file: '', exec: true }, '/nv/dev/nvidia0': { file: '' },
};
const host = (over: Partial<HostFacts> = {}): HostFacts => ({
  uid: 1000, gid: 1000, user: 'alice', gecos: 'Alice', home: '/home/alice', groups: [{ name: 'alice', gid: 1000 }, { name: 'grid', gid: 2000 }],
  cwd: '/home/alice', fs: fakeFsView(HOST_FS), nvidia: { libs: [], bins: [], devices: [] }, ...over,
});
const PROBE = { '/dev': 'dir', '/proc': 'dir', '/exit_37': { file: '', exec: true } } satisfies Record<string, FakeEntry>;
const SHELL_IMAGE: Record<string, FakeEntry> = {
  '/bin/sh': { file: '', exec: true }, '/bin/cat': { file: '', exec: true }, '/dev': 'dir', '/proc': 'dir', '/sys': 'dir', '/tmp': 'dir', '/var/tmp': 'dir',
  '/home': 'dir', '/srv': 'dir', '/cvmfs': 'dir', '/usr/share/doc': 'dir', '/usr/share/zoneinfo': { link: '../../etc/zi' },
  '/etc/passwd': { file: 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:old:/old:/bin/ash\n' }, '/etc/group': { file: 'root:x:0:\n' },
  '/etc/hosts': { file: '' }, '/etc/localtime': { file: '' }, '/etc/resolv.conf': { file: '' },
  '/.singularity.d/env/90-environment.sh': { file: 'export A=1\n' }, '/.singularity.d/runscript': { file: '#!/bin/sh\n', exec: true },
  '/.singularity.d/workdir': { file: '/srv\n' },
};

function spec(argv: string[], image: Record<string, FakeEntry>, env: Record<string, string> = {}, h: HostFacts = host()): LaunchSpec {
  const parsed = parseApptainerArgs(argv, env);
  if (parsed.kind !== 'action') throw new Error('not an action');
  return buildLaunchSpec(parsed.options, env, describeImage('/images/img', '/real/img', fakeFsView(image)), h);
}
const pairs = (argv: string[], flag: string): string[] => argv.flatMap((a, i) => (a === flag ? [`${argv[i + 1]}>${argv[i + 2]}`] : []));
const tail = (s: LaunchSpec): string[] => s.argv.slice(s.argv.indexOf('--') + 1);

test('HTCondor probe: exec -C on a sandbox with only dev/ proc/ runs the static binary directly in new pid/ipc namespaces', () => {
  const s = spec(['exec', '-C', '/probe', '/exit_37'], PROBE, { PATH: '/usr/bin' });
  assert.deepEqual(tail(s), ['/exit_37']);
  assert.deepEqual(s.argv.slice(0, 5), ['--unshare-user', '--uid', '1000', '--gid', '1000']);
  for (const f of ['--unshare-pid', '--unshare-ipc', '--die-with-parent']) assert.ok(s.argv.includes(f), f);
  assert.ok(!s.argv.includes('--dev'), 'no bwrap --dev (it would remap the uid through 0)');
  // /tmp, /etc and /sys are missing: the root becomes a tmpfs with the image entries bound back, then read-only.
  assert.deepEqual(s.argv.slice(s.argv.indexOf('--tmpfs'), s.argv.indexOf('--tmpfs') + 2), ['--tmpfs', '/']);
  assert.deepEqual(pairs(s.argv, '--ro-bind').filter((p) => p.startsWith('/real/img')), ['/real/img/dev>/dev', '/real/img/exit_37>/exit_37', '/real/img/proc>/proc']);
  assert.ok(s.argv.join(' ').includes('--remount-ro / '));
  assert.equal(s.env.PATH, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  assert.deepEqual(s.messages.filter((m) => m.level !== 'VERBOSE' && m.level !== 'DEBUG'), [], 'silent on success');
});

test('HTCondor job: scratch dirs and /tmp backed by the workdir, home and pwd on the execute dir, slot bound', () => {
  const s = spec(['-s', 'exec', '-S', '/tmp', '-S', '/var/tmp', '-W', '/x/exec', '--pwd', '/x/exec', '-B', '/x/slot', '--home', '/x/exec', '-C', '/img', '/x/exec/job.sh'],
    SHELL_IMAGE, { FOO: 'host', APPTAINERENV_FOO: 'inner', APPTAINERENV_PS1: 'slot1$ ', APPTAINER_CACHEDIR: '/x/exec', TERM: 'xterm' });
  const binds = pairs(s.argv, '--bind');
  assert.ok(binds.includes('/x/exec/scratch/tmp>/tmp'), 'scratch /tmp');
  assert.ok(binds.includes('/x/exec/scratch/var/tmp>/var/tmp'), 'scratch /var/tmp');
  assert.ok(binds.indexOf('/x/exec/tmp>/tmp') < binds.indexOf('/x/exec/scratch/tmp>/tmp'), 'scratch covers the contained /tmp');
  assert.ok(binds.includes('/x/slot>/x/slot') && binds.includes('/x/exec>/x/exec'));
  assert.ok(s.mkdirs.includes('/x/exec/scratch/tmp'));
  assert.equal(s.argv[s.argv.indexOf('--chdir') + 1], '/x/exec');
  assert.equal(s.env.HOME, '/x/exec');
  assert.equal(s.env.__gbo_FOO, 'inner');
  assert.equal(s.env.FOO, undefined, 'host FOO is cleaned by -C');
  assert.equal(s.env.TERM, 'xterm');
  assert.equal(s.env.__gbo_PS1, 'slot1$ ');
  assert.equal(s.env.APPTAINER_CACHEDIR, undefined);
  assert.deepEqual(tail(s).slice(0, 2), ['/bin/sh', '-c']);
  assert.equal(tail(s).at(-1), '/x/exec/job.sh');
});

test('a nested mount comes after the mount that contains it (home under a contained /tmp)', () => {
  const s = spec(['exec', '-C', '--home', '/x/exec', '/img', 'true'], SHELL_IMAGE, {}, host({ fs: fakeFsView({ ...HOST_FS, '/tmp/job': 'dir' }) }));
  const s2 = spec(['exec', '-C', '--home', '/tmp/job', '--pwd', '/tmp/job', '/img', 'true'], SHELL_IMAGE, {}, host({ fs: fakeFsView({ ...HOST_FS, '/tmp/job': 'dir' }) }));
  assert.ok(s.argv.includes('/x/exec'));
  const j = s2.argv.join(' ');
  assert.ok(j.indexOf('--tmpfs /tmp') < j.indexOf('--bind /tmp/job /tmp/job'));
  assert.ok(!s2.argv.includes('--remount-ro') || !pairs(s2.argv, '--remount-ro').some((p) => p.startsWith('/tmp')));
});

test('GlideinWMS: duplicate bind destinations warn and keep the first; APPTAINER_BIND lists the destinations', () => {
  const s = spec(['exec', '--home', '/x/exec:/srv', '--pwd', '/srv', '--ipc', '--contain', '--pid', '--bind', '/etc/hosts,/etc/hosts,/etc/localtime,/cvmfsroot:/cvmfs', '/img', '/srv/w.sh'], SHELL_IMAGE, { GWMS_SINGULARITY_REEXEC: '1' });
  assert.deepEqual(s.messages.filter((m) => m.level === 'WARNING').map((m) => m.text), ['destination /etc/hosts is already in the mount point list']);
  assert.equal(s.env.APPTAINER_BIND, '/cvmfs,/etc/hosts,/etc/localtime');
  assert.equal(s.env.GWMS_SINGULARITY_REEXEC, '1', 'host variables pass without --cleanenv');
  assert.equal(s.env.__GB_HOST, 'GWMS_SINGULARITY_REEXEC');
  assert.ok(pairs(s.argv, '--bind').includes('/x/exec>/srv'));
  assert.equal(s.argv[s.argv.indexOf('--chdir') + 1], '/srv');
  assert.ok(s.argv.includes('--mqueue'));
});

test('underlay at depth: a bind under /usr/share makes /usr/share a tmpfs with its entries (and symlinks) brought back', () => {
  const s = spec(['exec', '-B', '/data:/usr/share/new/deep', '/img', 'true'], SHELL_IMAGE);
  const j = s.argv.join(' ');
  assert.ok(j.startsWith('--unshare-user') && j.includes('--ro-bind /real/img / '));
  assert.ok(j.includes('--tmpfs /usr/share --ro-bind /real/img/usr/share/doc /usr/share/doc --symlink ../../etc/zi /usr/share/zoneinfo'));
  assert.ok(j.includes('--remount-ro /usr/share'));
  assert.ok(j.indexOf('--tmpfs /usr/share') < j.indexOf('--bind /data /usr/share/new/deep'));
});

test('planRootfs orders parents before children and adds no layer when every destination exists', () => {
  const view = fakeFsView({ '/a/b/c': 'dir', '/a/x': { file: '' } });
  assert.deepEqual(planRootfs(view, '/r', ['/a/b/c']), { argv: ['--ro-bind', '/r', '/'], remountReadOnly: [] });
  const p = planRootfs(view, '/r', ['/a/b/new', '/z', '/a/new']);
  assert.deepEqual(p.remountReadOnly, ['/', '/a', '/a/b']);
  assert.deepEqual(p.argv.slice(0, 2), ['--tmpfs', '/']);
});

test('runtime errors: missing bind source, missing --pwd, command not found without a shell', () => {
  assert.throws(() => spec(['exec', '-B', '/nope:/x', '/img', 'true'], SHELL_IMAGE), (e) => isGridboxError(e, 'LAUNCH_BIND_SOURCE') && e.message === 'mount source /nope doesn\'t exist');
  assert.throws(() => spec(['exec', '--pwd', '/nowhere', '/img', 'true'], SHELL_IMAGE), (e) => isGridboxError(e, 'LAUNCH_FAILED'));
  assert.throws(() => spec(['exec', '-C', '/img', 'nosuch'], PROBE), (e) => isGridboxError(e, 'LAUNCH_NO_COMMAND') && e.message === '"nosuch": executable file not found in $PATH');
  assert.throws(() => spec(['exec', '-C', '/img', '/nosuch'], PROBE), (e) => isGridboxError(e, 'LAUNCH_NO_COMMAND'));
});

test('environment: APPTAINERENV_ beats SINGULARITYENV_ (with a warning), HOME cannot be overridden, PATH overrides apply', () => {
  const s = spec(['exec', '-C', '/img', '/exit_37'], PROBE, { APPTAINERENV_X: 'a', SINGULARITYENV_X: 'b', APPTAINERENV_HOME: '/h', SINGULARITYENV_PREPEND_PATH: '/p', APPTAINERENV_LD_LIBRARY_PATH: '/l', http_proxy: 'http://p:3128', OTHER: 'o' });
  assert.equal(s.env.X, 'a');
  assert.equal(s.env.HOME, '/home/alice');
  assert.equal(s.env.PATH, '/p:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  assert.equal(s.env.LD_LIBRARY_PATH, '/l:/.singularity.d/libs');
  assert.equal(s.env.http_proxy, 'http://p:3128');
  assert.equal(s.env.OTHER, undefined);
  assert.equal(s.env.LANG, 'C');
  assert.equal(s.env.APPTAINER_CONTAINER, '/images/img');
  assert.equal(s.env.SINGULARITY_NAME, 'img');
  const texts = s.messages.map((m) => m.text);
  assert.ok(texts.some((t) => t.includes('SINGULARITYENV_X')));
  assert.ok(texts.some((t) => t.includes('HOME') && t.includes('not permitted')));
});

test('--env beats APPTAINERENV_ and --env-file entries follow', () => {
  const parsed = parseApptainerArgs(['exec', '--env', 'X=cli', '/img', '/exit_37'], {});
  if (parsed.kind !== 'action') throw new Error();
  parsed.options.envFiles = ['# c\nexport Y="file"\nX=file\n'];
  const s = buildLaunchSpec(parsed.options, { APPTAINERENV_X: 'env' }, describeImage('/i', '/i', fakeFsView(PROBE)), host());
  assert.deepEqual([s.env.X, s.env.Y], ['cli', 'file']);
});

test('identity files: the caller line is rewritten with the container home, groups appended once', () => {
  const s = spec(['exec', '--home', '/x/exec:/srv', '/img', 'true'], SHELL_IMAGE);
  assert.deepEqual(s.files.map((f) => f.dest), ['/etc/passwd', '/etc/group']);
  assert.equal(s.files[0].content, 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/srv:/bin/ash\n');
  assert.equal(groupWithCaller('root:x:0:\ngrid:x:2000:\n', host()), 'root:x:0:\ngrid:x:2000:\nalice:x:1000:alice\n');
  assert.equal(passwdWithCaller('root:x:0:0::/root:/bin/sh', host(), '/h'), 'root:x:0:0::/root:/bin/sh\nalice:x:1000:1000:Alice:/h:/bin/sh\n');
  assert.deepEqual(spec(['exec', '/img', '/exit_37'], PROBE).files, [], 'no passwd in the image: none generated');
});

test('test without a test script exits 0 without launching; run uses the runscript and the image WorkingDir', () => {
  const t = spec(['test', '-C', '/img'], PROBE);
  assert.equal(t.exitWithoutLaunch, 0);
  const r = spec(['run', '/img', 'a'], SHELL_IMAGE);
  assert.deepEqual(tail(r).slice(-2), ['/.singularity.d/runscript', 'a']);
  assert.equal(r.argv[r.argv.indexOf('--chdir') + 1], '/srv');
  const noRun = spec(['run', '/img'], PROBE);
  assert.equal(noRun.exitWithoutLaunch, 1);
});

test('--nv binds the driver libraries into /.singularity.d/libs, the tools into /usr/bin and the device nodes', () => {
  const s = spec(['exec', '--nv', '-C', '/img', 'true'], SHELL_IMAGE, {}, host({ nvidia: { libs: ['/nv/usr/lib/x86_64-linux-gnu/libcuda.so.1'], bins: ['/nv/usr/bin/nvidia-smi'], devices: ['/nv/dev/nvidia0'] } }));
  assert.ok(pairs(s.argv, '--ro-bind').includes('/nv/usr/lib/x86_64-linux-gnu/libcuda.so.1>/.singularity.d/libs/libcuda.so.1'));
  assert.ok(pairs(s.argv, '--ro-bind').includes('/nv/usr/bin/nvidia-smi>/usr/bin/nvidia-smi'));
  assert.ok(pairs(s.argv, '--dev-bind').includes('/nv/dev/nvidia0>/nv/dev/nvidia0'));
});

test('without --contain the host /dev, /tmp, home and cwd are bound; --net and --hostname add namespaces', () => {
  const s = spec(['exec', '--net', '--hostname', 'box', '/img', 'true'], SHELL_IMAGE, {}, host({ cwd: '/data' }));
  const b = [...pairs(s.argv, '--bind'), ...pairs(s.argv, '--dev-bind')];
  for (const x of ['/dev>/dev', '/tmp>/tmp', '/home/alice>/home/alice', '/data>/data', '/proc>/proc']) assert.ok(b.includes(x), x);
  assert.ok(s.argv.includes('--unshare-net') && s.argv.includes('--unshare-uts'));
  assert.equal(s.files.find((f) => f.dest === '/etc/hostname')?.content, 'box\n');
  assert.equal(s.argv[s.argv.indexOf('--chdir') + 1], '/data');
});

// Debian-shaped images: system files as absolute, relative, dangling and looping symlinks (issue 9).
const DEBIAN: Record<string, FakeEntry> = {
  ...SHELL_IMAGE,
  '/etc/localtime': { link: '/usr/share/zoneinfo/Etc/UTC' }, '/usr/share/zoneinfo/Etc/UTC': { file: 'TZif-image' },
  '/etc/hosts': { link: '../usr/share/hostile/hosts' }, '/usr/share/hostile/hosts': { file: '' },
  '/etc/resolv.conf': { link: '/run/systemd/resolve/stub-resolv.conf' }, '/run/lock': 'dir',
  '/etc/passwd': { link: '../usr/share/hostile/passwd' }, '/usr/share/hostile/passwd': { file: 'root:x:0:0:root:/root:/bin/sh\nimg:x:5:5::/:/bin/sh\n' },
  '/etc/group': { link: '/usr/share/hostile/group' }, '/usr/share/hostile/group': { file: 'root:x:0:\nimggroup:x:5:\n' },
  '/var/run': { link: '/run' }, '/etc/issue': { file: 'Debian\n' },
};
const GWMS = ['exec', '--contain', '--ipc', '--pid', '--home', '/x/exec:/srv', '--pwd', '/srv', '-B', '/etc/hosts,/etc/localtime,/cvmfsroot:/cvmfs'];
const verbose = (s: LaunchSpec): string[] => s.messages.filter((m) => m.level === 'VERBOSE' && m.text.startsWith('Skipping mount')).map((m) => m.text);

test('system files that are symlinks in the image: localtime replaces its link, the others land on their targets inside the image', () => {
  const s = spec([...GWMS, '/img', '/bin/true'], DEBIAN);
  const j = s.argv.join(' ');
  assert.deepEqual(s.messages.filter((m) => m.level === 'WARNING' || m.level === 'ERROR' || m.level === 'FATAL'), []);
  // /etc/localtime: the symlink is dropped from the /etc layer and the host file mounted in its place; the image's zone file is left alone.
  assert.ok(j.includes('--tmpfs /etc '), j);
  assert.ok(!j.includes('/usr/share/zoneinfo/Etc/UTC /etc/localtime'), 'the localtime symlink is not recreated');
  assert.ok(pairs(s.argv, '--ro-bind').includes('/etc/localtime>/etc/localtime'));
  const dests = [...pairs(s.argv, '--ro-bind'), ...pairs(s.argv, '--bind')].map((p) => p.split('>')[1]);
  assert.ok(!dests.includes('/usr/share/zoneinfo/Etc/UTC') && !s.files.some((f) => f.dest.includes('zoneinfo')), 'nothing mounted over the zone file');
  // A relative link followed inside the image; the link itself is kept so the job reads through it.
  assert.ok(pairs(s.argv, '--ro-bind').includes('/etc/hosts>/usr/share/hostile/hosts'));
  assert.ok(j.includes('--symlink ../usr/share/hostile/hosts /etc/hosts'));
  // A dangling absolute link: its target is created under /run by the underlay.
  assert.ok(pairs(s.argv, '--ro-bind').includes('/etc/resolv.conf>/run/systemd/resolve/stub-resolv.conf'));
  assert.ok(j.includes('--tmpfs /run ') && j.includes('--ro-bind /real/img/run/lock /run/lock'));
  assert.ok(j.indexOf('--tmpfs /run ') < j.indexOf('--ro-bind /etc/resolv.conf /run/systemd/resolve/stub-resolv.conf'));
  // passwd/group read from the image through the link (never the host's file) and mounted on the link target.
  const files = Object.fromEntries(s.files.map((f) => [f.dest, f.content]));
  assert.equal(files['/usr/share/hostile/passwd'], 'root:x:0:0:root:/root:/bin/sh\nimg:x:5:5::/:/bin/sh\nalice:x:1000:1000:Alice:/srv:/bin/sh\n');
  assert.match(files['/usr/share/hostile/group'], /^imggroup:x:5:$/m);
  assert.deepEqual(verbose(s), []);
});

test('a user bind through an absolute directory symlink lands on the target (/var/run -> /run)', () => {
  const s = spec(['exec', '-B', '/data:/var/run/job', '/img', 'true'], DEBIAN);
  assert.ok(pairs(s.argv, '--bind').includes('/data>/run/job'));
  assert.equal(s.env.APPTAINER_BIND, '/var/run/job', 'the user-facing list keeps the destination as given');
});

test('system files that cannot be placed are skipped with a verbose message, never a FATAL', () => {
  const image: Record<string, FakeEntry> = {
    ...SHELL_IMAGE,
    '/etc/hosts': { link: 'hosts2' }, '/etc/hosts2': { link: 'hosts' },        // a loop
    '/etc/localtime': 'dir',                                                    // a directory
    '/etc/resolv.conf': { link: '/proc/self/net/resolv' },                      // onto a kernel filesystem
    '/etc/passwd': { link: '/bin/sh/passwd' },                                  // through a file
  };
  const s = spec([...GWMS, '/img', '/bin/true'], image);
  const v = verbose(s);
  assert.equal(v.length, 3, v.join('\n'));
  assert.ok(v.some((t) => t.includes('/etc/hosts') && t.includes('too many levels of symbolic links')));
  assert.ok(v.some((t) => t.includes('/etc/localtime') && t.includes('is a directory')));
  assert.ok(v.some((t) => t.includes('/etc/resolv.conf') && t.includes('kernel filesystem')));
  assert.ok(s.messages.some((m) => m.text.startsWith('/etc/passwd does not exist')), 'passwd behind a file reads as absent');
  assert.deepEqual(s.messages.filter((m) => m.level === 'WARNING' || m.level === 'ERROR'), []);
  assert.ok(!pairs(s.argv, '--ro-bind').some((p) => p.startsWith('/etc/hosts>') || p.startsWith('/etc/localtime>') || p.startsWith('/etc/resolv.conf>')));
});

test('resolveInImage: absolute targets restart at the image root, .. stops there, loops end after 40 links', () => {
  const fs = fakeFsView({ '/a/up': { link: '../../../../etc' }, '/etc/x': { file: '' }, '/l1': { link: '/l2' }, '/l2': { link: 'l1' }, '/d/abs': { link: '/etc' } });
  assert.deepEqual(resolveInImage(fs, '/a/up/x'), { path: '/etc/x', loop: false });
  assert.deepEqual(resolveInImage(fs, '/d/abs/../etc/x'), { path: '/etc/x', loop: false });
  assert.equal(resolveInImage(fs, '/l1/y').loop, true);
  assert.deepEqual(resolveInImage(fs, '/d/abs/new', (p) => p === '/d/abs'), { path: '/d/abs/new', loop: false }, 'covered by another mount: literal');
});

test('a user bind of /etc/localtime (GlideinWMS default list) lands where the system bind replaced the symlink, not on the zone file', () => {
  const s = spec([...GWMS, '/img', '/bin/true'], DEBIAN);
  const onLocaltime = pairs(s.argv, '--bind').filter((p) => p.endsWith('>/etc/localtime'));
  assert.deepEqual(onLocaltime, ['/etc/localtime>/etc/localtime']);
  assert.ok(!pairs(s.argv, '--bind').some((p) => p.includes('zoneinfo')));
});

test('a host system file that is a dangling link is skipped with a verbose message', () => {
  const s = spec([...GWMS.slice(0, -2), '/img', '/bin/true'], DEBIAN, {}, host({ fs: fakeFsView({ ...HOST_FS, '/etc/localtime': { link: '/usr/share/zoneinfo/Nowhere' } }) }));
  assert.ok(!pairs(s.argv, '--ro-bind').some((p) => p.startsWith('/etc/localtime>')));
  assert.ok(s.messages.some((m) => m.level === 'VERBOSE' && m.text === 'Skipping mount of /etc/localtime: not a readable file on the host'));
  assert.deepEqual(s.messages.filter((m) => m.level === 'WARNING' || m.level === 'ERROR'), []);
});
