import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { readTar, type TarItem, type TarWarning, type TarReadOptions } from './tar-reader.js';
import { decompressLayer, detectCompression } from './decompress.js';
import { buildTar, gnuLongNameFile, gzip, zstdCompress } from '../testing/images.js';
import { isGridboxError } from '../errors.js';

async function readAll(data: Buffer, opts: TarReadOptions = {}): Promise<{ items: (TarItem & { text?: string })[]; warnings: TarWarning[] }> {
  const warnings: TarWarning[] = [];
  const items: (TarItem & { text?: string })[] = [];
  for await (const it of readTar(Readable.from([data]), { onWarning: (w) => warnings.push(w), ...opts })) {
    let text: string | undefined;
    if (it.content) { const parts: Buffer[] = []; for await (const c of it.content) parts.push(c); text = Buffer.concat(parts).toString(); }
    items.push({ ...it, text });
  }
  return { items, warnings };
}

test('readTar() normalises names and yields files, dirs, symlinks, hardlinks, devices, fifos', async () => {
  const tar = await buildTar([
    { name: './', type: 'directory' },
    { name: './etc/', type: 'directory' },
    { name: './etc/hostname', content: 'box\n' },
    { name: 'etc/link', type: 'symlink', linkname: 'hostname' },
    { name: 'etc/hard', type: 'link', linkname: './etc/hostname' },
    { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0 },
    { name: 'run/fifo', type: 'fifo' },
    { name: 'usr/bin/su', content: 'x', mode: 0o4755 },
  ]);
  const { items, warnings } = await readAll(tar);
  assert.deepEqual(warnings, []);
  assert.deepEqual(items.map((i) => [i.entry.path, i.entry.type]), [
    ['', 'dir'], ['etc', 'dir'], ['etc/hostname', 'file'], ['etc/link', 'symlink'], ['etc/hard', 'file'],
    ['dev/null', 'chardev'], ['dev/sda', 'blockdev'], ['run/fifo', 'fifo'], ['usr/bin/su', 'file'],
  ]);
  assert.equal(items[2].text, 'box\n');
  assert.equal(items[2].entry.size, 4);
  assert.equal(items[3].entry.target, 'hostname');
  assert.equal(items[4].linkTo, 'etc/hostname');
  assert.equal(items[5].entry.rdev, (1 << 8) | 3);
  assert.equal(items[8].entry.mode, 0o4755);
});

test('readTar() reads PAX long/UTF-8 names, GNU long names and SCHILY xattrs', async () => {
  const long = `app/${'d'.repeat(120)}/${'f'.repeat(110)}.txt`;
  const gnuLong = `opt/${'g'.repeat(150)}/file`;
  const tar = await buildTar([
    { name: long, content: 'long' },
    { name: 'app/grüße-ñ-日本.txt', content: 'utf8' },
    { name: gnuLong, raw: gnuLongNameFile(gnuLong, 'gnu') },
    { name: 'bin/ping', content: 'p', pax: { 'SCHILY.xattr.security.capability': 'cap', 'SCHILY.xattr.user.k': 'v' } },
  ]);
  const { items } = await readAll(tar);
  assert.deepEqual(items.map((i) => i.entry.path), [long, 'app/grüße-ñ-日本.txt', gnuLong, 'bin/ping']);
  assert.equal(items[2].text, 'gnu');
  assert.deepEqual(Object.keys(items[3].entry.xattrs ?? {}).sort(), ['security.capability', 'user.k']);
  assert.equal(items[3].entry.xattrs?.['user.k'].toString(), 'v');
});

test('readTar() skips ".." and absolute names with OCI_UNSAFE_PATH warnings and keeps the rest', async () => {
  const tar = await buildTar([
    { name: '../evil', content: 'x' },
    { name: 'a/../../evil2', content: 'x' },
    { name: '/etc/passwd', content: 'x' },
    { name: 'ok', content: 'fine' },
    { name: 'hl', type: 'link', linkname: '../../etc/shadow' },
  ]);
  const { items, warnings } = await readAll(tar);
  assert.deepEqual(items.map((i) => i.entry.path), ['ok']);
  assert.equal(items[0].text, 'fine');
  assert.equal(warnings.length, 4);
  assert.ok(warnings.every((w) => w.code === 'OCI_UNSAFE_PATH'));
  assert.match(warnings[0].message, /"\.\.\/evil".*escapes the root/);
  assert.match(warnings[2].message, /absolute path/);
  assert.match(warnings[3].message, /hard link to "\.\.\/\.\.\/etc\/shadow" outside the root/);
});

test('readTar() under strict throws OCI_UNSAFE_PATH on the first unsafe name', async () => {
  const tar = await buildTar([{ name: 'ok', content: 'x' }, { name: '../evil', content: 'x' }]);
  await assert.rejects(readAll(tar, { strict: true }), (e) => isGridboxError(e, 'OCI_UNSAFE_PATH') && /"\.\.\/evil"/.test(e.message));
});

