// The pilot on real parts: a repository with two small images published, served on 127.0.0.1 and mounted
// with FUSE where CVMFS_MOUNT_DIR says; `gridbox pilot setup` probes real runtimes (our shim, and a broken
// one) and writes glidein_config; `gridbox pilot job` runs jobs through the shim with the machine ad setup
// produced. Missing image, missing repository and broken runtime are each checked under REQUIRED and
// PREFERRED, plus HTCondor's own pre-job `apptainer test` on an image on the mount.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, copyFile, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '../../testing/tmp.js';
import { FQRN, cliEnv, fuseSkipReason, gridbox, publishTree, runChild, startOrigin, type Origin } from '../../vfs/mount-fixture.test.js';

const BUSYBOX = '/bin/busybox';
const skip = fuseSkipReason() ?? (process.platform !== 'linux' ? 'linux only' : undefined);

interface World { tmp: string; env: NodeJS.ProcessEnv; cvmfs: string; mnt: string; shim: string; broken: string; origin?: Origin }
let w: World;

async function makeImage(dir: string, pretty: string): Promise<void> {
  for (const d of ['bin', 'etc', 'srv', 'cvmfs', 'tmp']) await mkdir(join(dir, d), { recursive: true });
  await copyFile(BUSYBOX, join(dir, 'bin', 'busybox'));
  await chmod(join(dir, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'cat', 'echo', 'true', 'id']) await symlink('busybox', join(dir, 'bin', a));
  await writeFile(join(dir, 'etc', 'os-release'), `PRETTY_NAME="${pretty}"\n`);
}

before(async () => {
  if (skip) return;
  const tmp = await makeTempDir('gridbox-pilot-e2e-');
  const env = cliEnv(tmp);
  const src = join(tmp, 'src');
  await makeImage(join(src, 'images', 'el9'), 'image el9');
  await makeImage(join(src, 'images', 'el8'), 'image el8');
  const p = await publishTree(join(tmp, 'repo'), src, env);
  const origin = await startOrigin(p.srvDir);
  const cvmfs = join(tmp, 'cvmfs');
  const mnt = join(cvmfs, FQRN);
  await mkdir(mnt, { recursive: true });
  await mkdir(join(cvmfs, 'other.example.org'));
  const m = await gridbox(['mount', FQRN, mnt, '--server', origin.url, '--key', p.keyFile, '--cache', join(tmp, 'cache')], env);
  assert.equal(m.code, 0, m.stderr);
  const bin = join(tmp, 'bin');
  assert.equal((await gridbox(['install-shims', bin], env)).code, 0);
  // A runtime that answers the version probes but cannot start a container, as a site's broken install does.
  const broken = join(tmp, 'broken');
  await mkdir(broken);
  await writeFile(join(broken, 'apptainer'), '#!/bin/sh\ncase "$1" in --version) echo "apptainer version 1.3.0";; version) echo 1.3.0;; *) echo "FATAL:   container creation failed: mount /proc: operation not permitted" >&2; exit 255;; esac\n');
  await chmod(join(broken, 'apptainer'), 0o755);
  w = { tmp, env, cvmfs, mnt, shim: join(bin, 'apptainer'), broken: join(broken, 'apptainer'), origin };
});

after(async () => {
  if (skip || w === undefined) return;
  await gridbox(['umount', w.mnt], w.env);
  await w.origin?.close();
  await rm(w.tmp, { recursive: true, force: true });
});

const IMG = (name: string): string => `/cvmfs/${FQRN}/images/${name}`;

async function setup(name: string, lines: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string; config: Map<string, string>; dir: string }> {
  const dir = join(w.tmp, `glidein-${name}`);
  await mkdir(dir, { recursive: true });
  const text = Object.entries({ CVMFS_MOUNT_DIR: w.cvmfs, ...lines }).map(([k, v]) => `${k} ${v}`).join('\n') + '\n';
  await writeFile(join(dir, 'glidein_config'), text);
  const r = await runChild(process.execPath, [cliPath(), 'pilot', 'setup', join(dir, 'glidein_config')], { env: { ...w.env, PATH: '/usr/bin:/bin' }, cwd: dir });
  const config = new Map<string, string>();
  for (const l of (await readFile(join(dir, 'glidein_config'), 'utf8')).split('\n')) { const i = l.indexOf(' '); if (i > 0) config.set(l.slice(0, i), l.slice(i + 1)); }
  return { ...r, config, dir };
}

