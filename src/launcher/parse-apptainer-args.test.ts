import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isGridboxError } from '../errors.js';
import { UsageError, parseApptainerArgs, parseBinds } from './parse-apptainer-args.js';

const action = (argv: string[], env: Record<string, string> = {}) => {
  const r = parseApptainerArgs(argv, env);
  assert.equal(r.kind, 'action');
  return r as Extract<typeof r, { kind: 'action' }>;
};

test('the HTCondor job command parses with -s as a global option and -C implying pid, ipc, contain, cleanenv', () => {
  const r = action(['-s', 'exec', '-S', '/tmp', '-S', '/var/tmp', '-W', '/x/exec', '--pwd', '/x/exec', '-B', '/x/slot', '--home', '/x/exec', '-C', '/img', '/x/exec/job.sh', 'a', '-B']);
  assert.equal(r.level, -3);
  const o = r.options;
  assert.deepEqual([o.action, o.image, o.args], ['exec', '/img', ['/x/exec/job.sh', 'a', '-B']]);
  assert.deepEqual(o.scratch, ['/tmp', '/var/tmp']);
  assert.deepEqual([o.workdir, o.pwd, o.home], ['/x/exec', '/x/exec', '/x/exec']);
  assert.deepEqual(o.binds, [{ source: '/x/slot', dest: '/x/slot', readOnly: false }]);
  assert.deepEqual([o.contain, o.containAll, o.pid, o.ipc, o.cleanEnv, o.net], [true, true, true, true, true, false]);
});

test('the GlideinWMS command with -vvv -d, --bind lists and --pid parses', () => {
  const r = action(['-vvv', '-d', 'exec', '--home', '/s:/srv', '--pwd', '/srv', '--ipc', '--contain', '--nv', '--userns', '--pid', '--cleanenv', '--bind', '/cvmfsroot:/cvmfs,/etc/hosts,/etc/localtime:/etc/localtime:ro', '/img', 'cat', '/proc/self/uid_map']);
  assert.equal(r.level, 5);
  const o = r.options;
  assert.deepEqual([o.contain, o.containAll, o.pid, o.ipc, o.cleanEnv, o.nv], [true, false, true, true, true, true]);
  assert.deepEqual(o.binds.map((b) => `${b.source}>${b.dest}${b.readOnly ? ':ro' : ''}`), ['/cvmfsroot>/cvmfs', '/etc/hosts>/etc/hosts', '/etc/localtime>/etc/localtime:ro']);
});

test('global levels: -q is quiet, -sq keeps the highest, no flag is the default', () => {
  assert.equal(action(['-q', 'exec', 'i', 'c']).level, -1);
  assert.equal(action(['-sq', 'exec', 'i', 'c']).level, -1);
  assert.equal(action(['-s', '-v', 'exec', 'i', 'c']).level, 4);
  assert.equal(action(['exec', 'i', 'c']).level, 1);
});

test('--version, version and help are recognised', () => {
  assert.deepEqual(parseApptainerArgs(['--version'], {}), { kind: 'version-flag' });
  assert.deepEqual(parseApptainerArgs(['version'], {}), { kind: 'version' });
  assert.deepEqual(parseApptainerArgs([], {}), { kind: 'help' });
});

test('APPTAINER_BINDPATH and SINGULARITY_BINDPATH are appended after CLI binds; unrelated SINGULARITY_ variables are ignored', () => {
  const o = action(['exec', '-B', '/a', 'img', 'c'], { SINGULARITY_BINDPATH: '/b,/c:/d', SINGULARITY_IMAGES_DICT: 'x:/y', SINGULARITY_PATH: '/z', SINGULARITY_VERSION: '1' }).options;
  assert.deepEqual(o.binds.map((b) => b.dest), ['/a', '/b', '/d']);
  assert.equal(o.home, undefined);
});

