// Sync benchmark: a Debian minbase image (mmdebstrap from the machine's apt mirror; ~160 MB tar) pushed to
// a loopback docker-registry, synced into a fresh repository vs `skopeo copy` + `umoci unpack` of the same
// image, then a re-sync after only the top layer changed. Interleaved rounds (GRIDBOX_BENCH_SYNC_ROUNDS,
// default 3), each side after a page-cache drop (when root), best and median. GRIDBOX_BENCH_SYNC_ROOTFS=FILE
// reuses a rootfs tar; GRIDBOX_BENCH_SYNC_SMALL=1 uses a few-MB synthetic rootfs instead (development).
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { RegistryClient } from '../oci/registry-client.js';
import { createRepository } from '../publish/create-repository.js';
import { DEFAULT_SETTINGS, repoLayout } from '../publish/repo-layout.js';
import { parseImageList } from '../sync/image-list.js';
import { syncCycle } from '../sync/reconcile.js';

const FQRN = 'bench-sync.example.org';

function sh(cmd: string, args: string[], opts: { input?: Buffer } = {}): Buffer {
  const r = spawnSync(cmd, args, { input: opts.input, maxBuffer: 2 ** 31 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr?.toString().slice(0, 500) ?? r.error}`);
  return r.stdout;
}

function aptMirror(): string {
  try {
    const m = /^URIs:\s*(\S+)/m.exec(readFileSync('/etc/apt/sources.list.d/debian.sources', 'utf8'));
    if (m) return m[1];
  } catch { /* fall through */ }
  const l = /^deb\s+(\S+)\s+bookworm/m.exec(existsSync('/etc/apt/sources.list') ? readFileSync('/etc/apt/sources.list', 'utf8') : '');
  return l ? l[1] : 'http://deb.debian.org/debian';
}

async function rootfsTar(dir: string): Promise<Buffer> {
  const cached = process.env.GRIDBOX_BENCH_SYNC_ROOTFS;
  if (cached && existsSync(cached)) return readFile(cached);
  if (process.env.GRIDBOX_BENCH_SYNC_SMALL === '1') {
    const src = join(dir, 'small');
    await mkdir(join(src, 'bin'), { recursive: true });
    await writeFile(join(src, 'bin', 'busybox'), await readFile('/bin/busybox'));
    for (let i = 0; i < 300; i++) { await mkdir(join(src, 'usr', `d${i % 20}`), { recursive: true }); await writeFile(join(src, 'usr', `d${i % 20}`, `f${i}`), createHash('sha256').update(String(i)).digest('hex').repeat(50 + i)); }
    return sh('tar', ['-C', src, '--numeric-owner', '-cf', '-', '.']);
  }
  const out = join(dir, 'rootfs.tar');
  sh('mmdebstrap', ['--quiet', '--variant=minbase', '--format=tar', 'bookworm', out, aptMirror()]);
  if (cached) await writeFile(cached, await readFile(out));
  return readFile(out);
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

async function startRegistry(dir: string): Promise<{ host: string; stop(): void }> {
  const port = await freePort();
  const cfg = join(dir, 'registry.yml');
  await writeFile(cfg, `version: 0.1\nlog: {level: error}\nstorage:\n  filesystem: {rootdirectory: ${join(dir, 'regdata')}}\nhttp:\n  addr: 127.0.0.1:${port}\n  secret: bench\n`);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_')));
  const child = spawn('docker-registry', ['serve', cfg], { env, stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    if ((await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.status, () => 0)) === 200) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { host: `127.0.0.1:${port}`, stop: () => { child.kill('SIGTERM'); } };
}

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function pushBlob(host: string, repo: string, data: Buffer, mediaType: string): Promise<{ mediaType: string; digest: string; size: number }> {
  const digest = sha(data);
  const start = await fetch(`http://${host}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  const loc = new URL(start.headers.get('location') ?? '', `http://${host}`);
  loc.searchParams.set('digest', digest);
  const put = await fetch(loc, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(data) });
  if (put.status !== 201) throw new Error(`blob push: HTTP ${put.status}`);
  return { mediaType, digest, size: data.length };
}

async function pushImage(host: string, repo: string, tag: string, layers: Buffer[]): Promise<void> {
  const ls = [];
  for (const l of layers) ls.push(await pushBlob(host, repo, l, 'application/vnd.oci.image.layer.v1.tar+gzip'));
  const diffIds = layers.map((l) => sha(gunzipSync(l)));
  const cfg = await pushBlob(host, repo, Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['bash'] }, rootfs: { type: 'layers', diff_ids: diffIds } })), 'application/vnd.oci.image.config.v1+json');
  const body = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: cfg, layers: ls });
  const r = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, { method: 'PUT', headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, body });
  if (r.status !== 201) throw new Error(`manifest push: HTTP ${r.status}`);
}

async function time<T>(fn: () => Promise<T> | T): Promise<[number, T]> {
  const t0 = performance.now();
  const v = await fn();
  return [(performance.now() - t0) / 1000, v];
}

