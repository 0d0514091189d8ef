// Table tests for the job-time decisions: reading HTCondor's ad files (literals, escapes, expressions,
// HTCondor's and GlideinWMS's quirks) and planJob's outcome for each combination of status, job image,
// REQUIRED_OS, CVMFSReposList, machine ad and what the node has.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adString, parseClassAd, parseClassAdValue, propBool, propStr } from './classad.js';
import { planJob, type JobPlanInputs } from './job-plan.js';

test('ClassAd values: literals are typed, anything else is an expression kept as text', () => {
  const rows: Array<[string, unknown]> = [
    ['"plain"', { type: 'string', value: 'plain' }],
    ['"say \\"hi\\""', { type: 'string', value: 'say "hi"' }],
    // Old syntax (HTCondor's .job.ad): a backslash escapes only a quote, so Windows paths survive.
    ['"C:\\dir\\n.txt"', { type: 'string', value: 'C:\\dir\\n.txt' }],
    ['""', { type: 'string', value: '' }],
    ['42', { type: 'integer', value: 42 }],
    ['-7', { type: 'integer', value: -7 }],
    ['1.5E+3', { type: 'real', value: 1500 }],
    ['.5', { type: 'real', value: 0.5 }],
    ['TRUE', { type: 'boolean', value: true }],
    ['false', { type: 'boolean', value: false }],
    ['UNDEFINED', { type: 'undefined' }],
    ['error', { type: 'error' }],
    ['"a" + "b"', { type: 'expression', text: '"a" + "b"' }],
    ['"unterminated', { type: 'expression', text: '"unterminated' }],
    ['(TARGET.Arch == "X86_64") && MY.X', { type: 'expression', text: '(TARGET.Arch == "X86_64") && MY.X' }],
    ['1 + 1', { type: 'expression', text: '1 + 1' }],
  ];
  for (const [text, want] of rows) assert.deepEqual(parseClassAdValue(text), want, text);
  // New syntax: C escapes and octal.
  assert.deepEqual(parseClassAdValue('"a\\tb\\\\c\\101"', 'new'), { type: 'string', value: 'a\tb\\cA' });
});

test('ClassAd files: old line format and new bracketed format, names case-insensitive, last wins', () => {
  const old = parseClassAd([
    '-- Schedd: submit.example.org',
    'MyType = "Job"',
    'SingularityImage = "/cvmfs/singularity.opensciencegrid.org/opensciencegrid/osgvo-el9:latest"',
    'REQUIRED_OS = "rhel9"',
    '# a comment',
    'CVMFSReposList = "oasis.opensciencegrid.org,sw.example.org"',
    'Environment = "A=1 B=\'x y\'"',
    'required_os = "rhel8"',
    '+ProjectName = "demo"',
    'Requirements = (TARGET.HAS_SINGULARITY =?= true)',
    '',
  ].join('\r\n'));
  assert.equal(adString(old, 'singularityimage'), '/cvmfs/singularity.opensciencegrid.org/opensciencegrid/osgvo-el9:latest');
  assert.equal(adString(old, 'REQUIRED_OS'), 'rhel8');
  assert.equal(adString(old, 'ProjectName'), 'demo');
  assert.equal(adString(old, 'Environment'), "A=1 B='x y'");
  assert.equal(adString(old, 'Requirements'), undefined);
  assert.equal(old.get('requirements')?.text, '(TARGET.HAS_SINGULARITY =?= true)');
  const neu = parseClassAd('[\n  REQUIRED_OS = "rhel7";\n  Note = "semi;colon \\"q\\"";\n  N = 3\n]\n');
  assert.equal(adString(neu, 'required_os'), 'rhel7');
  assert.equal(adString(neu, 'note'), 'semi;colon "q"');
  assert.equal(adString(neu, 'n'), '3');
});

test("GlideinWMS's getters: get_prop_str and get_prop_bool quirks", () => {
  const ad = parseClassAd([
    'A = "x"', 'U = undefined', 'S = "has-undefined-inside"', 'E = ""', 'T = True', 'N0 = 0', 'N5 = 5',
    'Q = "true"', 'X = MY.Y =?= true', 'F = "no"', 'EXPR = MY.Z',
  ].join('\n'));
  assert.equal(propStr(ad, 'a'), 'x');
  assert.equal(propStr(ad, 'missing', 'd'), 'd');
  assert.equal(propStr(ad, 'U', 'd'), 'd');
  assert.equal(propStr(ad, 'S', 'd'), 'd', 'an unanchored "undefined" match reads as unset');
  assert.equal(propStr(ad, 'E', 'd'), 'd');
  assert.equal(propStr(ad, 'EXPR'), 'MY.Z');
  const bools: Array<[string, boolean, boolean]> = [
    ['T', false, true], ['N0', true, false], ['N5', false, true], ['Q', false, true], ['X', false, true],
    ['F', true, false], ['U', true, true], ['missing', true, true], ['missing', false, false],
  ];
  for (const [name, dflt, want] of bools) assert.equal(propBool(ad, name, dflt), want, `${name} default ${dflt}`);
});

const DICT = 'rhel9:/cvmfs/img.org/el9,rhel8:/cvmfs/img.org/el8,default:/cvmfs/img.org/el9';
const MACHINE = 'HAS_SINGULARITY = True\nGWMS_SINGULARITY_STATUS = "PREFERRED"\nSINGULARITY_PATH = "/g/bin/apptainer"\nGLIDEIN_REQUIRED_OS = "any"\n';

