// Conformance of the xor32 chunker with the upstream CernVM-FS vectors (fixtures/cvmfs/chunk-vectors.json).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isGridboxError } from '../errors.js';
import { chunkOffsets, isAllZero, MAX_CHUNK_MAX_BYTES, Xor32Chunker, xor32RunningValues } from './chunker.js';
import { fixturesDir } from '../testing/fixtures.js';

interface Vectors {
  xor32_running_values: { pairs: [number, number][] };
  cut_marks: { data: { length_bytes: number }; min_bytes: number; avg_bytes: number; max_bytes: number; expected: number[] };
}


const vectors = JSON.parse(readFileSync(join(fixturesDir(), 'chunk-vectors.json'), 'utf8')) as Vectors;

/**
 * The upstream test-data generator (MMIX LCG, cvmfs/util/prng.h), seed 42: each byte is
 * floor(double(state) * 256 / 2^64) % 256 after advancing the state. The state is two uint32 halves;
 * hi * 2^32 + lo rounds once to the nearest double, exactly as the C++ uint64 → double conversion does.
 */
function prngBytes(length: number, seed = 42): Uint8Array {
  const out = new Uint8Array(length);
  const A_HI = 0x5851f42d, A_LO = 0x4c957f2d, C_HI = 0x14057b7e, C_LO = 0xf767814f;
  const a0 = A_LO & 0xffff, a1 = A_LO >>> 16;
  let hi = 0, lo = seed >>> 0;
  for (let n = 0; n < length; n++) {
    // state * A mod 2^64, from 16-bit partial products of the low halves plus the cross terms.
    const b0 = lo & 0xffff, b1 = lo >>> 16;
    const p00 = a0 * b0, mid = a0 * b1 + a1 * b0, p11 = a1 * b1;
    const t = p00 + (mid % 65536) * 65536;
    const prodLo = t >>> 0;
    const prodHi = p11 + Math.floor(mid / 65536) + Math.floor(t / 4294967296) + Math.imul(hi, A_LO) + Math.imul(lo, A_HI);
    const sumLo = prodLo + C_LO;
    lo = sumLo >>> 0;
    hi = (prodHi + C_HI + (sumLo >= 4294967296 ? 1 : 0)) >>> 0;
    out[n] = Math.floor(((hi * 4294967296 + lo) * 256) / 18446744073709551616) % 256;
  }
  return out;
}

test('the rolling checksum reproduces the upstream running values', () => {
  const pairs = vectors.xor32_running_values.pairs;
  assert.ok(pairs.length > 30);
  assert.deepEqual(xor32RunningValues(pairs.map((p) => p[0])), pairs.map((p) => p[1]));
});

test('the test-data generator matches a BigInt reference on its first values', () => {
  const fast = prngBytes(2000);
  let s = 42n;
  const M = (1n << 64n) - 1n;
  for (let i = 0; i < fast.length; i++) {
    s = (s * 6364136223846793005n + 1442695040888963407n) & M;
    assert.equal(fast[i], Math.floor((Number(s) * 256) / 2 ** 64) % 256, `byte ${i}`);
  }
});

test('the chunker reproduces all 104 upstream cut marks whatever the read-buffer size', () => {
  const cm = vectors.cut_marks;
  const data = prngBytes(cm.data.length_bytes);
  const sizes = { minBytes: cm.min_bytes, avgBytes: cm.avg_bytes, maxBytes: cm.max_bytes };
  assert.equal(cm.expected.length, 104);
  assert.deepEqual(chunkOffsets(data, sizes), cm.expected);
  for (const bufferSize of [100_000, 512_000, 1_024_000, 10 << 20, 4099]) {
    const chunker = new Xor32Chunker(sizes);
    const cuts: number[] = [];
    for (let off = 0; off < data.length; off += bufferSize) cuts.push(...chunker.push(data.subarray(off, off + bufferSize)));
    assert.deepEqual(cuts, cm.expected, `buffer size ${bufferSize}`);
    assert.equal(chunker.offset, data.length);
  }
});

