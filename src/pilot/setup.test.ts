// Table tests for the glidein setup decisions: the negotiation matrix carried through to what is advertised
// and the exit code, image checks on the repository, runtime discovery order and the probe's verdicts.
// The runtime runner here is a table of canned outputs; the real runtimes are exercised in
// src/cli/commands/pilot-e2e.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSetup, checkImage, type SetupInputs } from './setup.js';
import { runtimeCandidates, probeRuntime, testExecArgv, type RunResult, type Runner } from './runtime-probe.js';
import { addCondorVarsLines, addConfigLines, parseGlideinConfig } from './glidein-config.js';

type Behaviour = 'ok' | 'root' | 'broken' | 'garbage' | 'noversion';

function fakeRunner(bins: Record<string, Behaviour>, calls: string[][] = []): Runner {
  return async (argv): Promise<RunResult> => {
    calls.push(argv);
    const b = bins[argv[0]];
    if (b === undefined) throw new Error(`ENOENT ${argv[0]}`);
    if (argv[1] === '--version') return b === 'noversion' ? { code: 1, stdout: '', stderr: 'boom' } : { code: 0, stdout: 'apptainer version 1.4.5\n', stderr: '' };
    if (argv[1] === 'version') return b === 'noversion' ? { code: 1, stdout: '', stderr: 'unknown command' } : { code: 0, stdout: '1.4.5\n', stderr: '' };
    if (b === 'broken') return { code: 255, stdout: '', stderr: 'FATAL:   container creation failed: no user namespaces\n' };
    if (b === 'garbage') return { code: 0, stdout: 'hello\n', stderr: '' };
    return { code: 0, stdout: b === 'root' ? '         0          0 4294967295\n' : '     65534      65534          1\n', stderr: '' };
  };
}

function inputs(config: Record<string, string>, o: { bins?: Record<string, Behaviour>; files?: string[]; repos?: string[]; calls?: string[][]; path?: string } = {}): SetupInputs {
  const files = new Set(o.files ?? ['/mnt/cv/repo.org/img/el9', '/mnt/cv/repo.org/img/el8']);
  const bins = o.bins ?? { '/usr/bin/apptainer': 'ok' };
  return {
    config: new Map(Object.entries({ CVMFS_MOUNT_DIR: '/mnt/cv', ...config })), env: { PATH: o.path ?? '/usr/bin:/bin' }, workDir: '/glide',
    exists: (p) => files.has(p) || p === '/etc/hosts' || (o.repos ?? ['/mnt/cv/repo.org']).includes(p),
    isExecutable: (p) => p in bins,
    hasEntries: (d) => (o.repos ?? ['/mnt/cv/repo.org']).includes(d),
    run: fakeRunner(bins, o.calls),
  };
}

const DICT = 'rhel9:/cvmfs/repo.org/img/el9,rhel8:/cvmfs/repo.org/img/el8';
const adv = (o: { advertise: { key: string; value: string }[] }): Record<string, string> => Object.fromEntries(o.advertise.map((a) => [a.key, a.value]));

test('setup: the negotiation matrix decides exit code and what is advertised', async () => {
  const cases: Array<[string, string, 0 | 1, string | undefined]> = [
    // use, require, exit, HAS_SINGULARITY advertised
    ['', '', 0, undefined],
    ['DISABLE_GWMS', 'REQUIRED', 0, undefined],
    ['DISABLE_GWMS', 'REQUIRED_GWMS', 1, undefined],
    ['NEVER', 'OPTIONAL', 0, 'False'],
    ['NEVER', 'REQUIRED', 1, undefined],
    ['OPTIONAL', 'OPTIONAL', 0, 'False'],
    ['OPTIONAL', 'PREFERRED', 0, 'True'],
    ['PREFERRED', '', 0, 'True'],
    ['REQUIRED', 'NEVER', 1, undefined],
    ['REQUIRED', 'OPTIONAL', 0, 'True'],
    ['MAYBE', 'OPTIONAL', 1, undefined],
  ];
  for (const [use, req, exit, has] of cases) {
    const o = await runSetup(inputs({ GLIDEIN_Singularity_Use: use, GLIDEIN_SINGULARITY_REQUIRE: req, SINGULARITY_IMAGES_DICT: DICT }));
    assert.equal(o.exitCode, exit, `${use} x ${req}: ${o.reason}`);
    assert.equal(adv(o).HAS_SINGULARITY, has, `${use} x ${req}`);
  }
});