/** A one-file top layer (as a `RUN echo … > /etc/motd` would make). */
function topLayer(text: string, dir: string): Buffer {
  const src = join(dir, `top-${createHash('sha1').update(text).digest('hex').slice(0, 8)}`);
  spawnSync('mkdir', ['-p', join(src, 'etc')]);
  spawnSync('sh', ['-c', `printf '%s\\n' "$1" > "$2"`, 'sh', text, join(src, 'etc', 'motd')]);
  return gzipSync(sh('tar', ['-C', src, '--numeric-owner', '-cf', '-', 'etc/motd']));
}

/** Writes dirty pages back and empties the page cache, so each side starts cold (needs root; else a no-op). */
function dropCaches(): boolean {
  spawnSync('sync');
  try { writeFileSync('/proc/sys/vm/drop_caches', '3\n'); return true; } catch { return false; }
}

const best = (xs: number[]): number => Math.min(...xs);
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const secs = (xs: number[]): string => `best ${best(xs).toFixed(2)} s, median ${median(xs).toFixed(2)} s`;

export async function run(): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'gridbox-bench-sync-'));
  const reg = await startRegistry(dir);
  const rows: string[] = [];
  const rounds = Math.max(1, Number(process.env.GRIDBOX_BENCH_SYNC_ROUNDS ?? 3));
  try {
    const tar = await rootfsTar(dir);
    const base = gzipSync(tar);
    await pushImage(reg.host, 'bench/debian', '1', [base, topLayer('one', dir)]);
    rows.push(`image: rootfs tar ${(tar.length / 2 ** 20).toFixed(0)} MiB, gzip ${(base.length / 2 ** 20).toFixed(0)} MiB + 1 small top layer; ${rounds} interleaved rounds, page cache dropped before each side${dropCaches() ? '' : ' (NOT dropped: not root)'}`);
    const list = parseImageList(`${reg.host}/bench/debian:1\n`);
    const client = new RegistryClient();

    const ours: number[] = [];
    const peer: number[] = [];
    const peerSync: number[] = [];
    let root = '';
    let r1: Awaited<ReturnType<typeof syncCycle>> | undefined;
    const oursRound = async (i: number): Promise<void> => {
      if (root !== '') await rm(root, { recursive: true, force: true });
      root = join(dir, `repo-${i}`);
      const layout = repoLayout(root, FQRN);
      await createRepository(layout, DEFAULT_SETTINGS);
      dropCaches();
      const [t, r] = await time(() => syncCycle(list, { layout, settings: DEFAULT_SETTINGS, client }));
      if (r.failed) throw new Error(`sync failed: ${JSON.stringify(r.outcomes)}`);
      ours.push(t);
      r1 = r;
    };
    const peerRound = async (): Promise<void> => {
      await rm(join(dir, 'oci'), { recursive: true, force: true });
      await rm(join(dir, 'bundle'), { recursive: true, force: true });
      dropCaches();
      const [t] = await time(() => {
        sh('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${reg.host}/bench/debian:1`, `oci:${join(dir, 'oci')}:1`]);
        sh('umoci', ['unpack', '--rootless', '--image', `${join(dir, 'oci')}:1`, join(dir, 'bundle')]);
      });
      peer.push(t);
      // Not part of the peer's time: what writing its files back would add (gridbox syncs before its manifest).
      peerSync.push((await time(() => { sh('sync', ['-f', join(dir, 'bundle')]); }))[0]);
    };
    for (let i = 0; i < rounds; i++) {
      if (i % 2 === 0) { await oursRound(i); await peerRound(); } else { await peerRound(); await oursRound(i); }
    }
    rows.push(`fresh sync: gridbox sync ${secs(ours)}; skopeo copy + umoci unpack ${secs(peer)} (+ ${median(peerSync).toFixed(2)} s to sync its files, not counted); ratio best ${(best(ours) / best(peer)).toFixed(2)}x, median ${(median(ours) / median(peer)).toFixed(2)}x (target <= 2x); ${r1!.published?.files ?? 0} files, ${r1!.published?.objectsWritten ?? 0} objects`);

    const layout = repoLayout(root, FQRN);
    const again: number[] = [];
    let r2: Awaited<ReturnType<typeof syncCycle>> | undefined;
    for (let i = 0; i < Math.max(2, rounds - 1); i++) {
      await pushImage(reg.host, 'bench/debian', '1', [base, topLayer(`two-${i}`, dir)]);
      dropCaches();
      const [t, r] = await time(() => syncCycle(list, { layout, settings: DEFAULT_SETTINGS, client }));
      if (r.failed) throw new Error(`re-sync failed: ${JSON.stringify(r.outcomes)}`);
      again.push(t);
      r2 = r;
    }
    rows.push(`re-sync after a top-layer change: ${secs(again)}, ${r2!.published?.files ?? 0} files, ${r2!.published?.filesReused ?? 0} reused without re-storing, ${r2!.published?.objectsWritten ?? 0} new objects`);
    const heads = client.counters.byMethod.HEAD ?? 0;
    const gets = client.counters.byMethod.GET ?? 0;
    const [steady] = await time(() => syncCycle(list, { layout, settings: DEFAULT_SETTINGS, client }));
    rows.push(`steady-state cycle: ${(steady * 1000).toFixed(0)} ms, ${(client.counters.byMethod.HEAD ?? 0) - heads} HEAD / ${(client.counters.byMethod.GET ?? 0) - gets} GET`);
    return rows;
  } finally {
    reg.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