function cliPath(): string {
  return new URL('../main.js', import.meta.url).pathname;
}

const DICT = `rhel9:${IMG('el9')},rhel8:${IMG('el8')}`;

test('setup: our runtime tested on the mounted image is advertised into glidein_config and JSON', { skip }, async () => {
  const r = await setup('ok', { GLIDEIN_Singularity_Use: 'PREFERRED', GLIDEIN_SINGULARITY_REQUIRE: 'REQUIRED', SINGULARITY_IMAGES_DICT: DICT, SINGULARITY_BIN: 'GRIDBOX' });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.equal(r.config.get('HAS_SINGULARITY'), 'True');
  assert.equal(r.config.get('GWMS_SINGULARITY_STATUS'), 'REQUIRED');
  assert.equal(r.config.get('SINGULARITY_PATH'), join(r.dir, 'gridbox-bin', 'apptainer'));
  assert.equal(r.config.get('SINGULARITY_MODE'), process.getuid?.() === 0 ? 'privileged' : 'unprivileged');
  assert.equal(r.config.get('SINGULARITY_IMAGES_DICT'), DICT);
  assert.equal(r.config.get('GLIDEIN_REQUIRED_OS'), 'any');
  const json = JSON.parse(await readFile(join(r.dir, 'gridbox-setup.json'), 'utf8'));
  assert.equal(json.containers, true);
  assert.deepEqual(json.images.map((i: { key: string; ok: boolean }) => [i.key, i.ok]), [['rhel9', true], ['rhel8', true]]);
});

test('setup: broken runtime, missing image and missing repository fail REQUIRED and disable containers under PREFERRED', { skip }, async () => {
  const cases: Array<{ what: string; lines: Record<string, string>; reason: RegExp }> = [
    { what: 'broken', lines: { SINGULARITY_IMAGES_DICT: DICT, SINGULARITY_BIN: join(w.broken, '..') }, reason: /no working runtime .*operation not permitted/ },
    { what: 'noimage', lines: { SINGULARITY_IMAGES_DICT: `rhel9:${IMG('el7-gone')}`, SINGULARITY_BIN: 'GRIDBOX', SINGULARITY_IMAGE_REQUIRED: 'True' }, reason: /does not exist/ },
    { what: 'norepo', lines: { SINGULARITY_IMAGES_DICT: 'rhel9:/cvmfs/other.example.org/images/el9', SINGULARITY_BIN: 'GRIDBOX', SINGULARITY_IMAGE_REQUIRED: 'True' }, reason: /repository other\.example\.org is not mounted/ },
  ];
  for (const c of cases) {
    const req = await setup(`${c.what}-req`, { GLIDEIN_Singularity_Use: 'REQUIRED', GLIDEIN_SINGULARITY_REQUIRE: 'OPTIONAL', ...c.lines });
    assert.equal(req.code, 1, `${c.what} REQUIRED: ${req.stdout}`);
    assert.match(req.stderr, /the glidein fails/);
    assert.match(req.stderr, c.reason, c.what);
    assert.equal(req.config.get('HAS_SINGULARITY'), undefined);
    const pref = await setup(`${c.what}-pref`, { GLIDEIN_Singularity_Use: 'PREFERRED', GLIDEIN_SINGULARITY_REQUIRE: 'OPTIONAL', ...c.lines });
    assert.equal(pref.code, 0, `${c.what} PREFERRED: ${pref.stderr}`);
    assert.equal(pref.config.get('HAS_SINGULARITY'), 'False', c.what);
    assert.equal(pref.config.get('SINGULARITY_PATH'), undefined);
  }
});

