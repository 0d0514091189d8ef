// The publish lock through the real CLI: 4 `gridbox publish` processes racing on one repository (exactly
// one wins, the others fail with PUBLISH_LOCKED naming the winner, the repository checks clean), and a
// publisher SIGKILLed between opening the lock and writing it does not block the next publish.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { withTempDir } from '../testing/tmp.js';
import { exclusiveHolderPid, lockDbPath } from '../plumbing/lock-file.js';
import { checkRepository } from './check.js';
import { readHead } from './head.js';
import { repoLayout } from './repo-layout.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const LOCK_MODULE = new URL('../plumbing/lock-file.js', import.meta.url).href;
const FQRN = 'race.gridbox.local';

function gridbox(args: string[]) {
  return spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
}

interface Outcome { pid: number; code: number | null; signal: NodeJS.Signals | null; stderr: string }

function run(child: ChildProcess): Promise<Outcome> {
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  child.stdout!.resume();
  return new Promise((res) => child.once('close', (code, signal) => res({ pid: child.pid!, code, signal, stderr })));
}

function setup(dir: string) {
  const root = join(dir, 'repo');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  for (let i = 0; i < 30; i++) writeFileSync(join(src, i % 2 ? 'sub' : '', `f${i}`), `file ${i}\n`);
  const r = gridbox(['mkfs', FQRN, '--root', root]);
  assert.equal(r.status, 0, r.stderr);
  return { root, src, layout: repoLayout(root, FQRN) };
}

test('of 4 concurrent `gridbox publish` on one repository exactly one wins, in each of 20 rounds; the others fail naming it', { timeout: 600_000 }, async () => withTempDir(async (dir) => {
  const { root, src, layout } = setup(dir);
  const lockDb = lockDbPath(layout.lock);
  for (let round = 0; round < 20; round++) {
    writeFileSync(join(src, `round-${round}`), `round ${round}\n`);
    const rev = (await readHead(layout)).revision;
    const children = Array.from({ length: 4 }, () => spawn(process.execPath, [MAIN, 'publish', FQRN, src, '--root', root, '--workers', '1'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const outcomes = Promise.all(children.map(run));
    let done = false;
    void outcomes.then(() => { done = true; });
    // Freeze the winner the moment the kernel shows it holding the lock, so that the round is a real race
    // however the four process starts are staggered: all others must then find the lock held.
    let winner: number | undefined;
    while (!done && winner === undefined) {
      const pid = exclusiveHolderPid(lockDb);
      if (pid !== undefined && children.some((c) => c.pid === pid)) { winner = pid; process.kill(pid, 'SIGSTOP'); break; }
      await new Promise((r) => setTimeout(r, 1));
    }
    assert.ok(winner !== undefined, `round ${round}: no publisher was ever seen holding the lock`);
    const losers = children.filter((c) => c.pid !== winner);
    await Promise.all(losers.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
    process.kill(winner, 'SIGCONT');
    const results = await outcomes;
    const won = results.filter((o) => o.code === 0);
    assert.equal(won.length, 1, `round ${round}: ${JSON.stringify(results.map((o) => ({ code: o.code, err: o.stderr.slice(0, 200) })))}`);
    assert.equal(won[0].pid, winner);
    for (const o of results.filter((x) => x.pid !== winner)) {
      assert.equal(o.code, 1, o.stderr);
      assert.match(o.stderr, /PUBLISH_LOCKED/);
      assert.ok(o.stderr.includes(`another publish holds the lock (pid ${winner}`), o.stderr);
    }
    assert.equal((await readHead(layout)).revision, rev + 1, `round ${round}: one new revision`);
    if (round % 5 === 4) await checkRepository(layout, { deep: true });
  }
  const r = gridbox(['check', FQRN, '--root', root]);
  assert.equal(r.status, 0, r.stderr);
}));

test('a publisher SIGKILLed between opening the lock and writing it does not block the next publish', { timeout: 120_000 }, async () => withTempDir(async (dir) => {
  const { root, src, layout } = setup(dir);
  // The old scheme's window: open('wx') created an empty publish.lock, then the process died.
  const old = spawnSync(process.execPath, ['-e', `require('fs').openSync(${JSON.stringify(layout.lock)}, 'wx'); process.kill(process.pid, 'SIGKILL')`]);
  assert.equal(old.signal, 'SIGKILL');
  assert.equal(readFileSync(layout.lock, 'utf8'), '');
  let r = gridbox(['publish', FQRN, src, '--root', root]);
  assert.equal(r.status, 0, r.stderr);
  // The new scheme's window: the kernel lock taken, the description not yet written (emptied here), killed.
  const victim = spawn(process.execPath, ['--input-type=module', '-e', `
    import { writeFileSync } from 'node:fs';
    const { tryLock, isHeldLock } = await import(${JSON.stringify(LOCK_MODULE)});
    const l = tryLock(${JSON.stringify(layout.lock)}, 'publish');
    if (!isHeldLock(l)) process.exit(3);
    writeFileSync(${JSON.stringify(layout.lock)}, '');
    process.stdout.write('locked\\n');
    setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await createInterface({ input: victim.stdout! })[Symbol.asyncIterator]().next();
  assert.equal(line.value, 'locked');
  r = gridbox(['publish', FQRN, src, '--root', root]);
  assert.equal(r.status, 1, 'refused while the victim lives');
  assert.ok(r.stderr.includes(`pid ${victim.pid}`), r.stderr);
  victim.kill('SIGKILL');
  await new Promise((res) => victim.once('exit', res));
  const rev = (await readHead(layout)).revision;
  r = gridbox(['publish', FQRN, src, '--root', root]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((await readHead(layout)).revision, rev + 1);
  await checkRepository(layout, { deep: true });
}));
