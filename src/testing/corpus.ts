// The real-image corpus: Debian bookworm images built from Debian packages with mmdebstrap, each built once
// per recipe and cached as an OCI layout under /var/tmp/gridbox-test-cache/corpus-<name>-<hash>/ (built in a
// temp dir beside it, then renamed, so a killed build never leaves a half cache), and pushed to a loopback
// registry on demand. Used by the whole-chain tests and by `gridbox demo`; not by production code.
//
// Images: debian (minbase + tzdata, so /etc/localtime is the absolute symlink Debian ships), scientific
// (+ python3, numpy, scipy: thousands of small files), busybox (busybox-static only), hostile (system files as
// absolute and relative symlinks, /var/run -> /run, no /home or /tmp, mode-0555 directories, merged /usr) and
// layered (a second layer that purges packages, replaces a directory and adds a user: whiteouts, an opaque dir).
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { Transform } from 'node:stream';
import { acquireLock } from '../plumbing/lock-file.js';
import { makeOwnedDir, removeDeadOwnedDirs } from '../plumbing/transaction-dirs.js';

export type CorpusName = 'debian' | 'scientific' | 'busybox' | 'hostile' | 'layered';
export const CORPUS_NAMES: CorpusName[] = ['debian', 'scientific', 'busybox', 'hostile', 'layered'];

export interface CorpusImage {
  name: CorpusName;
  /** OCI image layout directory (oci-layout, index.json, blobs/sha256/…). */
  ociDir: string;
  /** The tag inside the layout (index.json's org.opencontainers.image.ref.name). */
  tag: string;
  /** Sum of the compressed layer blobs. */
  sizeBytes: number;
  /** Bytes of regular files in the final (flattened) tree. */
  unpackedBytes: number;
  /** Entries (files, directories, symlinks, others) in the final tree. */
  files: number;
  layers: number;
  /** Zone the image's own /etc/localtime names (the job must see the host's instead). */
  imageZone?: string;
}

/** Where cached inputs live (as the house rules say); GRIDBOX_TEST_CACHE overrides it. */
export function testCacheDir(): string {
  return process.env.GRIDBOX_TEST_CACHE ?? '/var/tmp/gridbox-test-cache';
}

/** Bump when the build steps below change in a way the recipe objects do not show (BASE_VERSION: the mmdebstrap runs). */
const BUILD_VERSION = 1;
const BASE_VERSION = 1;
const SUITE = 'bookworm';
const TAG = 'corpus';
const HOSTILE_ZONE = 'Pacific/Chatham';

interface BaseRecipe { variant: 'minbase' | 'extract'; include: string[]; aptopt?: string[] }
const BASES: Record<'minbase' | 'scientific' | 'busybox', BaseRecipe> = {
  minbase: { variant: 'minbase', include: ['tzdata'] },
  // Without Recommends, as container builds do (apt-get install --no-install-recommends): 890 MB unpacked otherwise.
  scientific: { variant: 'minbase', include: ['tzdata', 'python3', 'python3-numpy', 'python3-scipy'], aptopt: ['APT::Install-Recommends "false"'] },
  busybox: { variant: 'extract', include: ['busybox-static'] },
};
const IMAGE_BASE: Record<CorpusName, keyof typeof BASES> = {
  debian: 'minbase', scientific: 'scientific', busybox: 'busybox', hostile: 'minbase', layered: 'minbase',
};

/** Why the corpus cannot be built here (undefined when it can); tests skip with this reason. */
export function corpusUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'the corpus is built as root (mmdebstrap --mode=root, chroot)';
  for (const tool of ['mmdebstrap', 'tar', 'chroot']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  if (debianMirrors().length === 0) return 'no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list';
  return undefined;
}