async function job(name: string, o: { status: string; runtime?: string; jobAd: string; dict?: string }, cmd: string[]) {
  const dir = join(w.tmp, `job-${name}`);
  await mkdir(dir, { recursive: true });
  const machine = [
    'HAS_SINGULARITY = True', `GWMS_SINGULARITY_STATUS = "${o.status}"`, `SINGULARITY_PATH = "${o.runtime ?? w.shim}"`, 'GLIDEIN_REQUIRED_OS = "any"',
  ].join('\n');
  await writeFile(join(dir, '.machine.ad'), `${machine}\n`);
  await writeFile(join(dir, '.job.ad'), `${o.jobAd}\n`);
  const env = {
    ...w.env, PATH: '/usr/bin:/bin', CVMFS_MOUNT_DIR: w.cvmfs, SINGULARITY_IMAGES_DICT: o.dict ?? DICT,
    _CONDOR_JOB_AD: join(dir, '.job.ad'), _CONDOR_MACHINE_AD: join(dir, '.machine.ad'), _CONDOR_WRAPPER_ERROR_FILE: join(dir, '.job_wrapper_failure'),
    GRIDBOX_ACCOUNTING_DB: join(w.tmp, 'accounting.db'),
  };
  const r = await runChild(process.execPath, [cliPath(), 'pilot', 'job', '--', ...cmd], { env, cwd: dir });
  let wrapperError = '';
  try { wrapperError = await readFile(join(dir, '.job_wrapper_failure'), 'utf8'); } catch { /* none */ }
  return { ...r, wrapperError };
}

test('job: REQUIRED_OS lands each job in its image on the mount and the exit code comes back', { skip }, async () => {
  for (const [os, pretty] of [['rhel8', 'image el8'], ['rhel9', 'image el9']]) {
    const r = await job(`os-${os}`, { status: 'REQUIRED', jobAd: `REQUIRED_OS = "${os}"` }, ['/bin/sh', '-c', 'cat /etc/os-release; pwd; exit 5']);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stdout, new RegExp(`PRETTY_NAME="${pretty}"`));
    assert.match(r.stdout, /^\/srv$/m);
  }
});

test('job: missing image, missing repository and broken runtime under REQUIRED and PREFERRED', { skip }, async () => {
  const rows: Array<{ what: string; status: string; o?: { runtime?: string; dict?: string }; jobAd: string; code: number; out?: RegExp; err?: RegExp; wrapper?: RegExp }> = [
    // A dictionary image that is gone: PREFERRED runs the job on the host, REQUIRED fails the job (requeued by HTCondor).
    { what: 'dict image gone', status: 'PREFERRED', o: { dict: `rhel9:${IMG('gone')}` }, jobAd: 'REQUIRED_OS = "rhel9"', code: 0, out: /host-side/, err: /running without a container/ },
    { what: 'dict image gone', status: 'REQUIRED', o: { dict: `rhel9:${IMG('gone')}` }, jobAd: 'REQUIRED_OS = "rhel9"', code: 1, wrapper: /Unable to access the Singularity image/ },
    // The job's own image missing never falls back.
    { what: 'job image gone', status: 'PREFERRED', jobAd: `SingularityImage = "${IMG('gone')}"`, code: 1, wrapper: /REQUIRED_Singularity_image_in_job/ },
    { what: 'job image gone', status: 'REQUIRED', jobAd: `SingularityImage = "${IMG('gone')}"`, code: 1, wrapper: /Unable to access/ },
    // A repository the job lists (CVMFSReposList) that is not mounted fails the job either way.
    { what: 'repository missing', status: 'PREFERRED', jobAd: 'CVMFSReposList = "other.example.org"', code: 1, wrapper: /other\.example\.org required by the job/ },
    { what: 'repository missing', status: 'REQUIRED', jobAd: `CVMFSReposList = "${FQRN},other.example.org"`, code: 1, wrapper: /other\.example\.org required by the job/ },
    // A runtime that breaks at job time: its exit status is the job's (255), as with HTCondor and GlideinWMS.
    { what: 'broken runtime', status: 'PREFERRED', o: { runtime: 'broken' }, jobAd: 'REQUIRED_OS = "rhel9"', code: 255, err: /container creation failed/ },
    { what: 'broken runtime', status: 'REQUIRED', o: { runtime: 'broken' }, jobAd: 'REQUIRED_OS = "rhel9"', code: 255, err: /container creation failed/ },
  ];
  let n = 0;
  for (const r of rows) {
    const runtime = r.o?.runtime === 'broken' ? w.broken : undefined;
    const x = await job(`case-${n++}`, { status: r.status, jobAd: r.jobAd, dict: r.o?.dict, runtime }, ['/bin/sh', '-c', 'echo host-side; exit 0']);
    const label = `${r.what} ${r.status}: ${x.stderr}`;
    assert.equal(x.code, r.code, label);
    if (r.out) assert.match(x.stdout, r.out, label);
    if (r.err) assert.match(x.stderr, r.err, label);
    if (r.wrapper) assert.match(x.wrapperError, r.wrapper, label);
    else assert.equal(x.wrapperError, '', label);
  }
});

