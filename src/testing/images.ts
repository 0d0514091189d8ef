// Test-image builders: tar layers from plain entry specs (tar-stream pack, plus a raw header writer for
// forms tar-stream does not emit: GNU long names, hand-broken headers), gzip/zstd, and images pushed
// to a registry over the distribution API. Only for fixtures in tests; production code never writes tar.
import { createHash } from 'node:crypto';
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

// ---- pushing images over the distribution API (monolithic uploads) ----

export interface PushTarget { url: string; auth: 'none' | 'htpasswd' | 'token'; username: string; password: string }
export interface PushedBlob { mediaType: string; digest: string; size: number }

const tokenCache = new Map<string, string>();

async function pushAuth(t: PushTarget, repo: string): Promise<Record<string, string>> {
  if (t.auth === 'none') return {};
  const basic = `Basic ${Buffer.from(`${t.username}:${t.password}`).toString('base64')}`;
  if (t.auth === 'htpasswd') return { authorization: basic };
  const key = `${t.url}|${repo}`;
  let token = tokenCache.get(key);
  if (!token) {
    const probe = await fetch(`${t.url}/v2/`);
    const m = /realm="([^"]+)",service="([^"]+)"/.exec(probe.headers.get('www-authenticate') ?? '');
    if (!m) throw new Error('registry gave no Bearer challenge');
    const r = await fetch(`${m[1]}?service=${encodeURIComponent(m[2])}&scope=${encodeURIComponent(`repository:${repo}:pull,push`)}`, { headers: { authorization: basic } });
    token = ((await r.json()) as { token: string }).token;
    tokenCache.set(key, token);
  }
  return { authorization: `Bearer ${token}` };
}

export function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export async function pushBlob(t: PushTarget, repo: string, data: Buffer, mediaType: string): Promise<PushedBlob> {
  const digest = sha256(data);
  const auth = await pushAuth(t, repo);
  const start = await fetch(`${t.url}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: auth });
  if (start.status !== 202) throw new Error(`blob upload start: HTTP ${start.status} ${await start.text()}`);
  const loc = new URL(start.headers.get('location') ?? '', t.url);
  loc.searchParams.set('digest', digest);
  const put = await fetch(loc, { method: 'PUT', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: new Uint8Array(data) });
  if (put.status !== 201) throw new Error(`blob upload: HTTP ${put.status} ${await put.text()}`);
  return { mediaType, digest, size: data.length };
}

export async function pushManifest(t: PushTarget, repo: string, reference: string, doc: object, mediaType: string): Promise<PushedBlob> {
  const body = Buffer.from(JSON.stringify(doc));
  const r = await fetch(`${t.url}/v2/${repo}/manifests/${reference}`, { method: 'PUT', headers: { ...(await pushAuth(t, repo)), 'content-type': mediaType }, body });
  if (r.status !== 201) throw new Error(`manifest push: HTTP ${r.status} ${await r.text()}`);
  return { mediaType, digest: sha256(body), size: body.length };
}

export interface TestLayer { data: Buffer; mediaType: string }

/** Pushes layers + config and an OCI manifest (without top-level mediaType, as umoci writes it) under `tag`. */
export async function pushImage(t: PushTarget, repo: string, tag: string, layers: TestLayer[], config: object): Promise<PushedBlob> {
  const pushed: PushedBlob[] = [];
  for (const l of layers) pushed.push(await pushBlob(t, repo, l.data, l.mediaType));
  const cfg = await pushBlob(t, repo, Buffer.from(JSON.stringify(config)), 'application/vnd.oci.image.config.v1+json');
  return pushManifest(t, repo, tag, { schemaVersion: 2, config: cfg, layers: pushed }, 'application/vnd.oci.image.manifest.v1+json');
}

export async function pushIndex(t: PushTarget, repo: string, tag: string, manifests: (PushedBlob & { platform: object; annotations?: Record<string, string> })[]): Promise<PushedBlob> {
  const mt = 'application/vnd.oci.image.index.v1+json';
  return pushManifest(t, repo, tag, { schemaVersion: 2, mediaType: mt, manifests }, mt);
}

export const GZ = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const ZST = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const TAR = 'application/vnd.oci.image.layer.v1.tar';

export function imageConfig(arch: string, env: string[], extra: object = {}): object {
  return {
    architecture: arch, os: 'linux',
    config: { Env: env, Entrypoint: ['/bin/sh', '-c'], Cmd: ['echo hello'], WorkingDir: '/app', Labels: { 'org.test.name': 'gridbox', 'org.test.v': '1' }, ...extra },
    rootfs: { type: 'layers', diff_ids: [] },
  };
}

/** The four layers of the main test image: every entry kind, whiteouts, an opaque dir; gzip, plain and zstd. */
export async function standardLayers(): Promise<TestLayer[]> {
  const long = `app/${'d'.repeat(60)}/${'f'.repeat(60)}.txt`;
  const l1 = await buildTar([
    { name: './', type: 'directory' },
    { name: 'app/', type: 'directory' }, { name: 'app/hardlink-to-hello', content: 'hello world\n' },
    { name: 'app/hello.txt', type: 'link', linkname: 'app/hardlink-to-hello' },
    { name: 'app/link-to-hello', type: 'symlink', linkname: 'hello.txt' }, { name: 'app/abs-link', type: 'symlink', linkname: '/etc/hostname' },
    { name: long, content: 'long name\n' }, { name: 'app/grüße-ñ-日本.txt', content: 'utf8\n' },
    { name: 'app/to-delete.txt', content: 'bye' }, { name: 'app/data/a.txt', content: 'a' }, { name: 'app/data/b.txt', content: 'b' },
    { name: 'opt/old/x', content: 'x' }, { name: 'opt/old/sub/y', content: 'y' },
    { name: 'usr/bin/suid-demo', content: '#!/bin/sh\n', mode: 0o4755 },
    { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'root/', type: 'directory', mode: 0o700 }, { name: 'root/secret', content: 's', mode: 0o600 },
    { name: 'etc/hostname', content: 'one\n' },
  ]);
  const l2 = await buildTar([{ name: 'app/.wh.to-delete.txt', content: '' }, { name: 'app/v2.txt', content: 'v2' }, { name: 'etc/hostname', content: 'two\n' }]);
  const l3 = await buildTar([{ name: './opt/old/.wh..wh..opq', content: '' }, { name: './opt/old/', type: 'directory' }, { name: './opt/old/new.txt', content: 'new' }]);
  const l4 = await buildTar([{ name: './app/.wh.data', content: '' }]);
  const z = zstdCompress(l3);
  return [
    { data: gzip(l1), mediaType: GZ }, { data: l2, mediaType: TAR },
    z ? { data: z, mediaType: ZST } : { data: gzip(l3), mediaType: GZ }, { data: gzip(l4), mediaType: GZ },
  ];
}

