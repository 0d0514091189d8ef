// The on-demand /cvmfs (gridbox automount): the root lists the configured repositories, the first access
// attaches one, idle ones are released (a working directory or an open file inside keeps one attached),
// a second repository alongside; as root, and unprivileged in a user namespace. Uses `gridbox talk` to
// watch attachments. Waits poll for a state, never assert a duration.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '../testing/tmp.js';
import { FQRN, cliMain, fuseSkipReason, gridbox, runChild, type RunResult, mustRun as must } from '../vfs/mount-fixture.test.js';
import { OTHER, siteSetup } from './site-fixture.test.js';

const skip = fuseSkipReason();
const NOBODY = 65534;

/** Polls `gridbox talk <fqrn> attached` until it answers `want` (a generous bound: a loaded machine is slow). */
async function waitAttached(talk: (args: string[]) => Promise<RunResult>, fqrn: string, want: 'yes' | 'no'): Promise<void> {
  const until = Date.now() + 60_000;
  let last = '';
  while (Date.now() < until) {
    const r = await talk(['talk', fqrn, 'attached']);
    last = `${r.stdout}${r.stderr}`.trim();
    if (r.code === 0 && last === want) return;
    await new Promise((ok) => setTimeout(ok, 200));
  }
  assert.fail(`${fqrn} attached: wanted ${want}, last answer ${last}`);
}

/** How many attachments the on-demand mount at `dir` has made so far. */
async function attaches(run: (args: string[]) => Promise<RunResult>, dir: string): Promise<number> {
  return (JSON.parse(await must(run(['status', dir, '--json']), 'status')) as { automount: { attaches: number } }).automount.attaches;
}

function holder(command: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(command, args, { env, stdio: 'ignore' });
}

test('on-demand /cvmfs as root: first access attaches, idle releases, cwd and open files keep one attached', { skip, timeout: 300_000 }, async () => {
  const s = await siteSetup('gridbox-automount-');
  const cvmfs = join(s.tmp, 'cvmfs');
  await mkdir(cvmfs);
  const env = s.env;
  const talk = (args: string[]): Promise<RunResult> => gridbox(args, env);
  const holders: ChildProcess[] = [];
  try {
    const out = await must(gridbox(['automount', cvmfs, '--idle', '1'], env), 'automount');
    assert.match(out, new RegExp(`serving ${cvmfs} on demand: ${FQRN} ${OTHER}`));
    // The root lists both without attaching either.
    assert.deepEqual((await must(runChild('ls', [cvmfs]), 'ls')).trim().split('\n'), [FQRN, OTHER]);
    assert.equal((await must(talk(['talk', FQRN, 'attached']), 'talk')).trim(), 'no');
    assert.notEqual((await runChild('ls', [join(cvmfs, 'nope.test.org')])).code, 0, 'an unconfigured name is not there');

    // First access attaches: a working directory inside, which also keeps it attached while we look.
    const cwdHolder = holder('bash', ['-c', `cd ${join(cvmfs, FQRN, 'sub')} && exec sleep 300`], env);
    holders.push(cwdHolder);
    await must(runChild('bash', ['-c', `until [ "$(readlink /proc/${cwdHolder.pid}/cwd)" = ${join(cvmfs, FQRN, 'sub')} ]; do sleep 0.05; done`]), 'cwd holder');
    assert.equal((await must(talk(['talk', FQRN, 'attached']), 'talk')).trim(), 'yes');
    assert.equal(await must(runChild('cat', [join(cvmfs, FQRN, 'a.txt')]), 'cat'), 'hello from the repository\n');
    assert.match(await must(talk(['talk', FQRN, 'revision']), 'revision'), /^\d+\n$/);
    assert.match(await must(talk(['talk', FQRN, 'host info']), 'host info'), /Active host: http:\/\/127\.0\.0\.1:\d+\/cvmfs\/mount\.test\.org/);
    assert.match(await must(talk(['talk', FQRN, 'cache size']), 'cache size'), /Current cache size is \d+MB \(\d+ Bytes\)/);
    // The other repository, used after that, goes idle and is released; the working directory keeps the first.
    assert.equal(await must(runChild('cat', [join(cvmfs, OTHER, 'x.txt')]), 'cat other'), 'the other one\n');
    // Counters, not `attached`: with a 1 s idle period an unheld repository may already be gone again.
    assert.equal(await attaches(talk, cvmfs), 2);
    await waitAttached(talk, OTHER, 'no');
    assert.equal((await must(talk(['talk', FQRN, 'attached']), 'talk')).trim(), 'yes', 'the working directory keeps it attached');
    cwdHolder.kill('SIGKILL');
    await waitAttached(talk, FQRN, 'no');

    // An open file keeps it attached too; access re-attaches with fresh state.
    const fileHolder = holder('bash', ['-c', `exec 3<${join(cvmfs, FQRN, 'a.txt')} && exec sleep 300`], env);
    holders.push(fileHolder);
    await must(runChild('bash', ['-c', `until ls -l /proc/${fileHolder.pid}/fd 2>/dev/null | grep -q a.txt; do sleep 0.05; done`]), 'file holder');
    await must(runChild('cat', [join(cvmfs, OTHER, 'x.txt')]), 'cat other again');
    await waitAttached(talk, OTHER, 'no');
    assert.equal((await must(talk(['talk', FQRN, 'attached']), 'talk')).trim(), 'yes', 'the open file keeps it attached');
    fileHolder.kill('SIGKILL');
    await waitAttached(talk, FQRN, 'no');
    const st = JSON.parse(await must(talk(['status', cvmfs, '--json']), 'status'));
    assert.equal(st.automount.attaches, 4);
    assert.equal(st.automount.releases, 4);
    assert.equal(st.automount.failures, 0);
    await must(talk(['umount', cvmfs]), 'umount');
  } finally {
    for (const h of holders) h.kill('SIGKILL');
    await gridbox(['umount', cvmfs], env);
    await s.close();
  }
});