test("HTCondor's pre-job test (SINGULARITY_RUN_TEST_BEFORE_JOB) passes through the shim on an image on the mount", { skip }, async () => {
  const exec = join(w.tmp, 'execute', 'dir_1');
  await mkdir(exec, { recursive: true });
  // singularity.cpp's runTest(): the job argv with exec/run replaced by `-q test` and the command dropped.
  const argv = ['-s', '-q', 'test', '-S', '/tmp', '-S', '/var/tmp', '-W', exec, '--pwd', exec, '-B', exec, '--home', exec, '-C', join(w.mnt, 'images', 'el9')];
  const env: NodeJS.ProcessEnv = { _CONDOR_SCRATCH_DIR: exec, APPTAINER_CACHEDIR: exec, APPTAINER_TMPDIR: exec };
  const r = await runChild(w.shim, argv, { env, cwd: exec, timeoutMs: 30_000 });
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  assert.equal(r.stdout + r.stderr, '', 'silent on success (HTCondor puts the first output line in the hold reason)');
});

test('every start is recorded with its image, times and bytes fetched; gridbox report shows it and serve aggregates posts', { skip }, async () => {
  const db = join(w.tmp, 'accounting.db');
  const local = await runChild(process.execPath, [cliPath(), 'report', '--db', db, '--json'], { env: w.env });
  assert.equal(local.code, 0, local.stderr);
  const s = JSON.parse(local.stdout);
  const byName = new Map<string, { starts: number; medianFirstMs: number | null }>(s.perImage.map((i: { image: string }) => [i.image, i]));
  // The REQUIRED_OS jobs above ran through the pilot in el8 and el9 (public names, not the pinned paths).
  assert.ok((byName.get(`${FQRN}/images/el8`)?.starts ?? 0) >= 1, local.stdout);
  assert.ok((byName.get(`${FQRN}/images/el9`)?.starts ?? 0) >= 1, local.stdout);
  assert.ok(byName.get(`${FQRN}/images/el8`)!.medianFirstMs !== null);
  const { openAccountingDb, listStarts } = await import('../../accounting/accounting-db.js');
  const h = openAccountingDb(db, { readonly: true });
  const rows = listStarts(h);
  h.close();
  const el8 = rows.find((r) => r.imageName === `${FQRN}/images/el8`)!;
  assert.equal(el8.via, 'pilot');
  assert.equal(el8.exitStatus, 5);
  assert.ok(el8.bytesFetched !== null && el8.cacheMisses !== null && el8.cacheHits !== null, 'mount counters read from its xattrs');

  // The fleet view: a real `gridbox serve --accounting-db`, a node posting, the aggregate read back.
  const { spawn } = await import('node:child_process');
  const serve = spawn(process.execPath, [cliPath(), 'serve', '--root', join(w.tmp, 'repo'), '--listen', '127.0.0.1:0', '--quiet', '--accounting-db', join(w.tmp, 'fleet.db')], { env: w.env, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const first = await new Promise<string>((resolve, reject) => {
      serve.stdout!.once('data', (d: Buffer) => resolve(d.toString()));
      serve.once('exit', (c) => reject(new Error(`serve exited ${c}`)));
    });
    const base = /(http:\/\/127\.0\.0\.1:\d+)/.exec(first)![1];
    const svg = join(w.tmp, 'fleet.svg');
    const r = await runChild(process.execPath, [cliPath(), 'report', '--db', db, '--post', base, '--server', base, '--svg', svg], { env: w.env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`posted ${rows.length} records`));
    assert.match(r.stdout, new RegExp(`${rows.length} container starts on 1 node`));
    assert.match(await readFile(svg, 'utf8'), /<svg /);
    const again = await runChild(process.execPath, [cliPath(), 'report', '--db', db, '--post', base], { env: w.env });
    assert.match(again.stdout, /posted 0 records/);
  } finally {
    serve.kill('SIGTERM');
  }
});