/** The archives apt uses on this machine, as mmdebstrap source lines (mmdebstrap's built-in defaults may be unreachable). */
export function debianMirrors(): string[] {
  const out: string[] = [];
  let debian: string | undefined;
  let security: string | undefined;
  try {
    for (const m of readFileSync('/etc/apt/sources.list.d/debian.sources', 'utf8').matchAll(/^URIs:\s*(\S+)/gm)) {
      if (m[1].includes('security')) security ??= m[1]; else debian ??= m[1];
    }
  } catch { /* try sources.list */ }
  if (debian === undefined) {
    try {
      for (const m of readFileSync('/etc/apt/sources.list', 'utf8').matchAll(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/gm)) {
        if (m[1].includes('security')) security ??= m[1]; else debian ??= m[1];
      }
    } catch { /* none */ }
  }
  if (debian === undefined) return [];
  out.push(`deb ${debian} ${SUITE} main`, `deb ${debian} ${SUITE}-updates main`);
  out.push(`deb ${security ?? debian.replace(/\/debian\/?$/, '/debian-security')} ${SUITE}-security main`);
  return out;
}

const hashOf = (x: unknown): string => createHash('sha256').update(JSON.stringify(x)).digest('hex').slice(0, 16);

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('nice', ['-n', '10', cmd, ...args], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { err += c.toString(); if (err.length > 1 << 20) err = err.slice(-65536); });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${err.slice(-4000)}`))));
  });
}

/**
 * Makes `final` by running `build(tmp)` into an owned temp dir beside it and renaming. Test files run in
 * parallel processes, so `<final>.lock` (plumbing's kernel-held lock) makes the others wait instead of
 * building the same image again; temp dirs of killed builders are removed by the next one.
 */
async function cached(final: string, build: (tmp: string) => Promise<void>): Promise<string> {
  if (existsSync(join(final, 'done'))) return final;
  await mkdir(dirname(final), { recursive: true });
  const lock = await acquireLock(`${final}.lock`, { purpose: 'building a test corpus image', waitMs: 60 * 60_000 });
  const prefix = `${basename(final)}.tmp`;
  let tmp: string | undefined;
  try {
    if (existsSync(join(final, 'done'))) return final;
    removeDeadOwnedDirs(dirname(final), prefix);
    tmp = makeOwnedDir(dirname(final), prefix);
    await build(tmp);
    await writeFile(join(tmp, 'done'), `${new Date().toISOString()}\n`);
    await rm(final, { recursive: true, force: true });
    await rename(tmp, final);
    tmp = undefined;
  } finally {
    if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
    lock.release();
  }
  return final;
}

const baseBuilds = new Map<string, Promise<string>>();

/** The base root filesystem as an uncompressed tar (mmdebstrap writes it directly), cached by recipe. */
function baseTar(base: keyof typeof BASES): Promise<string> {
  const recipe = { v: BASE_VERSION, suite: SUITE, ...BASES[base] };
  const dir = join(testCacheDir(), `corpus-rootfs-${base}-${hashOf(recipe)}`);
  let p = baseBuilds.get(dir);
  if (p === undefined) {
    p = cached(dir, async (tmp) => {
      const r = BASES[base];
      const args = [`--variant=${r.variant}`, '--mode=root', '--format=tar', '--quiet', `--include=${r.include.join(',')}`];
      for (const o of r.aptopt ?? []) args.push(`--aptopt=${o}`);
      // apt's lists and caches are cleaned by mmdebstrap; the build host's resolv.conf and hostname must not leak in.
      args.push('--customize-hook=rm -f "$1/etc/resolv.conf" "$1/etc/hostname"');
      await run('mmdebstrap', [...args, SUITE, join(tmp, 'rootfs.tar'), ...debianMirrors()]);
    }).then((d) => join(d, 'rootfs.tar'));
    baseBuilds.set(dir, p);
  }
  return p;
}

// ---- tree statistics and layer writing ----

interface TreeStats { files: number; bytes: number }

function treeStats(root: string): TreeStats {
  let files = 0;
  let bytes = 0;
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      files++;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) bytes += lstatSync(p).size;
    }
  };
  walk(root);
  return { files, bytes };
}

interface Blob { digest: string; size: number }

/** Gzips a tar file into blobs/, returning the layer blob and the uncompressed digest (diff_id). */
async function addLayer(ociDir: string, tarFile: string): Promise<{ layer: Blob; diffId: string }> {
  const raw = createHash('sha256');
  const gz = createHash('sha256');
  let size = 0;
  const tmp = join(ociDir, 'blobs', 'layer.tmp');
  await pipeline(
    createReadStream(tarFile),
    new Transform({ transform(c: Buffer, _e, cb) { raw.update(c); cb(null, c); } }),
    createGzip({ level: 6 }),
    new Transform({ transform(c: Buffer, _e, cb) { gz.update(c); size += c.length; cb(null, c); } }),
    createWriteStream(tmp),
  );
  const digest = `sha256:${gz.digest('hex')}`;
  await rename(tmp, join(ociDir, 'blobs', 'sha256', digest.slice(7)));
  return { layer: { digest, size }, diffId: `sha256:${raw.digest('hex')}` };
}

async function addJsonBlob(ociDir: string, doc: object): Promise<Blob> {
  const body = Buffer.from(JSON.stringify(doc));
  const hex = createHash('sha256').update(body).digest('hex');
  await writeFile(join(ociDir, 'blobs', 'sha256', hex), body);
  return { digest: `sha256:${hex}`, size: body.length };
}

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ppc64: 'ppc64le', s390x: 's390x' };

/** Writes an OCI image layout with the given layer tars (bottom first) under tag TAG. */
async function writeOciLayout(ociDir: string, tars: Array<{ file: string; createdBy: string }>, cmd: string[]): Promise<number> {
  await mkdir(join(ociDir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(ociDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const layers: Blob[] = [];
  const diffIds: string[] = [];
  for (const t of tars) {
    const { layer, diffId } = await addLayer(ociDir, t.file);
    layers.push(layer);
    diffIds.push(diffId);
  }
  const created = '2026-01-01T00:00:00Z';
  const config = await addJsonBlob(ociDir, {
    created, architecture: GOARCH[process.arch] ?? process.arch, os: 'linux',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: cmd, Labels: { 'org.gridbox.corpus': 'yes' } },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: tars.map((t) => ({ created, created_by: t.createdBy })),
  });
  const mt = 'application/vnd.oci.image.manifest.v1+json';
  const manifest = await addJsonBlob(ociDir, {
    schemaVersion: 2, mediaType: mt,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l })),
  });
  await writeFile(join(ociDir, 'index.json'), JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ mediaType: mt, ...manifest, annotations: { 'org.opencontainers.image.ref.name': TAG } }],
  }));
  return layers.reduce((n, l) => n + l.size, 0);
}

/** tar of a whole tree, or of the listed paths only (relative, no recursion), in the form layers carry. */
async function tarTree(root: string, out: string, list?: string[]): Promise<void> {
  const args = ['--create', '--file', out, '--numeric-owner', '--sort=name', '--format=gnu', '-C', root];
  if (list === undefined) { await run('tar', [...args, '.']); return; }
  const listFile = `${out}.list`;
  await writeFile(listFile, list.map((p) => `${p}\n`).join(''));
  await run('tar', [...args, '--no-recursion', '--verbatim-files-from', '--files-from', listFile]);
  await unlink(listFile);
}

// ---- per-image edits ----

/** A minimal busybox tree from the extracted busybox-static package: the binary, its applets, passwd/group. */
async function makeBusyboxTree(extracted: string, root: string): Promise<void> {
  for (const d of ['bin', 'etc', 'usr/share/doc/busybox-static']) await mkdir(join(root, d), { recursive: true });
  await run('cp', ['-a', join(extracted, 'bin', 'busybox'), join(root, 'bin', 'busybox')]);
  await run('cp', ['-a', join(extracted, 'usr/share/doc/busybox-static/copyright'), join(root, 'usr/share/doc/busybox-static/')]);
  const applets = (await run(join(root, 'bin', 'busybox'), ['--list'])).split('\n').filter((a) => /^[\w.[-]+$/.test(a) && a !== 'busybox');
  for (const a of applets) await symlink('busybox', join(root, 'bin', a));
  await writeFile(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  await writeFile(join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
}

/** System files as absolute and relative symlinks, /var/run -> /run, no /home or /tmp, 0555 dirs (merged /usr is Debian's). */
async function makeHostile(root: string): Promise<void> {
  const at = (p: string): string => join(root, p);
  await rm(at('home'), { recursive: true, force: true });
  await rm(at('tmp'), { recursive: true, force: true });
  const keep = at('usr/share/hostile');
  await mkdir(keep, { recursive: true });
  await writeFile(join(keep, 'hosts'), '127.0.0.1\tlocalhost image-hosts-file\n');
  await rename(at('etc/passwd'), join(keep, 'passwd'));
  await rename(at('etc/group'), join(keep, 'group'));
  await rm(at('etc/localtime'), { force: true });
  await symlink(`/usr/share/zoneinfo/${HOSTILE_ZONE}`, at('etc/localtime'));          // absolute, resolves in the image
  await writeFile(at('etc/timezone'), `${HOSTILE_ZONE}\n`);
  await symlink('/run/systemd/resolve/stub-resolv.conf', at('etc/resolv.conf'));     // absolute, dangling
  await symlink('../usr/share/hostile/hosts', at('etc/hosts'));                      // relative
  await symlink('../usr/share/hostile/passwd', at('etc/passwd'));                    // relative
  await symlink('/usr/share/hostile/group', at('etc/group'));                        // absolute
  await rm(at('var/run'), { recursive: true, force: true });
  await symlink('/run', at('var/run'));
  for (const d of ['bin', 'sbin', 'lib', 'lib64']) {
    if (!lstatSync(at(d)).isSymbolicLink()) throw new Error(`the hostile image needs a merged /usr: /${d} is not a symlink`);
  }
  for (const d of ['usr/share/hostile', 'etc', 'srv', '.']) await chmod(at(d), 0o555);
}

type Sig = string;
function snapshot(root: string): Map<string, Sig> {
  const out = new Map<string, Sig>();
  const walk = (rel: string): void => {
    for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
      const p = rel === '' ? e.name : `${rel}/${e.name}`;
      const st = lstatSync(join(root, p));
      const kind = e.isDirectory() ? 'd' : e.isSymbolicLink() ? 'l' : e.isFile() ? 'f' : 'o';
      out.set(p, `${kind}:${st.mode}:${st.uid}:${st.gid}:${st.size}:${st.mtimeMs}:${st.ino}`);
      if (e.isDirectory()) walk(p);
    }
  };
  walk('');
  return out;
}

/**
 * The second layer of `layered`, made the way a container build makes one: purge packages with dpkg, replace
 * /usr/share/doc (an opaque directory), add a user; then diff the tree against the first layer's snapshot:
 * removed entries become `.wh.` files (the topmost removed path only), new or changed ones are carried.
 */
async function makeSecondLayer(root: string, out: string): Promise<void> {
  const before = snapshot(root);
  await run('chroot', [root, 'dpkg', '--purge', 'apt', 'libapt-pkg6.0', 'debian-archive-keyring', 'gpgv']);
  await rm(join(root, 'usr/share/doc'), { recursive: true, force: true });
  await mkdir(join(root, 'usr/share/doc'));
  await writeFile(join(root, 'usr/share/doc/README.gridbox'), 'documentation removed by the second layer\n');
  await run('chroot', [root, 'useradd', '--create-home', '--uid', '2001', '--shell', '/bin/bash', 'griduser']);
  const after = snapshot(root);
  const opaque = ['usr/share/doc'];
  const underOpaque = (p: string): boolean => opaque.some((o) => p.startsWith(`${o}/`));
  const list: string[] = [];
  const markers: string[] = [];
  for (const [p, sig] of after) {
    if (underOpaque(p) || before.get(p) !== sig) list.push(p);
  }
  for (const p of before.keys()) {
    if (after.has(p) || underOpaque(p)) continue;
    const parent = dirname(p);
    if (parent !== '.' && !after.has(parent)) continue; // a removed directory's single whiteout covers it
    const marker = join(parent === '.' ? '' : parent, `.wh.${p.split('/').pop()}`);
    markers.push(marker);
  }
  for (const o of opaque) markers.push(`${o}/.wh..wh..opq`);
  for (const m of markers) await writeFile(join(root, m), '', { mode: 0 });
  try {
    await tarTree(root, out, [...list, ...markers].sort());
  } finally {
    for (const m of markers) await unlink(join(root, m));
  }
}

// ---- public API ----

const imageBuilds = new Map<CorpusName, Promise<CorpusImage>>();

function imageRecipe(name: CorpusName): object {
  return { v: BUILD_VERSION, name, base: { v: BASE_VERSION, suite: SUITE, ...BASES[IMAGE_BASE[name]] }, zone: name === 'hostile' ? HOSTILE_ZONE : undefined };
}

/** Builds (once per recipe, cached on disk) and returns one corpus image as an OCI layout. */
export function ensureCorpusImage(name: CorpusName): Promise<CorpusImage> {
  let p = imageBuilds.get(name);
  if (p === undefined) {
    p = buildImage(name);
    imageBuilds.set(name, p);
    p.catch(() => imageBuilds.delete(name));
  }
  return p;
}

async function buildImage(name: CorpusName): Promise<CorpusImage> {
  if (!CORPUS_NAMES.includes(name)) throw new Error(`unknown corpus image ${JSON.stringify(name)}: one of ${CORPUS_NAMES.join(', ')}`);
  const dir = join(testCacheDir(), `corpus-${name}-${hashOf(imageRecipe(name))}`);
  await cached(dir, async (tmp) => {
    const base = await baseTar(IMAGE_BASE[name]);
    const oci = join(tmp, 'oci');
    const tree = join(tmp, 'tree');
    const extract = async (): Promise<void> => {
      await mkdir(tree);
      await run('tar', ['--extract', '--file', base, '--numeric-owner', '--same-permissions', '-C', tree]);
    };
    let size: number;
    let layers = 1;
    let stats: TreeStats;
    let imageZone: string | undefined;
    switch (name) {
      case 'debian': case 'scientific': {
        // The mmdebstrap tar is the layer, verbatim; its listing gives the statistics.
        ({ stats, zone: imageZone } = await tarStats(base));
        size = await writeOciLayout(oci, [{ file: base, createdBy: `mmdebstrap --variant=minbase --include=${BASES[IMAGE_BASE[name]].include.join(',')} ${SUITE}` }], ['/bin/bash']);
        break;
      }
      case 'busybox': {
        await extract();
        const bb = join(tmp, 'bb');
        await makeBusyboxTree(tree, bb);
        stats = treeStats(bb);
        await tarTree(bb, join(tmp, 'layer.tar'));
        size = await writeOciLayout(oci, [{ file: join(tmp, 'layer.tar'), createdBy: 'busybox-static, applet links, passwd' }], ['/bin/sh']);
        break;
      }
      case 'hostile': {
        await extract();
        await makeHostile(tree);
        stats = treeStats(tree);
        imageZone = HOSTILE_ZONE;
        await tarTree(tree, join(tmp, 'layer.tar'));
        size = await writeOciLayout(oci, [{ file: join(tmp, 'layer.tar'), createdBy: 'minbase with system files as symlinks' }], ['/bin/bash']);
        break;
      }
      case 'layered': {
        await extract();
        await makeSecondLayer(tree, join(tmp, 'layer2.tar'));
        stats = treeStats(tree);
        imageZone = readlinkZone(tree);
        size = await writeOciLayout(oci, [
          { file: base, createdBy: 'mmdebstrap --variant=minbase' },
          { file: join(tmp, 'layer2.tar'), createdBy: 'dpkg --purge apt …; useradd griduser' },
        ], ['/bin/bash']);
        layers = 2;
        break;
      }
    }
    // The tree may hold 0555 directories; make it removable before the temp dir goes.
    await run('chmod', ['-R', 'u+w', tree]).catch(() => undefined);
    await rm(tree, { recursive: true, force: true });
    await rm(join(tmp, 'bb'), { recursive: true, force: true });
    for (const f of ['layer.tar', 'layer2.tar']) await rm(join(tmp, f), { force: true });
    const info: Omit<CorpusImage, 'ociDir' | 'name'> = { tag: TAG, sizeBytes: size, unpackedBytes: stats.bytes, files: stats.files, layers, imageZone };
    await writeFile(join(tmp, 'info.json'), JSON.stringify(info, null, 1));
  });
  const info = JSON.parse(await readFile(join(dir, 'info.json'), 'utf8')) as Omit<CorpusImage, 'ociDir' | 'name'>;
  return { name, ociDir: join(dir, 'oci'), ...info };
}

/** Entries (without the root), regular-file bytes and the /etc/localtime zone from `tar --list --verbose`. */
async function tarStats(tarFile: string): Promise<{ stats: TreeStats; zone?: string }> {
  const listing = await run('tar', ['--list', '--verbose', '--numeric-owner', '--file', tarFile]);
  let files = 0;
  let bytes = 0;
  let zone: string | undefined;
  for (const line of listing.split('\n')) {
    const f = line.split(/\s+/);
    if (f.length < 6) continue;
    const name = f.slice(5).join(' ');
    if (name === './' || name === '.') continue;
    files++;
    if (line.startsWith('-')) bytes += Number(f[2]);
    const z = /^\.?\/?etc\/localtime -> .*zoneinfo\/(.+)$/.exec(name);
    if (z) zone = z[1];
  }
  return { stats: { files, bytes }, zone };
}

function readlinkZone(tree: string): string | undefined {
  try { return /zoneinfo\/(.+)$/.exec(readlinkSync(join(tree, 'etc/localtime')))?.[1]; } catch { return undefined; }
}

/**
 * Pushes a corpus image to a registry (`http://127.0.0.1:PORT`, no auth) as `repo:tag` (e.g. "corpus/debian:12")
 * with monolithic blob uploads, skipping blobs the registry already has. Returns the manifest digest.
 */
