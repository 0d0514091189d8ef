import { test } from 'node:test';
import assert from 'node:assert/strict';
import { combineRequirements, classifyMode, effectiveStatus, mayFallBack } from './negotiate.js';
import { desiredOs, lookupImage, parseImagesDict, platformPreference, selectImage, translateCvmfsPath } from './images.js';
import { parseClassAd, adString } from './classad.js';
import { parseGlideinConfig } from './glidein-config.js';
import { buildJobInvocation, rewritePath } from './job-invocation.js';

test('combineRequirements reproduces the GlideinWMS negotiation table', () => {
  const factory = ['NEVER', 'OPTIONAL', 'PREFERRED', 'REQUIRED', 'REQUIRED_GWMS'];
  const expected: Record<string, string[]> = {
    DISABLE_GWMS: ['DISABLE', 'DISABLE', 'DISABLE', 'DISABLE', 'FAIL'],
    NEVER: ['NEVER', 'NEVER', 'NEVER', 'FAIL', 'FAIL'],
    OPTIONAL: ['NEVER', 'NEVER', 'PREFERRED', 'REQUIRED', 'REQUIRED'],
    PREFERRED: ['NEVER', 'PREFERRED', 'PREFERRED', 'REQUIRED', 'REQUIRED'],
    REQUIRED: ['FAIL', 'REQUIRED', 'REQUIRED', 'REQUIRED', 'REQUIRED'],
  };
  for (const [use, row] of Object.entries(expected)) {
    factory.forEach((req, i) => assert.equal(combineRequirements(use, req).result, row[i], `${use} x ${req}`));
  }
  assert.equal(combineRequirements('', 'REQUIRED').result, 'DISABLE');
  assert.equal(combineRequirements('PREFERRED', '').result, 'PREFERRED');
  const bad = combineRequirements('SOMETIMES', 'OPTIONAL');
  assert.equal(bad.result, 'FAIL');
  assert.match(bad.reason, /SOMETIMES/);
});

test('a job with its own image forbids the fallback', () => {
  assert.equal(mayFallBack('PREFERRED', effectiveStatus('PREFERRED', false)), true);
  assert.equal(mayFallBack('PREFERRED', effectiveStatus('PREFERRED', true)), false);
  assert.equal(mayFallBack('REQUIRED', 'REQUIRED'), false);
});

test('classifyMode reads the uid_map line as GlideinWMS does', () => {
  assert.equal(classifyMode('         0          0 4294967295'), 'privileged');
  assert.equal(classifyMode('         0       1000          1'), 'fakeroot');
  assert.equal(classifyMode('      1000       1000          1'), 'unprivileged');
  assert.equal(classifyMode('\x1b[31m      1000       1000          1\x1b[0m'), 'unprivileged');
  assert.equal(classifyMode('FATAL: something'), undefined);
});

test('platform selection intersects, sorts, and prefers the job image', () => {
  assert.deepEqual(desiredOs('rhel9,rhel8', 'rhel8,rhel9,rhel7'), ['rhel8', 'rhel9']);
  assert.deepEqual(desiredOs('any', 'rhel7'), ['rhel7']);
  assert.deepEqual(desiredOs(undefined, undefined), ['any']);
  assert.deepEqual(desiredOs('rhel9', 'rhel7'), []);
  const dict = parseImagesDict('rhel7:/cvmfs/r/el7,rhel9:/cvmfs/r/el9,remote:docker://x/y:1', { SINGULARITY_IMAGE_DEFAULT: '/cvmfs/r/def' });
  assert.equal(dict.values.get('remote'), 'docker://x/y:1');
  assert.equal(lookupImage(dict, platformPreference(['any'])), '/cvmfs/r/def');
  assert.equal(lookupImage(dict, ['rhel8', 'rhel9']), '/cvmfs/r/el9');
  assert.deepEqual(selectImage({ dict, jobRequiredOs: 'rhel7' }), { ok: true, image: '/cvmfs/r/el7', source: 'dict' });
  assert.deepEqual(selectImage({ dict, jobImage: '"/cvmfs/r/mine"', jobRequiredOs: 'rhel7' }), { ok: true, image: '/cvmfs/r/mine', source: 'job' });
  const notCvmfs = selectImage({ dict, jobImage: '/home/u/img' });
  assert.equal(notCvmfs.ok, false);
  assert.equal(!notCvmfs.ok && notCvmfs.code, 3);
  const none = selectImage({ dict, jobRequiredOs: 'rhel6' });
  assert.equal(!none.ok && none.code, 1);
  assert.equal(translateCvmfsPath('/cvmfs/a/b', '/tmp/cv'), '/tmp/cv/a/b');
});

