import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pseudoRandomBytes } from '../testing/raw-repo.js';
import { withTempDir } from '../testing/tmp.js';
import { FileTable } from './file-table.js';

test('FileTable keeps file bytes within its bound and reads the rest from disk, always correctly', () => withTempDir(async (dir) => {
  const files: { path: string; bytes: Buffer }[] = [];
  for (let i = 0; i < 12; i++) {
    const bytes = pseudoRandomBytes(100_000 + i, i + 1);
    const path = join(dir, `f${i}`);
    await writeFile(path, bytes);
    files.push({ path, bytes });
  }
  await mkdir(join(dir, 'sub'));
  const table = new FileTable<string>({ maxCachedBytes: 350_000, maxInlineBytes: 200_000 });
  for (let round = 0; round < 5; round++) {
    for (const f of files) {
      const v = table.open(f.path);
      assert.ok(v !== undefined && v !== 'not-file');
      assert.deepEqual(v.body, f.bytes);
      assert.ok(table.heldBytes <= 350_000, `held ${table.heldBytes}`);
    }
  }
  assert.ok(table.heldBytes > 0);
  assert.equal(table.open(join(dir, 'sub')), 'not-file');
  assert.equal(table.open(join(dir, 'missing')), undefined);
  assert.equal(table.open(join(dir, 'f0', 'below-a-file')), undefined);
  const big = join(dir, 'big');
  await writeFile(big, Buffer.alloc(300_000));
  const v = table.open(big);
  assert.ok(v !== undefined && v !== 'not-file');
  assert.equal(v.body, undefined, 'over maxInlineBytes: streamed, not read whole');
  assert.equal(v.size, 300_000);
}));