function inputs(o: { job?: string; machine?: string; status?: string; files?: string[]; repos?: string[]; dict?: string }): JobPlanInputs {
  const files = new Set(o.files ?? ['/m/img.org/el9', '/m/img.org/el8', '/etc/hosts']);
  const repos = new Set(o.repos ?? ['/m/img.org', '/m/data.org']);
  const machine = o.machine ?? MACHINE;
  return {
    command: ['/bin/true'], cwd: '/exec', env: { CVMFS_MOUNT_DIR: '/m', SINGULARITY_IMAGES_DICT: o.dict ?? DICT },
    glideinConfig: new Map(), jobAd: parseClassAd(o.job ?? ''), machineAd: parseClassAd(machine), haveMachineAd: machine !== '',
    statusOverride: o.status, exists: (p) => files.has(p) || repos.has(p), realpath: (p) => (p === '/m/img.org/el9' ? '/m/img.org/.images/ab/cd' : p),
    hasEntries: (d) => repos.has(d), pid: 1,
  };
}

test('planJob: image choice, fallback and failure for each status and node state', () => {
  const rows: Array<{ what: string; i: Parameters<typeof inputs>[0]; action: string; image?: string; reason?: RegExp }> = [
    { what: 'REQUIRED_OS picks its dictionary entry', i: { job: 'REQUIRED_OS = "rhel8"' }, action: 'container', image: '/m/img.org/el8' },
    { what: 'no REQUIRED_OS takes default, pinned', i: {}, action: 'container', image: '/m/img.org/.images/ab/cd' },
    { what: 'glidein any keeps the job order: rhel9 first', i: { job: 'REQUIRED_OS = "rhel9,rhel8"' }, action: 'container', image: '/m/img.org/.images/ab/cd' },
    { what: 'a real intersection is sorted: rhel8 before rhel9', i: { job: 'REQUIRED_OS = "rhel9,rhel8"', machine: MACHINE.replace('"any"', '"rhel9,rhel8,rhel7"') }, action: 'container', image: '/m/img.org/el8' },
    { what: '+SingularityImage wins over REQUIRED_OS', i: { job: 'SingularityImage = "/cvmfs/img.org/el9"\nREQUIRED_OS = "rhel8"' }, action: 'container', image: '/m/img.org/.images/ab/cd' },
    { what: 'unknown platform under PREFERRED falls back', i: { job: 'REQUIRED_OS = "rhel6"' }, action: 'direct', reason: /No Singularity image available for platforms rhel6/ },
    { what: 'unknown platform under REQUIRED fails', i: { job: 'REQUIRED_OS = "rhel6"', status: 'REQUIRED' }, action: 'fail', reason: /rhel6/ },
    { what: 'missing image under PREFERRED falls back', i: { files: ['/m/img.org/el9'], job: 'REQUIRED_OS = "rhel8"' }, action: 'direct', reason: /Unable to access the Singularity image \/cvmfs\/img.org\/el8/ },
    { what: 'missing job image never falls back', i: { job: 'SingularityImage = "/cvmfs/img.org/gone"' }, action: 'fail', reason: /REQUIRED_Singularity_image_in_job/ },
    { what: 'image repository not mounted, PREFERRED', i: { repos: ['/m/data.org'] }, action: 'direct', reason: /repository img.org is not mounted/ },
    { what: 'image repository not mounted, REQUIRED', i: { repos: ['/m/data.org'], status: 'REQUIRED' }, action: 'fail', reason: /repository img.org is not mounted/ },
    { what: 'CVMFSReposList repository missing fails even under PREFERRED', i: { job: 'CVMFSReposList = "data.org,gone.org"' }, action: 'fail', reason: /gone.org required by the job/ },
    { what: 'CVMFSReposList all mounted', i: { job: 'CVMFSReposList = "data.org, img.org"' }, action: 'container' },
    { what: 'HAS_SINGULARITY False under PREFERRED runs directly', i: { machine: 'HAS_SINGULARITY = False\nGWMS_SINGULARITY_STATUS = "PREFERRED"' }, action: 'direct', reason: /HAS_SINGULARITY is false/ },
    { what: 'HAS_SINGULARITY False with a job image fails', i: { machine: 'HAS_SINGULARITY = False\nGWMS_SINGULARITY_STATUS = "PREFERRED"', job: 'SingularityImage = "/cvmfs/img.org/el9"' }, action: 'fail' },
    { what: 'NEVER runs directly', i: { status: 'NEVER' }, action: 'direct' },
    { what: 'NEVER with a job image fails', i: { status: 'NEVER', job: 'SingularityImage = "/cvmfs/img.org/el9"' }, action: 'fail' },
    { what: 'image outside CVMFS is refused', i: { job: 'SingularityImage = "/home/u/img"' }, action: 'fail', reason: /not in CVMFS/ },
  ];
  for (const r of rows) {
    const p = planJob(inputs(r.i));
    assert.equal(p.action, r.action, `${r.what}: ${p.decisions.join(' | ')}`);
    if (r.image) assert.equal(p.action === 'container' && p.image, r.image, r.what);
    if (r.reason) assert.match(p.action === 'container' ? '' : p.reason, r.reason, r.what);
  }
});

test('planJob: the runtime comes from the machine ad and the argv is the wrapper\'s', () => {
  const p = planJob(inputs({ job: 'REQUIRED_OS = "rhel8"' }));
  assert.equal(p.action, 'container');
  if (p.action !== 'container') return;
  assert.equal(p.runtime, '/g/bin/apptainer');
  assert.equal(p.imageKey, 'rhel8');
  assert.deepEqual(p.invocation.argv.slice(0, 9), ['/g/bin/apptainer', 'exec', '--home', '/exec:/srv', '--pwd', '/srv', '--ipc', '--contain', '--pid']);
  assert.equal(p.invocation.argv.at(-2), '/m/img.org/el8');
  assert.ok(p.decisions.some((d) => /platforms: glidein any x job REQUIRED_OS rhel8 -> rhel8/.test(d)));
});
