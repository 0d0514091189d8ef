import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withTempDir } from '../testing/tmp.js';
import { checkRepository } from './check.js';
import { readHead } from './head.js';
import { CRASH_POINTS } from './publisher.js';
import { repoLayout } from './repo-layout.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const FQRN = 'crash.gridbox.local';

function gridbox(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
}

test(`publish killed with SIGKILL at each of ${CRASH_POINTS.length} points leaves the previous revision, check clean, next publish ok`, { timeout: 300_000 }, async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, 'repo');
    const src = join(dir, 'src');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'sub', '.cvmfscatalog'), '');
    for (let i = 0; i < 40; i++) writeFileSync(join(src, i % 2 ? 'sub' : '', `f${i}`), randomBytes(2000));
    writeFileSync(join(src, 'big'), randomBytes(3 << 20));
    const chunkFlags = ['--chunk-min', '256k', '--chunk-avg', '512k', '--chunk-max', '1M'];
    let r = gridbox(['mkfs', FQRN, '--root', root]);
    assert.equal(r.status, 0, r.stderr);
    const layout = repoLayout(root, FQRN);
    for (const point of CRASH_POINTS) {
      // New content each round so that every stage has work to do.
      writeFileSync(join(src, 'sub', `new-${point}`), randomBytes(5000));
      writeFileSync(join(src, 'big'), randomBytes(3 << 20));
      const before = readFileSync(layout.manifest);
      const revBefore = (await readHead(layout)).revision;
      r = gridbox(['publish', FQRN, src, '--root', root, ...chunkFlags], { GRIDBOX_CRASH_POINT: point });
      assert.equal(r.signal, 'SIGKILL', `killed at ${point}: ${r.stderr}`);
      const revAfter = (await readHead(layout)).revision;
      if (point === 'manifest-renamed') assert.equal(revAfter, revBefore + 1, 'the rename is the commit');
      else {
        assert.ok(readFileSync(layout.manifest).equals(before), `manifest untouched when killed at ${point}`);
        assert.equal(revAfter, revBefore);
      }
      await checkRepository(layout);
      r = gridbox(['publish', FQRN, src, '--root', root, ...chunkFlags]);
      assert.equal(r.status, 0, `publish after a kill at ${point}: ${r.stderr}`);
      assert.equal((await readHead(layout)).revision, revAfter + 1);
      // The next transaction removed what the killed one left: its temp dir and its objects' temp files.
      assert.deepEqual(readdirSync(layout.state).filter((n) => n.startsWith('txn-')), [], `no txn dir left after a kill at ${point}`);
      assert.deepEqual(readdirSync(join(layout.data, 'txn')), [], `no object temp file left after a kill at ${point}`);
    }
    r = gridbox(['check', FQRN, '--root', root]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /ok/);
  });
});
