// The shims move node's own start-up variables aside and the runtime bundle puts them back (shim-env.ts): the
// sh lines and the restore agree on every variable, set-but-empty counts as set, and only what was moved returns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { MOVED_NODE_VARS, SAVED_PREFIX, restoreShimEnv, shimEnvLines } from './shim-env.js';

/** The environment the shim's lines hand to node, from `env` (sh, then `env -0`), less the PWD sh adds itself. */
function afterShim(env: Record<string, string>): Record<string, string> {
  const r = spawnSync('/bin/sh', ['-c', `${shimEnvLines()}\nexec /usr/bin/env -0`], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return Object.fromEntries(r.stdout.split('\0').filter((l) => l !== '' && !l.startsWith('PWD=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

test('every moved variable is absent for node and comes back exactly, empty values included', () => {
  for (const name of MOVED_NODE_VARS) {
    for (const value of ['--x y "z"', '']) {
      const seen = afterShim({ [name]: value, OTHER: '1' });
      assert.equal(seen[name], undefined, `${name} reaches node`);
      assert.equal(seen[`${SAVED_PREFIX}${name}`], value);
      restoreShimEnv(seen);
      assert.deepEqual(seen, { [name]: value, OTHER: '1' }, name);
    }
  }
});

test('unset stays unset, a stray saved name is dropped, and https posting keeps the extra CAs for node', () => {
  const stray = afterShim({ [`${SAVED_PREFIX}NODE_OPTIONS`]: 'stray', [`${SAVED_PREFIX}NODE_EXTRA_CA_CERTS`]: 'stray' });
  restoreShimEnv(stray);
  assert.deepEqual(stray, {});
  const https = afterShim({ GRIDBOX_ACCOUNTING_URL: 'https://acct.example/', NODE_EXTRA_CA_CERTS: '/ca.pem', [`${SAVED_PREFIX}NODE_EXTRA_CA_CERTS`]: 'stray' });
  assert.deepEqual(https, { GRIDBOX_ACCOUNTING_URL: 'https://acct.example/', NODE_EXTRA_CA_CERTS: '/ca.pem' });
});