export async function pushCorpusImage(registryUrl: string, name: CorpusName, repoTag: string): Promise<{ reference: string; digest: string }> {
  const img = await ensureCorpusImage(name);
  const colon = repoTag.lastIndexOf(':');
  if (colon <= 0 || repoTag.slice(colon).includes('/')) throw new Error(`pushCorpusImage: ${JSON.stringify(repoTag)} is not repo:tag`);
  const repo = repoTag.slice(0, colon);
  const tag = repoTag.slice(colon + 1);
  const base = registryUrl.replace(/\/+$/, '');
  const index = JSON.parse(await readFile(join(img.ociDir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifestDigest = index.manifests[0].digest;
  const blobPath = (d: string): string => join(img.ociDir, 'blobs', 'sha256', d.slice(7));
  const manifestBody = await readFile(blobPath(manifestDigest));
  const manifest = JSON.parse(manifestBody.toString()) as { mediaType: string; config: { digest: string }; layers: Array<{ digest: string }> };
  for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
    const head = await fetch(`${base}/v2/${repo}/blobs/${d}`, { method: 'HEAD' });
    if (head.status === 200) continue;
    const start = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`blob upload start for ${d}: HTTP ${start.status} ${await start.text()}`);
    const loc = new URL(start.headers.get('location') ?? '', base);
    loc.searchParams.set('digest', d);
    const size = (await stat(blobPath(d))).size;
    const put = await fetch(loc, {
      method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body: createReadStream(blobPath(d)) as unknown as ReadableStream, duplex: 'half',
    } as RequestInit);
    if (put.status !== 201) throw new Error(`blob upload of ${d}: HTTP ${put.status} ${await put.text()}`);
  }
  const r = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { method: 'PUT', headers: { 'content-type': manifest.mediaType }, body: manifestBody });
  if (r.status !== 201) throw new Error(`manifest push of ${repoTag}: HTTP ${r.status} ${await r.text()}`);
  return { reference: `${new URL(base).host}/${repoTag}`, digest: manifestDigest };
}

/** Builds every corpus image, the independent mmdebstrap runs in parallel. */
export async function ensureCorpus(names: CorpusName[] = CORPUS_NAMES): Promise<CorpusImage[]> {
  return Promise.all(names.map((n) => ensureCorpusImage(n)));
}

/** The layer blobs of a corpus image, bottom first (gzip tars), for tests that unpack an image themselves. */
export async function corpusLayerFiles(img: CorpusImage): Promise<string[]> {
  const index = JSON.parse(await readFile(join(img.ociDir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const blob = (d: string): string => join(img.ociDir, 'blobs', 'sha256', d.slice(7));
  const manifest = JSON.parse(await readFile(blob(index.manifests[0].digest), 'utf8')) as { layers: Array<{ digest: string }> };
  return manifest.layers.map((l) => blob(l.digest));
}
