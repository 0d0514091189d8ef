// Test images with hostile layers, each with the rule gridbox refuses it by (oci/flatten.ts), plus
// shapes that look odd but are harmless under Docker's rules and must publish. For tests only.
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { buildTar, GZ, gzip, rawHeader, type TarSpec, type TestLayer } from './images.js';

export interface HostileImage {
  layers: TestLayer[];
  /** The entry named in the refusal and the rule it broke (OCI_UNSAFE_PATH), or the error code of a broken layer. */
  entry?: string;
  rule?: string;
  code: 'OCI_UNSAFE_PATH' | 'TAR_INVALID' | 'TAR_LIMIT';
  /** Under --lenient: the paths the published image has (hostile entries skipped); absent when the layer fails anyway. */
  lenientPaths?: string[];
}

const ok: TarSpec = { name: 'ok.txt', content: 'fine' };
const gz = async (specs: TarSpec[]): Promise<TestLayer> => ({ data: gzip(await buildTar(specs)), mediaType: GZ });

/** By tag. Limits the tests pass along: decompress.maxBytes 8 MiB, tar.maxPaxBytes 64 KiB. */
export async function hostileImages(): Promise<Record<string, HostileImage>> {
  const truncated = gzip(await buildTar([ok, { name: 'big', content: Buffer.alloc(64 * 1024, 3) }]));
  return {
    dotdot: { layers: [await gz([ok, { name: '../../escape.txt', content: 'x' }])], entry: '../../escape.txt', rule: 'path-traversal', code: 'OCI_UNSAFE_PATH', lenientPaths: ['ok.txt'] },
    'dotdot-inside': { layers: [await gz([ok, { name: 'a/../../escape.txt', content: 'x' }])], entry: 'a/../../escape.txt', rule: 'path-traversal', code: 'OCI_UNSAFE_PATH', lenientPaths: ['ok.txt'] },
    'hardlink-out': { layers: [await gz([ok, { name: 'hl', type: 'link', linkname: '../../../etc/shadow' }])], entry: 'hl', rule: 'hardlink-escape', code: 'OCI_UNSAFE_PATH', lenientPaths: ['ok.txt'] },
    'symlink-parent': {
      layers: [await gz([ok, { name: 'evil', type: 'symlink', linkname: '../../../../tmp' }, { name: 'evil/planted', content: 'x' }])],
      entry: 'evil', rule: 'symlink-escape', code: 'OCI_UNSAFE_PATH', lenientPaths: ['evil', 'evil/planted', 'ok.txt'],
    },
    // The escaping symlink in a lower layer, the write through it in the next one.
    'symlink-parent-2': {
      layers: [await gz([ok, { name: 'usr/', type: 'directory' }, { name: 'usr/up', type: 'symlink', linkname: '../../../etc' }]), await gz([{ name: 'usr/up/cron.d/evil', content: 'x' }])],
      entry: 'usr/up', rule: 'symlink-escape', code: 'OCI_UNSAFE_PATH', lenientPaths: ['ok.txt', 'usr', 'usr/up', 'usr/up/cron.d', 'usr/up/cron.d/evil'],
    },
    'whiteout-escape': { layers: [await gz([ok]), await gz([{ name: 'sub/.wh...', content: '' }])], entry: 'sub/.wh...', rule: 'whiteout-escape', code: 'OCI_UNSAFE_PATH', lenientPaths: ['ok.txt'] },
    'symlink-loop': {
      layers: [await gz([ok, { name: 'l1', type: 'symlink', linkname: 'l2' }, { name: 'l2', type: 'symlink', linkname: 'l1' }, { name: 'l1/x', content: 'x' }])],
      entry: 'l1/x', rule: 'symlink-loop', code: 'OCI_UNSAFE_PATH', lenientPaths: ['l1', 'l2', 'ok.txt'],
    },
    truncated: { layers: [{ data: truncated.subarray(0, truncated.length - 100), mediaType: GZ }], code: 'TAR_INVALID' },
    bomb: { layers: [{ data: gzip(Buffer.concat([rawHeader('zeros', '0', Buffer.alloc(32 * 2 ** 20))])), mediaType: GZ }], code: 'TAR_LIMIT' },
    pax: { layers: [await gz([ok, { name: 'p', content: 'x', pax: { comment: 'c'.repeat(200_000) } }])], code: 'TAR_LIMIT' },
  };
}