test('on-demand /cvmfs unprivileged in a user namespace (cvmfsexec\'s case)', { skip, timeout: 300_000 }, async () => {
  await chmod('/dev/fuse', 0o666);
  const s = await siteSetup('gridbox-automount-userns-');
  const home = join(s.tmp, 'home');
  const cvmfs = join(s.tmp, 'ucvmfs');
  await mkdir(home);
  await mkdir(cvmfs);
  await chown(home, NOBODY, NOBODY);
  await chown(cvmfs, NOBODY, NOBODY);
  // The cache named in default.local belongs to nobody here.
  await mkdir(join(s.tmp, 'cache'));
  await chown(join(s.tmp, 'cache'), NOBODY, NOBODY);
  const env = { ...s.env, HOME: home, GRIDBOX_RUN_DIR: join(home, 'run') };
  const asNobody = (args: string[]): Promise<RunResult> =>
    runChild('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', process.execPath, cliMain(), ...args], { env });
  try {
    const out = await must(asNobody(['automount', cvmfs, '--idle', '1']), 'automount as nobody');
    assert.match(out, /gridbox enter/);
    const inside = await must(asNobody(['enter', cvmfs, '--', 'sh', '-c', `ls ${cvmfs} && cat ${cvmfs}/${FQRN}/a.txt ${cvmfs}/${OTHER}/x.txt`]).then(async (r) => {
      if (r.code !== 0) r.stderr += await readFile(join(home, 'run', (await runChild('ls', [join(home, 'run')])).stdout.split('\n').find((n) => n.endsWith('.log')) ?? 'none'), 'utf8').catch(() => '');
      return r;
    }), 'read inside');
    assert.equal(inside, `${FQRN}\n${OTHER}\nhello from the repository\nthe other one\n`);
    assert.equal(await attaches(asNobody, cvmfs), 2);
    await waitAttached(asNobody, FQRN, 'no');
    await waitAttached(asNobody, OTHER, 'no');
    assert.equal(await must(asNobody(['enter', cvmfs, '--', 'cat', `${cvmfs}/${OTHER}/x.txt`]), 're-attach'), 'the other one\n');
    const st = JSON.parse(await must(asNobody(['status', cvmfs, '--json']), 'status'));
    assert.equal(st.userns, true);
    assert.equal(st.automount.attaches, 3);
    await must(asNobody(['umount', cvmfs]), 'umount');
  } finally {
    await asNobody(['umount', cvmfs]);
    await s.close();
  }
});
