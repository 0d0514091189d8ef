// The addon's fast READ table (native/fuse-ioctl/fast_read.c) without a kernel: READ requests built by hand, the
// replies written to a plain file standing in for /dev/fuse. Thousands of nodes registered, dropped and registered
// again (the table grows and deletes by shifting entries back), each READ must return its own node's bytes or be
// left to the session; a missing or resized file, a handle's READ and an unknown node are never answered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir } from '../testing/tmp.js';
import { loadNativeAddon } from '../plumbing/native-addon.js';
import { createFastRead } from './fast-read.js';

const skip = loadNativeAddon()?.fastReadServe === undefined ? 'the gridbox-fuse-ioctl addon with fastReadServe is not built' : undefined;

function readRequest(unique: number, nodeid: number, offset: number, size: number, fh = 0): Buffer {
  const b = Buffer.alloc(80);
  b.writeUInt32LE(80, 0);
  b.writeUInt32LE(15, 4); // FUSE_READ
  b.writeBigUInt64LE(BigInt(unique), 8);
  b.writeBigUInt64LE(BigInt(nodeid), 16);
  b.writeBigUInt64LE(BigInt(fh), 40);
  b.writeBigUInt64LE(BigInt(offset), 48);
  b.writeUInt32LE(size, 56);
  return b;
}

/** The replies written so far: unique -> payload (error 0 only; the addon never writes an error). */
function replies(file: string): Map<number, Buffer> {
  const all = readFileSync(file);
  const out = new Map<number, Buffer>();
  for (let off = 0; off < all.length;) {
    const len = all.readUInt32LE(off);
    assert.equal(all.readInt32LE(off + 4), 0, 'no error replies');
    out.set(Number(all.readBigUInt64LE(off + 8)), all.subarray(off + 16, off + len));
    off += len;
  }
  return out;
}

test('fast READ table: thousands of nodes registered, dropped and re-registered each read back their own bytes', { skip }, async () => {
  const dir = await makeTempDir('gridbox-fast-read-table-');
  const dev = join(dir, 'dev');
  const fd = openSync(dev, 'a');
  try {
    const fr = createFastRead(fd)!;
    const N = 5000;
    const content = (i: number): Buffer => Buffer.from(`file ${i} `.repeat(1 + (i % 7)));
    // Half the nodeids sequential (a mount's), half multiples of 2^16, which all hash to one slot of the table:
    // one long probe run, so deleting from its middle must shift what follows back (or lose it).
    const id = (i: number): number => (i % 2 === 0 ? i * 65536 : i + 1);
    for (let i = 1; i <= N; i++) {
      writeFileSync(join(dir, `o${i}`), content(i));
      fr.set(id(i), join(dir, `o${i}`), content(i).length);
    }
    // Drop every third, re-register every ninth of those (same nodeid, new path with the same bytes).
    for (let i = 3; i <= N; i += 3) assert.equal(fr.drop(id(i)), false, 'not read yet');
    for (let i = 9; i <= N; i += 9) {
      writeFileSync(join(dir, `again${i}`), content(i));
      fr.set(id(i), join(dir, `again${i}`), content(i).length);
    }
    let unique = 1;
    const asked = new Map<number, number>();
    for (let i = 1; i <= N; i++) {
      const answered = fr.serve(readRequest(unique, id(i), 0, 4096));
      const dropped = i % 3 === 0 && i % 9 !== 0;
      assert.equal(answered, !dropped, `node ${i}: answered ${answered}`);
      if (answered) asked.set(unique, i);
      unique++;
    }
    const got = replies(dev);
    assert.equal(got.size, asked.size);
    for (const [u, i] of asked) assert.deepEqual(got.get(u), content(i), `node ${i}'s own bytes`);

    // Ranges: an offset inside the file, a size smaller than the rest, an offset past the end (empty reply).
    const i = 22;
    const c = content(i);
    assert.equal(fr.serve(readRequest(unique, id(i), 3, 5)), true);
    assert.deepEqual(replies(dev).get(unique++), c.subarray(3, 8));
    assert.equal(fr.serve(readRequest(unique, id(i), c.length + 10, 100)), true);
    assert.equal(replies(dev).get(unique++)?.length, 0);

    // Never answered: a handle's READ, an unknown node, a missing file, a file whose size is not the entry's.
    assert.equal(fr.serve(readRequest(unique++, id(i), 0, 10, 5)), false, 'fh != 0 is the session\'s');
    assert.equal(fr.serve(readRequest(unique++, 424242424242, 0, 10)), false, 'unknown node');
    assert.equal(fr.serve(readRequest(unique++, 0, 0, 10)), false, 'nodeid 0');
    rmSync(join(dir, 'o1'));
    assert.equal(fr.serve(readRequest(unique++, id(1), 0, 10)), false, 'missing cache file');
    truncateSync(join(dir, 'o2'), 1);
    assert.equal(fr.serve(readRequest(unique++, id(2), 0, 10)), false, 'resized cache file');

    // What was read comes back once; counters add up; a dropped node says whether it was read.
    const t = fr.take();
    assert.equal(t.nodeids.length, asked.size, 'each node read once is reported once');
    assert.ok(t.reads >= asked.size + 2 && t.bytes > 0);
    assert.equal(fr.take().nodeids.length, 0, 'and only once');
    assert.equal(fr.serve(readRequest(unique++, id(4), 0, 10)), true);
    assert.equal(fr.drop(id(4)), true, 'read since the last take');
    assert.equal(fr.serve(readRequest(unique++, id(4), 0, 10)), false, 'gone after the drop');
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});