/**
 * Shapes Docker's unpacker accepts, which must publish unchanged in meaning: absolute names and hard-link
 * targets (from the root), ".." that stays inside, absolute symlinks, writes through symlinked parents
 * (a merged /usr's `lib -> usr/lib`; an absolute `abs -> /etc` in a lower layer).
 * `files` and `symlinks`: what the published image must hold.
 */
export async function harmlessImage(): Promise<{ layers: TestLayer[]; files: Record<string, string>; symlinks: Record<string, string> }> {
  return {
    layers: [
      await gz([
        { name: 'usr/lib/', type: 'directory' }, { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
        { name: 'etc/', type: 'directory' }, { name: 'abs', type: 'symlink', linkname: '/etc' },
        { name: 'etc/localtime', type: 'symlink', linkname: '/usr/share/zoneinfo/Etc/UTC' },
        { name: '/etc/hostname', content: 'abs-name\n' }, { name: 'a/../b.txt', content: 'b\n' },
        { name: 'etc/os-release', content: 'PRETTY_NAME="gridbox harmless"\n' },
        // For the client's resolution: a loop and a dangling link (harmless in an image, as in Docker).
        { name: 'loop1', type: 'symlink', linkname: 'loop2' }, { name: 'loop2', type: 'symlink', linkname: 'loop1' },
        { name: 'dangling', type: 'symlink', linkname: 'nowhere' },
      ]),
      await gz([
        { name: 'lib/libx.so', content: 'elf\n' }, { name: 'abs/motd', content: 'through /etc\n' },
        { name: 'hl', type: 'link', linkname: '/etc/hostname' },
      ]),
    ],
    files: { 'usr/lib/libx.so': 'elf\n', 'etc/motd': 'through /etc\n', 'etc/hostname': 'abs-name\n', 'b.txt': 'b\n', hl: 'abs-name\n', 'etc/os-release': 'PRETTY_NAME="gridbox harmless"\n' },
    symlinks: { lib: 'usr/lib', abs: '/etc', 'etc/localtime': '/usr/share/zoneinfo/Etc/UTC', loop1: 'loop2', loop2: 'loop1', dangling: 'nowhere' },
  };
}

/** 2.1 GiB: past 2^31, where whole-file reads and Buffers of Node break. */
export const BOMB_FILE_BYTES = Math.round(2.1 * 2 ** 30);

/**
 * A gzip layer holding one file of BOMB_FILE_BYTES zeros: about 2 MiB that expand a thousandfold, under
 * the decompressor's ratio limit (gzip cannot go much past 1030:1). Built once, streaming, and kept in
 * /var/tmp/gridbox-test-cache/gzip-bomb-<recipe hash>/ (built in a temp dir, then renamed into place).
 */
export async function gzipBombLayer(): Promise<TestLayer & { fileBytes: number; entry: string }> {
  const entry = 'data/zeros.img';
  const recipe = `v1 ${entry} ${BOMB_FILE_BYTES} gzip-default`;
  const dir = join('/var/tmp/gridbox-test-cache', `gzip-bomb-${createHash('sha256').update(recipe).digest('hex').slice(0, 16)}`);
  const file = join(dir, 'layer.tar.gz');
  if (!existsSync(file)) {
    await mkdir(dirname(dir), { recursive: true });
    const tmp = await mkdtemp(`${dir}.tmp-`);
    try {
      const header = (await buildTar([{ name: entry, content: '' }], { noEnd: true }));
      // The same header with the real size (ustar octal field at 124, 11 digits + NUL; checksum recomputed).
      header.write(BOMB_FILE_BYTES.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
      header.write('        ', 148, 'latin1');
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += header[i];
      header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
      const zeros = Buffer.alloc(8 << 20);
      async function* body(): AsyncGenerator<Buffer> {
        yield header.subarray(0, 512);
        for (let left = BOMB_FILE_BYTES; left > 0; left -= zeros.length) yield left >= zeros.length ? zeros : zeros.subarray(0, left);
        yield Buffer.alloc((512 - (BOMB_FILE_BYTES % 512)) % 512 + 1024); // padding and end of archive
      }
      await pipeline(Readable.from(body()), createGzip(), createWriteStream(join(tmp, 'layer.tar.gz')));
      await chmod(tmp, 0o755); // mkdtemp makes it 0700; the cache is shared with tests running as other users
      await rename(tmp, dir).catch(async (e: unknown) => { if (!existsSync(file)) throw e; }); // another run may have won
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  return { data: await readFile(file), mediaType: GZ, fileBytes: BOMB_FILE_BYTES, entry };
}
