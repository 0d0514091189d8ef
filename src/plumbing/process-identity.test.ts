// A pid is not an identity: a recycled pid (same number, other start time or boot) is not alive as the old process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { formatIdentity, identityOf, isAlive, parseIdentity, selfIdentity } from './process-identity.js';

test('selfIdentity is alive; the same pid with another start time or boot id is not', () => {
  const me = selfIdentity();
  assert.equal(me.pid, process.pid);
  assert.match(me.bootId, /^[0-9a-f-]{36}$/);
  assert.ok(me.startTicks > 0);
  assert.equal(isAlive(me), true);
  assert.equal(isAlive(process.pid), true);
  assert.equal(isAlive({ ...me, startTicks: me.startTicks + 1 }), false, 'a recycled pid');
  assert.equal(isAlive({ ...me, bootId: '00000000-0000-0000-0000-000000000000' }), false, 'a previous boot');
  assert.deepEqual(identityOf(process.pid), me);
});

test('an exited process is not alive, by pid or by identity', () => {
  const pid = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
  assert.equal(isAlive(pid), false);
  assert.equal(isAlive({ pid, bootId: selfIdentity().bootId, startTicks: 5 }), false);
  assert.equal(identityOf(pid), undefined);
  assert.equal(isAlive(0), false);
  assert.equal(isAlive(-1), false);
});

test('formatIdentity and parseIdentity round-trip and refuse anything else', () => {
  const me = selfIdentity();
  const text = formatIdentity(me);
  assert.doesNotMatch(text, /[\s/]/);
  assert.deepEqual(parseIdentity(text), me);
  for (const bad of ['', '123', '123.4', 'abc.1@x', '1.2@boot/../x', `${text}-extra`, '0.5@ab']) assert.equal(parseIdentity(bad), undefined, bad);
});
