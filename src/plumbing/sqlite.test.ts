// openSqlite: options become pragmas, a file that is not a database is refused with a clear error naming it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withTempDir } from '../testing/tmp.js';
import { openSqlite } from './sqlite.js';

test('openSqlite creates on request, applies journal and synchronous, and reopens read-only', async () => withTempDir(async (dir) => {
  const p = join(dir, 'a.db');
  assert.throws(() => openSqlite(p), { code: 'SQLITE_INVALID' });
  const db = openSqlite(p, { create: true, journal: 'delete', synchronous: 'off', busyTimeoutMs: 123 });
  assert.equal(db.pragma('journal_mode', { simple: true }), 'delete');
  assert.equal(db.pragma('synchronous', { simple: true }), 0);
  assert.equal(db.pragma('busy_timeout', { simple: true }), 123);
  db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
  db.close();
  const ro = openSqlite(p, { readonly: true });
  assert.equal(ro.readonly, true);
  assert.equal(ro.prepare('SELECT x FROM t').pluck().get(), 1);
  assert.throws(() => ro.exec('INSERT INTO t VALUES (2)'));
  ro.close();
}));

test('a file that is not SQLite is refused with the given code, naming the file', async () => withTempDir(async (dir) => {
  const p = join(dir, 'junk.db');
  writeFileSync(p, 'this is not a database, but it is long enough to have a header of sorts......');
  assert.throws(() => openSqlite(p, { readonly: true, errorCode: 'CATALOG_INVALID', what: 'catalog' }),
    (e: Error & { code?: string }) => e.code === 'CATALOG_INVALID' && e.message.includes('catalog') && e.message.includes('junk.db'));
  assert.throws(() => openSqlite(p), { code: 'SQLITE_INVALID' });
}));

test('processes creating one WAL database at the same moment all open it (the journal switch waits, no SQLITE_BUSY)', async () => withTempDir(async (dir) => {
  // Each child spins on a go file, then opens; the switch to WAL is what lost the race (serve's workers).
  const child = `
    const { existsSync } = await import('node:fs');
    const { openSqlite } = await import(process.argv[1]);
    const [go, file] = process.argv.slice(2);
    process.stdout.write('ready\\n');
    while (!existsSync(go)) { /* spin: every child must leave the barrier within microseconds */ }
    try { openSqlite(file, { create: true, journal: 'wal', busyTimeoutMs: 5000 }).close(); process.stdout.write('ok\\n'); }
    catch (e) { process.stdout.write('ERR ' + e.message + '\\n'); }`;
  const lib = fileURLToPath(new URL('./sqlite.js', import.meta.url));
  const failures: string[] = [];
  for (let round = 0; round < 15; round++) {
    const go = join(dir, `go-${round}`), file = join(dir, `r${round}.db`);
    const kids = Array.from({ length: 4 }, () => spawn(process.execPath, ['--input-type=module', '-e', child, lib, go, file], { stdio: ['ignore', 'pipe', 'inherit'] }));
    const outs = kids.map((k) => new Promise<string>((resolve) => { let s = ''; k.stdout.on('data', (d: Buffer) => { s += d; }); k.on('close', () => resolve(s)); }));
    await Promise.all(kids.map((k) => new Promise<void>((resolve) => k.stdout.once('data', () => resolve()))));
    writeFileSync(go, '');
    for (const o of await Promise.all(outs)) if (o !== 'ready\nok\n') failures.push(`round ${round}: ${o.trim()}`);
  }
  assert.deepEqual(failures, []);
}));
