// The lock must neither stick nor double-grant: racing processes (exactly one wins), a holder SIGKILLed
// between taking the kernel lock and writing its description, a dead holder's description, a live holder
// named by pid, release and re-acquire.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { acquireLock, isHeldLock, lockDbPath, tryLock } from './lock-file.js';
import { formatIdentity } from './process-identity.js';

const LOCK_MODULE = new URL('./lock-file.js', import.meta.url).href;

// A child that takes part in races: before every round prints "ready", then on "go" tries once and prints its result
// as JSON; a winner then waits for "release" (or for a SIGKILL) and prints "released". `mode=empty` wins,
// then empties the description (as if killed between open and write) and waits to be killed.
const RACER = `
import { createInterface } from 'node:readline';
import { writeFileSync } from 'node:fs';
const { tryLock, isHeldLock } = await import(process.env.LOCK_MODULE);
const lines = createInterface({ input: process.stdin });
const it = lines[Symbol.asyncIterator]();
for (;;) {
  process.stdout.write('ready\\n');
  if ((await it.next()).done) break;
  const r = tryLock(process.env.LOCK_PATH, 'race');
  if (isHeldLock(r)) {
    if (process.env.MODE === 'empty') writeFileSync(process.env.LOCK_PATH, '');
    process.stdout.write(JSON.stringify({ won: true, pid: process.pid }) + '\\n');
    await it.next();
    r.release();
    process.stdout.write('released\\n');
  } else {
    process.stdout.write(JSON.stringify({ won: false, pid: process.pid, holder: r.heldBy?.pid, purpose: r.purpose }) + '\\n');
  }
}
`;

interface Racer { child: ChildProcess; next(): Promise<string> }

function startRacer(path: string, mode = ''): Racer {
  const child = spawn(process.execPath, ['--input-type=module', '-e', RACER], {
    env: { ...process.env, LOCK_MODULE, LOCK_PATH: path, MODE: mode }, stdio: ['pipe', 'pipe', 'inherit'],
  });
  const it = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return { child, next: async () => { const r = await it.next(); if (r.done) throw new Error(`racer ${child.pid} ended early`); return r.value; } };
}

const exited = (c: ChildProcess): Promise<void> => new Promise((res) => { if (c.exitCode !== null || c.signalCode !== null) res(); else c.once('exit', () => res()); });

test('of 4 processes racing for the lock, exactly one wins, in each of 20 rounds (winners released or SIGKILLed)', async () => withTempDir(async (dir) => {
  const path = join(dir, 'race.lock');
  const racers = Array.from({ length: 4 }, () => startRacer(path));
  try {
    for (let round = 0; round < 20; round++) {
      for (const r of racers) assert.equal(await r.next(), 'ready');
      for (const r of racers) r.child.stdin!.write('go\n');
      const results = await Promise.all(racers.map(async (r) => JSON.parse(await r.next()) as { won: boolean; pid: number; holder?: number }));
      const winners = results.filter((x) => x.won);
      assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify(results)}`);
      for (const loser of results.filter((x) => !x.won)) assert.equal(loser.holder, winners[0].pid, `round ${round}: a loser names the winner`);
      const w = results.findIndex((x) => x.won);
      if (round % 2 === 0) {
        racers[w].child.stdin!.write('release\n');
        assert.equal(await racers[w].next(), 'released');
      } else {
        // The next round must take over from a dead holder, without any cleanup in between.
        racers[w].child.kill('SIGKILL');
        await exited(racers[w].child);
        racers[w] = startRacer(path);
      }
    }
  } finally {
    for (const r of racers) r.child.kill('SIGKILL');
    await Promise.all(racers.map((r) => exited(r.child)));
  }
}));

test('a holder SIGKILLed between taking the lock and writing its description does not block the next', async () => withTempDir(async (dir) => {
  const path = join(dir, 'k.lock');
  const victim = startRacer(path, 'empty');
  assert.equal(await victim.next(), 'ready');
  victim.child.stdin!.write('go\n');
  assert.equal(JSON.parse(await victim.next()).won, true);
  assert.equal(readFileSync(path, 'utf8'), '');
  // While it lives, it holds the lock even with an empty description, and is named by the kernel.
  const busy = tryLock(path);
  assert.ok(!isHeldLock(busy));
  assert.equal(busy.heldBy?.pid, victim.child.pid);
  victim.child.kill('SIGKILL');
  await exited(victim.child);
  const lock = await acquireLock(path, { purpose: 'after-kill' });
  assert.equal(JSON.parse(readFileSync(path, 'utf8')).pid, process.pid);
  lock.release();
}));

test('an empty lock file (killed between open and write) and one naming a dead holder are taken over', async () => withTempDir(async (dir) => {
  const path = join(dir, 'stale.lock');
  writeFileSync(path, ''); // the old open('wx') scheme's leftover
  const a = await acquireLock(path);
  a.release();
  // A description naming a process that has exited (a child that ran and was reaped).
  const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
  const deadId = { pid: dead, bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(), startTicks: 1 };
  writeFileSync(path, JSON.stringify({ holder: formatIdentity(deadId), pid: dead, host: 'x', purpose: 'ghost', since: '2020-01-01T00:00:00Z' }));
  const b = await acquireLock(path, { purpose: 'takeover' });
  const rec = JSON.parse(readFileSync(path, 'utf8'));
  assert.equal(rec.pid, process.pid);
  assert.equal(rec.purpose, 'takeover');
  b.release();
}));

test('a live holder is refused with LOCK_HELD naming its pid and purpose; release then re-acquire', async () => withTempDir(async (dir) => {
  const path = join(dir, 'live.lock');
  const holder = startRacer(path);
  assert.equal(await holder.next(), 'ready');
  holder.child.stdin!.write('go\n');
  assert.equal(JSON.parse(await holder.next()).won, true);
  await assert.rejects(acquireLock(path, { purpose: 'second', waitMs: 200 }), (e: Error & { code?: string; fields?: Record<string, unknown> }) =>
    e.code === 'LOCK_HELD' && e.message.includes(`pid ${holder.child.pid}`) && e.message.includes('race') && e.fields?.holderPid === holder.child.pid);
  holder.child.stdin!.write('release\n');
  assert.equal(await holder.next(), 'released');
  holder.child.stdin!.end();
  await exited(holder.child);
  assert.equal(existsSync(path), false, 'release removes the description');
  const mine = await acquireLock(path);
  // Not reentrant: the holding process itself is refused, and named.
  const again = tryLock(path);
  assert.ok(!isHeldLock(again));
  assert.equal(again.heldBy?.pid, process.pid);
  mine.release();
  mine.release(); // twice is harmless
  const third = tryLock(path);
  assert.ok(isHeldLock(third));
  third.release();
  assert.ok(existsSync(lockDbPath(path)), 'the kernel-lock file stays: replacing it would split the lock');
}));

test('acquireLock waits up to waitMs for a holder that lets go', async () => withTempDir(async (dir) => {
  const path = join(dir, 'wait.lock');
  const first = await acquireLock(path);
  setTimeout(() => first.release(), 100);
  const second = await acquireLock(path, { waitMs: 10_000 });
  second.release();
}));