test('setup: a working runtime advertises what GlideinWMS advertises', async () => {
  const o = await runSetup(inputs({ GLIDEIN_Singularity_Use: 'PREFERRED', GLIDEIN_SINGULARITY_REQUIRE: 'REQUIRED', SINGULARITY_IMAGES_DICT: DICT, GLIDEIN_PROVIDES: 'cvmfs/x' }));
  const a = adv(o);
  assert.equal(a.HAS_SINGULARITY, 'True');
  assert.equal(a.GWMS_SINGULARITY_STATUS, 'REQUIRED');
  assert.equal(a.SINGULARITY_PATH, '/usr/bin/apptainer');
  assert.equal(a.GWMS_SINGULARITY_PATH, '/usr/bin/apptainer');
  assert.equal(a.SINGULARITY_VERSION, '1.4.5');
  assert.equal(a.SINGULARITY_FULL_VERSION, 'apptainer version 1.4.5');
  assert.equal(a.SINGULARITY_MODE, 'unprivileged');
  assert.equal(a.GWMS_CONTAINERSW_MODE, 'unprivileged');
  assert.equal(a.SINGULARITY_IMAGES_DICT, DICT);
  assert.equal(a.GLIDEIN_REQUIRED_OS, 'any');
  assert.equal(a.GLIDEIN_PROVIDES, 'cvmfs/x,singularity/unprivileged');
  // rhel9 is the first of default,rhel9,... present in the dictionary.
  assert.equal(o.testImage, '/cvmfs/repo.org/img/el9');
  assert.equal(o.advertise.find((x) => x.key === 'HAS_SINGULARITY')?.type, 'C');
});

test('setup: broken runtime, missing image and missing repository under REQUIRED and PREFERRED', async () => {
  const rows: Array<{ what: string; cfg: Record<string, string>; o?: Parameters<typeof inputs>[1]; reason: RegExp }> = [
    { what: 'broken runtime', cfg: { SINGULARITY_IMAGES_DICT: DICT }, o: { bins: { '/usr/bin/apptainer': 'broken' } }, reason: /no working runtime .*no user namespaces/ },
    { what: 'runtime printing garbage', cfg: { SINGULARITY_IMAGES_DICT: DICT }, o: { bins: { '/usr/bin/apptainer': 'garbage' } }, reason: /unexpected output "hello"/ },
    { what: 'no runtime at all', cfg: { SINGULARITY_IMAGES_DICT: DICT }, o: { bins: {} }, reason: /no apptainer or singularity found/ },
    { what: 'missing image (required)', cfg: { SINGULARITY_IMAGES_DICT: 'rhel9:/cvmfs/repo.org/img/gone', SINGULARITY_IMAGE_REQUIRED: 'True' }, reason: /does not exist/ },
    { what: 'missing image, no test image', cfg: { SINGULARITY_IMAGES_DICT: 'rhel9:/cvmfs/repo.org/img/gone' }, reason: /no image to test a runtime with/ },
    { what: 'repository not mounted', cfg: { SINGULARITY_IMAGES_DICT: DICT, SINGULARITY_IMAGE_REQUIRED: '1' }, o: { repos: [] }, reason: /repository repo\.org is not mounted/ },
    { what: 'image outside CVMFS', cfg: { SINGULARITY_IMAGES_DICT: 'default:/opt/img', SINGULARITY_IMAGE_REQUIRED: 'yes' }, reason: /not in CVMFS/ },
  ];
  for (const r of rows) {
    for (const status of ['REQUIRED', 'PREFERRED']) {
      const o = await runSetup(inputs({ GLIDEIN_Singularity_Use: status, GLIDEIN_SINGULARITY_REQUIRE: 'OPTIONAL', ...r.cfg }, r.o));
      assert.match(o.reason, r.reason, `${r.what} ${status}`);
      if (status === 'REQUIRED') {
        assert.equal(o.exitCode, 1, `${r.what}: REQUIRED fails the glidein`);
        assert.deepEqual(o.advertise, [], r.what);
      } else {
        assert.equal(o.exitCode, 0, `${r.what}: PREFERRED goes on`);
        assert.deepEqual(adv(o), { HAS_SINGULARITY: 'False' }, r.what);
      }
    }
  }
});

test('setup: a missing default image only warns and the binary is tested with APPTAINER_TEST_IMAGE', async () => {
  const calls: string[][] = [];
  const o = await runSetup(inputs({ GLIDEIN_Singularity_Use: 'REQUIRED', SINGULARITY_IMAGES_DICT: 'rhel9:/cvmfs/repo.org/img/gone', APPTAINER_TEST_IMAGE: '/cvmfs/repo.org/img/el8' }, { calls }));
  assert.equal(o.exitCode, 0, o.reason);
  assert.equal(o.testImage, '/cvmfs/repo.org/img/el8');
  assert.ok(o.decisions.some((d) => /only a warning/.test(d)));
  assert.equal(calls.at(-1)?.at(-3), '/mnt/cv/repo.org/img/el8');
});

