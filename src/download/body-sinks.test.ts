// objectSink on both of its zlib paths: bodies up to SMALL_BODY_BYTES are held and inflated in one call after
// their hash checked out, larger ones stream through a zlib inflater from the piece that passed the limit.
// Each case runs on a body below and above the limit, delivered in pieces as a socket would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { isGridboxError } from '../errors.js';
import type { ObjectId } from '../hash/object-id.js';
import { objectSink, SMALL_BODY_BYTES, type ObjectOutput } from './body-sinks.js';

/** Counts and keeps what it is given, so a test sees what reached the output before a failure. */
class Recorder implements ObjectOutput {
  parts: Buffer[] = [];
  written = 0;
  aborted = false;
  write(c: Buffer): void { this.parts.push(Buffer.from(c)); this.written += c.length; }
  abort(): void { this.aborted = true; }
  bytes(): Buffer { return Buffer.concat(this.parts); }
}

const idOf = (raw: Buffer): ObjectId => ({ algorithm: 'sha1', hex: createHash('sha1').update(raw).digest('hex') } as ObjectId);

async function feed(raw: Buffer, o: { id?: ObjectId; expectedSize?: number; max?: number; piece?: number } = {}): Promise<{ out: Recorder; error?: unknown }> {
  const out = new Recorder();
  const sink = objectSink(o.id ?? idOf(raw), 'test/object', 'zlib', o.expectedSize, o.max ?? 1 << 30, out);
  try {
    const piece = o.piece ?? 7 * 1024;
    for (let at = 0; at < raw.length; at += piece) await sink.write(raw.subarray(at, at + piece));
    await sink.finish();
    return { out };
  } catch (error) {
    return { out, error };
  }
}

/** Plain bytes whose deflated form is below (compressible) or above (random) the small-body limit. */
function plainOf(kind: 'small' | 'large'): Buffer {
  return kind === 'small' ? Buffer.from('grid job input line\n'.repeat(20_000)) : randomBytes(3 * SMALL_BODY_BYTES);
}

for (const kind of ['small', 'large'] as const) {
  test(`${kind} body: inflated output is the plain content, whatever the piece size`, async () => {
    const plain = plainOf(kind);
    const raw = deflateSync(plain);
    assert.equal(raw.length <= SMALL_BODY_BYTES, kind === 'small', `the ${kind} case must be on its own path (${raw.length} bytes)`);
    for (const piece of [1000, 16 * 1024, raw.length]) {
      const { out, error } = await feed(raw, { expectedSize: plain.length, piece });
      assert.equal(error, undefined);
      assert.ok(out.bytes().equals(plain));
    }
  });

  test(`${kind} body: a bomb stops at the size cap (STORE_SIZE_MISMATCH), having written no more than the cap`, async () => {
    // 1,000 times the cap in zeros; the small one deflates to ~10 KiB, the large one to well over the limit.
    const cap = kind === 'small' ? 10 * 1024 : 1024 * 1024;
    const raw = kind === 'small' ? deflateSync(Buffer.alloc(cap * 1000)) : deflateSync(Buffer.concat([randomBytes(SMALL_BODY_BYTES * 2), Buffer.alloc(cap * 100)]));
    assert.equal(raw.length <= SMALL_BODY_BYTES, kind === 'small');
    const { out, error } = await feed(raw, { max: cap });
    assert.ok(isGridboxError(error, 'STORE_SIZE_MISMATCH'), String(error));
    assert.ok(out.written <= cap, `${out.written} bytes written past the cap of ${cap}`);
    assert.ok(out.aborted);
  });

  test(`${kind} body: a correctly hashed but truncated zlib stream is COMPRESSION_BAD`, async () => {
    const plain = plainOf(kind);
    const raw = deflateSync(plain).subarray(0, -40);
    const { error, out } = await feed(raw, { expectedSize: plain.length });
    assert.ok(isGridboxError(error, 'COMPRESSION_BAD'), String(error));
    assert.ok(out.aborted);
  });

  test(`${kind} body: a corrupt body is a hash mismatch, and a held one is never inflated`, async () => {
    const plain = plainOf(kind);
    const good = deflateSync(plain);
    const bad = Buffer.from(good);
    bad[bad.length >> 1] ^= 0xff;
    const { error, out } = await feed(bad, { id: idOf(good), expectedSize: plain.length });
    assert.ok(isGridboxError(error, 'STORE_HASH_MISMATCH'), String(error));
    if (kind === 'small') assert.equal(out.written, 0);
    assert.ok(out.aborted);
  });

  test(`${kind} body: content shorter or longer than the catalog's size is STORE_SIZE_MISMATCH`, async () => {
    const plain = plainOf(kind);
    const raw = deflateSync(plain);
    for (const expectedSize of [plain.length + 1, plain.length - 1]) {
      const { error } = await feed(raw, { expectedSize });
      assert.ok(isGridboxError(error, 'STORE_SIZE_MISMATCH'), `${expectedSize}: ${String(error)}`);
    }
  });
}
