// Runs `gridbox pilot job` as HTCondor's job wrapper would, with a recording stand-in runtime, to
// check image choice, the argv handed to the runtime, exit-code passthrough and the fallback rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withTempDir } from '../../testing/tmp.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'main.js');

function setup(dir: string): { runtime: string; log: string; cvmfs: string } {
  const log = join(dir, 'argv.log');
  const runtime = join(dir, 'fake-apptainer');
  // Records its argv, then runs the job command (everything after the image) directly.
  writeFileSync(runtime, `#!/bin/sh\nprintf '%s\\n' "$@" > ${log}\nwhile [ "$1" != "--bind" ] && [ $# -gt 0 ]; do shift; done\nshift 2\nshift\nexec "$@"\n`);
  chmodSync(runtime, 0o755);
  const cvmfs = join(dir, 'cvmfs');
  mkdirSync(join(cvmfs, 'repo.example.org', '.images', 'ab'), { recursive: true });
  mkdirSync(join(cvmfs, 'repo.example.org', '.images', 'ab', 'cdef'));
  mkdirSync(join(cvmfs, 'repo.example.org', 'ns'));
  symlinkSync('../.images/ab/cdef', join(cvmfs, 'repo.example.org', 'ns', 'img:el9'));
  return { runtime, log, cvmfs };
}

function pilot(args: string[], env: Record<string, string>, cwd: string) {
  return spawnSync(process.execPath, [MAIN, 'pilot', ...args], { env: { PATH: '/usr/bin:/bin', ...env }, cwd, encoding: 'utf8' });
}

test('pilot job picks the REQUIRED_OS image, pins its physical path and passes the exit code back', async () => {
  await withTempDir(async (dir) => {
    const { runtime, log, cvmfs } = setup(dir);
    const ad = join(dir, 'job.ad');
    writeFileSync(ad, 'REQUIRED_OS = "rhel9"\n');
    const r = pilot(['job', '--runtime', runtime, '--job-ad', ad, '--', '/bin/sh', '-c', 'exit 7'], {
      GLIDEIN_Singularity_Use: 'PREFERRED', GLIDEIN_SINGULARITY_REQUIRE: 'OPTIONAL', CVMFS_MOUNT_DIR: cvmfs,
      SINGULARITY_IMAGES_DICT: 'rhel7:/cvmfs/repo.example.org/ns/img:el7,rhel9:/cvmfs/repo.example.org/ns/img:el9',
    }, dir);
    assert.equal(r.status, 7, r.stderr);
    const argv = readFileSync(log, 'utf8').trim().split('\n');
    assert.deepEqual(argv.slice(0, 8), ['exec', '--home', `${dir}:/srv`, '--pwd', '/srv', '--ipc', '--contain', '--pid']);
    assert.equal(argv[argv.indexOf('--bind') + 1].split(',').at(-1), `${cvmfs}:/cvmfs`);
    assert.equal(argv[argv.indexOf('--bind') + 2], join(cvmfs, 'repo.example.org', '.images', 'ab', 'cdef'));
  });
});

test('pilot job falls back to no container only when PREFERRED and the job named no image', async () => {
  await withTempDir(async (dir) => {
    const { runtime, cvmfs } = setup(dir);
    const env = { GLIDEIN_Singularity_Use: 'PREFERRED', GLIDEIN_SINGULARITY_REQUIRE: 'PREFERRED', CVMFS_MOUNT_DIR: cvmfs, SINGULARITY_IMAGES_DICT: 'rhel9:/cvmfs/repo.example.org/missing' };
    const fallback = pilot(['job', '--runtime', runtime, '--', '/bin/sh', '-c', 'exit 3'], env, dir);
    assert.equal(fallback.status, 3);
    assert.match(fallback.stderr, /running without a container/);
    const ad = join(dir, 'job.ad');
    writeFileSync(ad, '+SingularityImage = "/cvmfs/repo.example.org/missing"\n');
    const errFile = join(dir, 'wrapper-error');
    const required = pilot(['job', '--runtime', runtime, '--job-ad', ad, '--', '/bin/true'], { ...env, _CONDOR_WRAPPER_ERROR_FILE: errFile }, dir);
    assert.equal(required.status, 1);
    assert.match(readFileSync(errFile, 'utf8'), /Unable to access the Singularity image/);
  });
});

test('pilot negotiate prints the combined policy and fails on a bad value', async () => {
  await withTempDir(async (dir) => {
    const ok = pilot(['negotiate'], { GLIDEIN_Singularity_Use: 'OPTIONAL', GLIDEIN_SINGULARITY_REQUIRE: 'REQUIRED' }, dir);
    assert.equal(ok.stdout, 'REQUIRED\n');
    const bad = pilot(['negotiate'], { GLIDEIN_Singularity_Use: 'REQUIRED', GLIDEIN_SINGULARITY_REQUIRE: 'NEVER' }, dir);
    assert.equal(bad.status, 1);
    assert.equal(bad.stdout, 'FAIL\n');
  });
});

test('pilot explain prints each decision and the runtime argv, and runs nothing', async () => {
  await withTempDir(async (dir) => {
    const { runtime, log, cvmfs } = setup(dir);
    const ad = join(dir, 'job.ad');
    writeFileSync(ad, 'REQUIRED_OS = "rhel9"\nCVMFSReposList = "repo.example.org"\n');
    const env = {
      GLIDEIN_Singularity_Use: 'PREFERRED', GLIDEIN_SINGULARITY_REQUIRE: 'REQUIRED', CVMFS_MOUNT_DIR: cvmfs,
      SINGULARITY_IMAGES_DICT: 'rhel9:/cvmfs/repo.example.org/ns/img:el9',
    };
    const r = pilot(['explain', '--runtime', runtime, '--job-ad', ad, '--', '/bin/echo', 'hi'], env, dir);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^ 1\. status REQUIRED: frontend PREFERRED x factory REQUIRED -> REQUIRED$/m);
    assert.match(r.stdout, /repository repo\.example\.org \(CVMFSReposList\) is mounted/);
    assert.match(r.stdout, /image \/cvmfs\/repo\.example\.org\/ns\/img:el9 from SINGULARITY_IMAGES_DICT key rhel9/);
    assert.match(r.stdout, /image pinned to its physical path .*\.images\/ab\/cdef/);
    assert.match(r.stdout, new RegExp(`^=> container: ${runtime} exec --home ${dir}:/srv`, 'm'));
    assert.throws(() => readFileSync(log), 'the runtime was not run');
    const bad = pilot(['explain', '--job-ad', ad, '--', '/bin/true'], { ...env, GLIDEIN_Singularity_Use: 'REQUIRED', GLIDEIN_SINGULARITY_REQUIRE: 'NEVER' }, dir);
    assert.equal(bad.status, 1);
    assert.match(bad.stdout, /^=> fail: container negotiation failed/m);
  });
});

test('pilot setup names a missing glidein_config', async () => {
  await withTempDir(async (dir) => {
    const r = pilot(['setup', join(dir, 'nope', 'glidein_config')], {}, dir);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /Cannot read glidein_config ".*nope\/glidein_config" \[NOT_FOUND\]/);
  });
});