test('runtime candidates follow singularity_locate_bin order and the first working one wins', async () => {
  const x = new Set(['/ovr/bin/apptainer', '/site/apptainer', '/site/singularity', '/usr/bin/singularity', '/usr/bin/apptainer', '/opt/gb/apptainer', '/c/usr/libexec/apptainer']);
  const isExecutable = (p: string): boolean => x.has(p);
  const paths = (c: { path: string }[]): string[] => c.map((e) => e.path);
  assert.deepEqual(paths(runtimeCandidates({ override: '/nope:/ovr/bin', singularityBin: '/site', pathEnv: '/usr/bin', gridboxShim: '/opt/gb/apptainer', condorDir: '/c', isExecutable })),
    ['/ovr/bin/apptainer', '/site/apptainer', '/usr/bin/apptainer', '/usr/bin/singularity', '/c/usr/libexec/apptainer']);
  // An override executable is taken as is; SINGULARITY_BIN=PATH skips straight to PATH; GRIDBOX puts ours first.
  assert.deepEqual(paths(runtimeCandidates({ override: '/site/singularity', singularityBin: 'PATH', pathEnv: '/usr/bin', isExecutable })),
    ['/site/singularity', '/usr/bin/apptainer', '/usr/bin/singularity']);
  assert.deepEqual(paths(runtimeCandidates({ singularityBin: 'GRIDBOX', pathEnv: '/usr/bin', gridboxShim: '/opt/gb/apptainer', isExecutable })).slice(0, 2),
    ['/opt/gb/apptainer', '/usr/bin/apptainer']);
  // Overriding directories search singularity before apptainer (GlideinWMS's order there).
  assert.deepEqual(paths(runtimeCandidates({ override: '/site', singularityBin: 'PASS', isExecutable })), ['/site/singularity']);
  const o = await runSetup(inputs({ GLIDEIN_Singularity_Use: 'REQUIRED', SINGULARITY_IMAGES_DICT: DICT, SINGULARITY_BIN: '/site' }, {
    bins: { '/site/apptainer': 'broken', '/usr/bin/apptainer': 'root' },
  }));
  assert.equal(adv(o).SINGULARITY_PATH, '/usr/bin/apptainer');
  assert.equal(adv(o).SINGULARITY_MODE, 'privileged');
  assert.deepEqual(o.tried.map((t) => t.ok), [false, true]);
});

test('probe: version fallbacks and the exact test argv', async () => {
  const r = await probeRuntime({ step: 'PATH', path: '/x' }, { cwd: '/w', env: {}, exists: () => true, run: fakeRunner({ '/x': 'noversion' }), testImage: '/cvmfs/r/i' });
  assert.equal(r.ok, false);
  assert.match(r.detail, /printed no version/);
  assert.deepEqual(testExecArgv('/b', '/cvmfs/r/i', { cwd: '/w', env: { GLIDEIN_SINGULARITY_OPTS: '--nv', GLIDEIN_CONTAINER_ENV: 'clearall' }, cvmfsMountDir: '/m', exists: (p) => p !== '/etc/localtime' }), [
    '/b', 'exec', '--home', '/w:/srv', '--pwd', '/srv', '--ipc', '--contain', '--nv', '--pid', '--cleanenv', '--bind', '/m:/cvmfs,/etc/hosts', '/m/r/i', 'cat', '/proc/self/uid_map',
  ]);
});

test('checkImage: remote images need the remote restriction', () => {
  const o = { restrictions: ['cvmfs'], exists: () => true, hasEntries: () => true };
  assert.equal(checkImage('a', 'docker://x/y', o).ok, false);
  assert.equal(checkImage('a', 'docker://x/y', { ...o, restrictions: ['cvmfs', 'remote'] }).ok, true);
});

test('glidein_config: value after the first space, last line wins, rewrites keep one line per key', () => {
  const gc = parseGlideinConfig('A 1\nB two  words\nA 3\nNOVALUE\nC  lead\n');
  assert.equal(gc.get('A'), '3');
  assert.equal(gc.get('B'), 'two  words');
  assert.equal(gc.get('NOVALUE'), undefined);
  assert.equal(gc.get('C'), ' lead');
  assert.equal(addConfigLines('A 1\nAB 2\nA 3\n', [{ key: 'A', value: 'x y' }]), 'AB 2\nA x y\n');
  assert.throws(() => addConfigLines('', [{ key: 'A', value: 'x\ny' }]), /one line/);
  assert.equal(addCondorVarsLines('HAS_SINGULARITY C - + Y Y +\nHAS_SINGULARITY_X S - + Y Y -\n', [{ key: 'HAS_SINGULARITY', value: 'True', type: 'C' }]),
    'HAS_SINGULARITY_X S - + Y Y -\nHAS_SINGULARITY C - + Y Y +\n');
});