test('ClassAd and glidein_config parsing keep literals and the last value', () => {
  const ad = parseClassAd('SingularityImage = "/cvmfs/x/img"\nREQUIRED_OS = "rhel7"\nRequestGPUs = 1\nWantX = true\nExpr = MY.A + 1');
  assert.equal(adString(ad, 'singularityimage'), '/cvmfs/x/img');
  assert.deepEqual(ad.get('requestgpus')?.value, { type: 'integer', value: 1 });
  assert.deepEqual(ad.get('wantx')?.value, { type: 'boolean', value: true });
  assert.deepEqual(ad.get('expr')?.value, { type: 'expression', text: 'MY.A + 1' });
  const gc = parseGlideinConfig('A 1\nB two words\nA 3\n');
  assert.equal(gc.get('A'), '3');
  assert.equal(gc.get('B'), 'two words');
});

test('buildJobInvocation reproduces the wrapper argv and environment', () => {
  const existing = new Set(['/etc/hosts', '/etc/localtime', '/cvmfs']);
  const inv = buildJobInvocation({
    runtime: '/opt/gb/apptainer',
    image: '/cvmfs/sw.example.org/ns/img:latest',
    command: ['/exec/dir/.gwms-user-job-wrapper.sh', '/bin/echo', 'hello', '/exec/dir/input.txt'],
    cwd: '/exec/dir',
    env: { PATH: '/opt/bin:/usr/bin', LD_LIBRARY_PATH: '/opt/lib', GLIDEIN_SINGULARITY_BINDPATH: '/etc/hosts,/nonexistent' },
    glideinConfig: new Map([['GLIDEIN_Tmp_Dir', '/scratch/tmp']]),
    exists: (p) => existing.has(p),
    pid: 42,
  });
  assert.deepEqual(inv.argv, [
    '/opt/gb/apptainer', 'exec', '--home', '/exec/dir:/srv', '--pwd', '/srv', '--ipc', '--contain', '--pid',
    '--bind', '/etc/hosts,/etc/hosts,/etc/localtime,/cvmfs',
    '/cvmfs/sw.example.org/ns/img:latest', '/srv/.gwms-user-job-wrapper.sh', '/bin/echo', 'hello', '/srv/input.txt',
  ]);
  assert.ok(inv.dropped.includes('/nonexistent'));
  assert.equal(inv.env.PATH, '/usr/bin:/bin');
  assert.equal(inv.env.GWMS_OLDENV_LD_LIBRARY_PATH, '/opt/lib');
  assert.equal(inv.env.LD_LIBRARY_PATH, undefined);
  assert.equal(inv.env.APPTAINER_WORKDIR, '/scratch/tmp/singularity-work.42');
  assert.equal(inv.env.GWMS_SINGULARITY_REEXEC, '1');
});

test('clearall adds --cleanenv after --pid and SINGULARITY_DISABLE_PID_NAMESPACES drops --pid', () => {
  const base = { runtime: '/r', image: '/cvmfs/i', command: ['x'], cwd: '/w', exists: () => true };
  const a = buildJobInvocation({ ...base, env: { GLIDEIN_CONTAINER_ENV: 'clearall' }, glideinConfig: new Map() });
  assert.deepEqual(a.argv.slice(7, 10), ['--contain', '--pid', '--cleanenv']);
  const b = buildJobInvocation({ ...base, env: { GLIDEIN_SINGULARITY_OPTS: '--cleanenv' }, glideinConfig: new Map([['SINGULARITY_DISABLE_PID_NAMESPACES', '1']]) });
  assert.deepEqual(b.argv.slice(7, 10), ['--contain', '--cleanenv', '--bind']);
  assert.equal(rewritePath('/w', '/w'), '/srv');
  assert.equal(rewritePath('/wx', '/w'), '/wx');
});