test('readTar() strips leading "/" when asked to', async () => {
  const tar = await buildTar([{ name: '/etc/passwd', content: 'x' }]);
  const { items } = await readAll(tar, { absoluteNames: 'strip' });
  assert.deepEqual(items.map((i) => i.entry.path), ['etc/passwd']);
});

test('readTar() refuses a PAX header past its limit with TAR_LIMIT', async () => {
  const tar = await buildTar([{ name: 'a', content: 'x' }, { name: 'b', content: 'y', pax: { comment: 'z'.repeat(70_000) } }]);
  await assert.rejects(readAll(tar, { maxPaxBytes: 64 * 1024 }), (e) => isGridboxError(e, 'TAR_LIMIT') && /PAX header of \d+ bytes/.test(e.message));
  // beyond tar-stream's own 4 MiB buffer cap as well
  const huge = await buildTar([{ name: 'c', content: 'y', pax: { comment: 'z'.repeat(5 * 2 ** 20) } }]);
  await assert.rejects(readAll(huge), (e) => isGridboxError(e, 'TAR_LIMIT'));
});

test('readTar() refuses paths past the length and depth limits with TAR_LIMIT', async () => {
  const deep = await buildTar([{ name: Array.from({ length: 40 }, () => 'd').join('/'), content: 'x' }]);
  await assert.rejects(readAll(deep, { maxPathDepth: 32 }), (e) => isGridboxError(e, 'TAR_LIMIT') && /deeper than 32/.test(e.message));
  const long = await buildTar([{ name: 'x'.repeat(300), content: 'x' }]);
  await assert.rejects(readAll(long, { maxPathBytes: 255 }), (e) => isGridboxError(e, 'TAR_LIMIT') && /exceeds 255/.test(e.message));
});

test('readTar() fails a truncated archive with TAR_INVALID but accepts a missing end marker', async () => {
  const tar = await buildTar([{ name: 'a', content: 'x'.repeat(2000) }, { name: 'b', content: 'y' }]);
  await assert.rejects(readAll(tar.subarray(0, 1200)), (e) => isGridboxError(e, 'TAR_INVALID') && /Unexpected end/.test(e.message));
  const noEnd = await buildTar([{ name: 'a', content: 'x' }], { noEnd: true });
  const { items } = await readAll(noEnd);
  assert.deepEqual(items.map((i) => i.text), ['x']);
});

test('readTar() drains contents the consumer skipped', async () => {
  const tar = await buildTar([{ name: 'a', content: 'x'.repeat(100_000) }, { name: 'b', content: 'y' }]);
  const paths: string[] = [];
  for await (const it of readTar(Readable.from([tar]))) paths.push(it.entry.path);
  assert.deepEqual(paths, ['a', 'b']);
});

test('decompressLayer() detects gzip, zstd and plain by magic bytes', async (t) => {
  const tar = await buildTar([{ name: 'f', content: 'hello' }]);
  const z = zstdCompress(tar);
  const inputs: [string, Buffer][] = [['none', tar], ['gzip', gzip(tar)]];
  if (z) inputs.push(['zstd', z]); else t.diagnostic('zstd CLI missing: zstd case not run');
  for (const [kind, data] of inputs) {
    assert.equal(detectCompression(data), kind);
    const { items } = await readAll(await collect(decompressLayer(chunked(data))));
    assert.equal(items[0].text, 'hello', kind);
  }
});

test('decompressLayer() stops a gzip bomb with TAR_LIMIT', async () => {
  const bomb = gzip(Buffer.alloc(8 * 2 ** 20));
  await assert.rejects(collect(decompressLayer(chunked(bomb), { maxBytes: 2 ** 20 })), (e) => isGridboxError(e, 'TAR_LIMIT') && /exceeds 1048576 bytes/.test(e.message));
  await assert.rejects(collect(decompressLayer(chunked(bomb), { maxRatio: 100, ratioFloorBytes: 2 ** 20 })), (e) => isGridboxError(e, 'TAR_LIMIT') && /ratio/.test(e.message));
});

test('decompressLayer() fails truncated gzip and zstd with TAR_INVALID', async () => {
  const tar = await buildTar([{ name: 'f', content: Buffer.alloc(50_000, 7) }]);
  const gz = gzip(tar);
  await assert.rejects(collect(decompressLayer(chunked(gz.subarray(0, gz.length - 20)))), (e) => isGridboxError(e, 'TAR_INVALID') && /gzip/.test(e.message));
  const z = zstdCompress(tar);
  if (z) await assert.rejects(collect(decompressLayer(chunked(z.subarray(0, z.length - 20)))), (e) => isGridboxError(e, 'TAR_INVALID') && /zstd/.test(e.message));
});

async function* chunked(data: Buffer, size = 1000): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function collect(r: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of r) out.push(c);
  return Buffer.concat(out);
}