test('APPTAINER_WORKDIR, APPTAINER_CONTAIN and the CLI flag precedence', () => {
  const o = action(['exec', 'img', 'c'], { APPTAINER_WORKDIR: '/w', SINGULARITY_CONTAIN: '1', APPTAINER_PID: 'false' }).options;
  assert.equal(o.workdir, '/w');
  assert.equal(o.contain, true);
  assert.equal(o.pid, false);
  assert.equal(action(['exec', '-W', '/cli', 'img', 'c'], { APPTAINER_WORKDIR: '/w' }).options.workdir, '/cli');
});

test('combined short booleans, --flag=value and -Xvalue forms', () => {
  const o = action(['exec', '-ce', '--pwd=/p', '-B/src:/dst', 'img', 'c']).options;
  assert.deepEqual([o.contain, o.cleanEnv, o.pwd], [true, true, '/p']);
  assert.deepEqual(o.binds, [{ source: '/src', dest: '/dst', readOnly: false }]);
});

test('--env splits comma lists only before KEY=', () => {
  assert.deepEqual(action(['exec', '--env', 'A=1,2,B=3', '--env', 'C=x', 'img', 'c']).options.envs, ['A=1,2', 'B=3', 'C=x']);
});

test('bind syntax errors are LAUNCH_BAD_OPTION; escapes keep commas and colons', () => {
  for (const bad of [':/x', '/a:/b:ro:extra', '/a:rel', '/a:/b:nosuch']) {
    assert.throws(() => parseBinds(bad), (e) => isGridboxError(e, 'LAUNCH_BAD_OPTION'), bad);
  }
  assert.deepEqual(parseBinds('/a\\,b:/c\\:d'), [{ source: '/a,b', dest: '/c:d', readOnly: false }]);
});

test('usage errors: unknown flag, exec without a command, unknown subcommand', () => {
  assert.throws(() => parseApptainerArgs(['exec', '--bogus', 'img', 'c'], {}), UsageError);
  assert.throws(() => parseApptainerArgs(['exec', 'img'], {}), UsageError);
  assert.throws(() => parseApptainerArgs(['frobnicate'], {}), UsageError);
  assert.throws(() => parseApptainerArgs(['exec', '--fakeroot', 'img', 'c'], {}), (e) => isGridboxError(e, 'LAUNCH_BAD_OPTION'));
});

test('-w and --writable-tmpfs are accepted with a warning (SINGULARITY_EXTRA_ARGUMENTS example)', () => {
  const o = action(['exec', '-w', 'img', 'c']).options;
  assert.equal(o.notes[0].level, 'WARNING');
});

test('inspect defaults to labels and takes -r -e -j', () => {
  const r = parseApptainerArgs(['inspect', '-r', '-j', 'img'], {});
  assert.equal(r.kind, 'inspect');
  if (r.kind === 'inspect') assert.deepEqual([r.image, r.show.runscript, r.show.json, r.show.labels], ['img', true, true, false]);
  const d = parseApptainerArgs(['inspect', 'img'], {});
  if (d.kind === 'inspect') assert.equal(d.show.labels, true);
});

test('--help and -h on every runtime command, and `help <command>`, ask for that command\'s help', () => {
  for (const sub of ['exec', 'run', 'shell', 'test', 'inspect', 'version'] as const) {
    assert.deepEqual(parseApptainerArgs([sub, '--help'], {}), { kind: 'help', topic: sub }, sub);
    assert.deepEqual(parseApptainerArgs(['-s', sub, '-h'], {}), { kind: 'help', topic: sub }, sub);
    assert.deepEqual(parseApptainerArgs(['help', sub], {}), { kind: 'help', topic: sub }, sub);
  }
  assert.deepEqual(parseApptainerArgs(['exec', '-C', '--help', 'img', 'cmd'], {}), { kind: 'help', topic: 'exec' });
  assert.deepEqual(parseApptainerArgs(['--help'], {}), { kind: 'help' });
  assert.deepEqual(parseApptainerArgs(['help', 'nosuch'], {}), { kind: 'help' });
  // After the image, --help belongs to the payload.
  assert.deepEqual(action(['exec', 'img', 'ls', '--help']).options.args, ['ls', '--help']);
});
