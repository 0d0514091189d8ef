// Test-image builders: tar layers from plain entry specs (tar-stream pack, plus a raw header writer for
// forms tar-stream does not emit: GNU long names, hand-broken headers), gzip/zstd, and images pushed
// to a registry over the distribution API. Only for fixtures in tests; production code never writes tar.
import { gzipSync } from 'node:zlib';
import { spawnSync } from 'node:child_process';
import tarStream from 'tar-stream';

export interface TarSpec {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  mode?: number;
  content?: string | Buffer;
  linkname?: string;
  uid?: number;
  gid?: number;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string>;
  /** Pre-encoded bytes inserted verbatim instead of a tar-stream entry (from rawHeader()). */
  raw?: Buffer;
}

const MTIME = new Date(1_700_000_000_000);

/** Encodes the specs as one tar (with end-of-archive blocks unless `noEnd`). */
export async function buildTar(specs: TarSpec[], opts: { noEnd?: boolean } = {}): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (const s of specs) {
    if (s.raw) { chunks.push(s.raw); continue; }
    const pack = tarStream.pack();
    const done = (async () => { const out: Buffer[] = []; for await (const c of pack) out.push(c as Buffer); return Buffer.concat(out); })();
    const type = s.type ?? 'file';
    const body = s.content === undefined ? undefined : Buffer.from(s.content);
    pack.entry({
      name: s.name, type, mode: s.mode ?? (type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644),
      uid: s.uid ?? 0, gid: s.gid ?? 0, mtime: MTIME, linkname: s.linkname, size: body?.length ?? 0,
      devmajor: s.devmajor, devminor: s.devminor, pax: s.pax,
    }, body ?? Buffer.alloc(0));
    pack.finalize();
    const all = await done;
    chunks.push(all.subarray(0, all.length - 1024)); // strip this mini-archive's end blocks
  }
  if (!opts.noEnd) chunks.push(Buffer.alloc(1024));
  return Buffer.concat(chunks);
}

/** A raw 512-byte ustar header (checksum computed) followed by `data` padded to 512. */
export function rawHeader(name: string, typeflag: string, data: Buffer = Buffer.alloc(0), mode = 0o644): Buffer {
  const h = Buffer.alloc(512);
  h.write(name.slice(0, 100), 0, 'utf8');
  h.write(mode.toString(8).padStart(7, '0') + '\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
  h.write('14540000000\0', 136);
  h.write('        ', 148);
  h.write(typeflag, 156);
  h.write('ustar  \0', 257); // GNU magic
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([h, data, pad]);
}

/** A GNU long-name entry ('L' record carrying `longName`, then a regular file header). */
export function gnuLongNameFile(longName: string, content: string): Buffer {
  return Buffer.concat([
    rawHeader('././@LongLink', 'L', Buffer.from(longName + '\0')),
    rawHeader(longName.slice(0, 99), '0', Buffer.from(content)),
  ]);
}

export function gzip(data: Buffer): Buffer {
  return gzipSync(data);
}

/** zstd-compresses with the `zstd` CLI (Debian package zstd); null when the CLI is missing. */
export function zstdCompress(data: Buffer): Buffer | null {
  const r = spawnSync('zstd', ['-q', '-c', '-3'], { input: data, maxBuffer: 1 << 30 });
  if (r.error || r.status !== 0) return null;
  return r.stdout;
}