test('chunks respect min and max: hard cuts at max on data without candidates, no cut at exactly max', () => {
  const sizes = { minBytes: 64, avgBytes: 128, maxBytes: 256 };
  // All-zero data keeps the checksum at 0, never a candidate: every chunk is cut at max.
  assert.deepEqual(chunkOffsets(new Uint8Array(1000), sizes), [256, 512, 768]);
  // A file of exactly max bytes is one piece; one byte more forces a cut.
  assert.deepEqual(chunkOffsets(new Uint8Array(256), sizes), []);
  assert.deepEqual(chunkOffsets(new Uint8Array(257), sizes), [256]);
  const random = prngBytes(200_000, 7);
  const cuts = chunkOffsets(random, sizes);
  let prev = 0;
  for (const c of [...cuts]) {
    assert.ok(c - prev >= 64 && c - prev <= 256, `chunk ${prev}..${c}`);
    prev = c;
  }
  assert.ok(cuts.some((c, i) => c - (cuts[i - 1] ?? 0) < 256), 'some cuts are content-defined');
});

test('byte-by-byte feeding gives the same cuts as one buffer', () => {
  const sizes = { minBytes: 64, avgBytes: 128, maxBytes: 256 };
  const data = prngBytes(20_000, 3);
  const chunker = new Xor32Chunker(sizes);
  const cuts: number[] = [];
  for (let i = 0; i < data.length; i++) cuts.push(...chunker.push(data.subarray(i, i + 1)));
  assert.deepEqual(cuts, chunkOffsets(data, sizes));
});

test('pushZeros gives the cuts of pushing the zeros, over holes of every length between random data', () => {
  for (const sizes of [{ minBytes: 64, avgBytes: 128, maxBytes: 256 }, { minBytes: 1000, avgBytes: 3000, maxBytes: 7000 }]) {
    // Random regions and holes (some shorter than the 32-byte window, some many max long), at every phase.
    const parts: { zero: boolean; len: number }[] = [];
    const lens = [1, 5, 31, 32, 33, 63, 64, 65, 255, 256, 257, 1000, 6999, 7000, 7001, 20_000, 70_123];
    for (let i = 0; i < 120; i++) parts.push({ zero: i % 2 === 1, len: lens[(i * 7 + (i >> 2)) % lens.length] });
    const total = parts.reduce((n, p) => n + p.len, 0);
    const data = prngBytes(total, 11);
    let off = 0;
    for (const p of parts) { if (p.zero) data.fill(0, off, off + p.len); off += p.len; }
    const expected = chunkOffsets(data, sizes);
    const chunker = new Xor32Chunker(sizes);
    const cuts: number[] = [];
    off = 0;
    for (const p of parts) {
      cuts.push(...(p.zero ? chunker.pushZeros(p.len) : chunker.push(data.subarray(off, off + p.len))));
      off += p.len;
    }
    assert.deepEqual(cuts, expected, `sizes ${JSON.stringify(sizes)}`);
    assert.equal(chunker.offset, total);
    assert.ok(expected.length > 20);
  }
});

test('isAllZero tells holes from data at any position and length', () => {
  assert.equal(isAllZero(new Uint8Array(0)), true);
  assert.equal(isAllZero(new Uint8Array((1 << 20) + 3)), true);
  for (const at of [0, 1, 65535, 65536, (1 << 20) + 2]) {
    const b = new Uint8Array((1 << 20) + 3);
    b[at] = 1;
    assert.equal(isAllZero(b), false, `byte ${at}`);
  }
});

test('invalid chunk sizes are refused, including a max past the limit', () => {
  assert.ok(new Xor32Chunker({ minBytes: 1 << 20, avgBytes: 2 << 20, maxBytes: MAX_CHUNK_MAX_BYTES }));
  for (const s of [{ minBytes: 16, avgBytes: 64, maxBytes: 128 }, { minBytes: 64, avgBytes: 64, maxBytes: 128 }, { minBytes: 64, avgBytes: 128, maxBytes: 100 }, { minBytes: 1 << 20, avgBytes: 2 << 20, maxBytes: MAX_CHUNK_MAX_BYTES + 1 }]) {
    assert.throws(() => new Xor32Chunker(s), (e) => isGridboxError(e, 'USAGE'));
  }
});
