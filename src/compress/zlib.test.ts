import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isGridboxError } from '../errors.js';
import { compressZlib, compressZlibAsync, inflateZlib, inflateZlibStream, parseCompressionAlgorithm } from './zlib.js';

const code = (c: string) => (e: unknown) => isGridboxError(e) && e.code === c;

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of it) parts.push(p);
  return Buffer.concat(parts);
}

test('compression is RFC 1950 zlib at level 6 and inflates back', async () => {
  const data = Buffer.from('abc'.repeat(10000));
  const z = compressZlib(data);
  assert.deepEqual(z.subarray(0, 2), Buffer.from([0x78, 0x9c]));
  assert.deepEqual(await compressZlibAsync(data), z);
  assert.deepEqual(inflateZlib(z), data);
  assert.deepEqual(compressZlib(Buffer.alloc(0)), Buffer.from('789c030000000001', 'hex'));
});

test('inflate refuses a zlib bomb past the cap, one-shot and streaming', async () => {
  const bomb = compressZlib(Buffer.alloc(8 << 20));
  assert.ok(bomb.length < 16 << 10);
  assert.throws(() => inflateZlib(bomb, { maxBytes: 1 << 20 }), code('COMPRESSION_BAD'));
  const pieces = [bomb.subarray(0, 100), bomb.subarray(100)];
  await assert.rejects(collect(inflateZlibStream(pieces, { maxBytes: 1 << 20, label: 'bomb' })), code('COMPRESSION_BAD'));
  assert.equal((await collect(inflateZlibStream(pieces, { maxBytes: 8 << 20 }))).length, 8 << 20);
});

test('streaming inflate handles input cut at every byte boundary', async () => {
  const data = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 251));
  const z = compressZlib(data);
  const oneByOne = Array.from(z, (b) => Buffer.from([b]));
  assert.deepEqual(await collect(inflateZlibStream(oneByOne)), data);
});

test('truncated streams are STORE_TRUNCATED, garbage is COMPRESSION_BAD', async () => {
  const z = compressZlib(Buffer.from('x'.repeat(5000)));
  assert.throws(() => inflateZlib(z.subarray(0, z.length - 3)), code('STORE_TRUNCATED'));
  await assert.rejects(collect(inflateZlibStream([z.subarray(0, z.length - 3)])), code('STORE_TRUNCATED'));
  assert.throws(() => inflateZlib(Buffer.from('garbage!')), code('COMPRESSION_BAD'));
  await assert.rejects(collect(inflateZlibStream([Buffer.from('garbage!')])), code('COMPRESSION_BAD'));
});

test('compression names parse as the server config spells them', () => {
  assert.equal(parseCompressionAlgorithm('default'), 'zlib');
  assert.equal(parseCompressionAlgorithm('none'), 'none');
  assert.throws(() => parseCompressionAlgorithm('gzip'), code('USAGE'));
});
