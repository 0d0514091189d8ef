// A publish whose store cannot be written (a read-only srv/ data dir) fails with a STORE_* code naming
// the object and its path — the store failed, not the source — and leaves the served revision and no
// temp files behind. Root ignores permission bits, so as root the data dir is made read-only by a bind
// mount in a private mount namespace (unshare -m) around the publishing child.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withTempDir } from '../testing/tmp.js';
import { repoLayout } from './repo-layout.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const FQRN = 'ro.gridbox.local';

function setWritable(data: string, writable: boolean): void {
  for (const d of [data, ...readdirSync(data).map((n) => join(data, n))]) chmodSync(d, writable ? 0o755 : 0o555);
}

test('publish into a read-only store fails with STORE_IO naming the object and path, not PUBLISH_SOURCE', async (t) => {
  await withTempDir(async (dir) => {
    const root = join(dir, 'repo');
    const src = join(dir, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'small'), 'small file\n');
    writeFileSync(join(src, 'big'), randomBytes(6 << 20));
    let r = spawnSync(process.execPath, [MAIN, 'mkfs', FQRN, '--root', root], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const layout = repoLayout(root, FQRN);
    const before = readFileSync(layout.manifest);
    const publish = [process.execPath, MAIN, 'publish', FQRN, src, '--root', root];
    if (process.getuid?.() === 0) {
      const unshare = spawnSync('unshare', ['-m', 'true']);
      if (unshare.status !== 0) { t.skip(`root without mount namespaces (unshare -m: ${unshare.stderr})`); return; }
      r = spawnSync('unshare', ['-m', 'sh', '-c', 'mount --make-rprivate / && mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"', 'sh', layout.data, ...publish], { encoding: 'utf8' });
    } else {
      setWritable(layout.data, false);
      try {
        r = spawnSync(publish[0], publish.slice(1), { encoding: 'utf8' });
      } finally {
        setWritable(layout.data, true);
      }
    }
    assert.notEqual(r.status, 0, 'the publish fails');
    assert.match(r.stderr, /\[STORE_IO\]/, r.stderr);
    assert.doesNotMatch(r.stderr, /PUBLISH_SOURCE/);
    assert.match(r.stderr, /object "[0-9a-f]{40}P?"/, 'the object is named');
    assert.ok(r.stderr.includes(layout.data), `the path is named: ${r.stderr}`);
    assert.ok(readFileSync(layout.manifest).equals(before), 'the served revision stays');
    assert.deepEqual(readdirSync(join(layout.data, 'txn')), [], 'no temp file is left');
    // The same publish into a writable store then succeeds.
    r = spawnSync(publish[0], publish.slice(1), { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });
});
