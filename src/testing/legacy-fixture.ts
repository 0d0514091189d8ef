// Test support for the client tests (no tests of its own): the cvmfs_server fixture repository unpacked
// into a temp dir with a fresh whitelist, served by server/ on 127.0.0.1, helpers to re-sign manifests and
// to derive new root catalogs, and a client wired to it with real downloader, cache and trust check.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { deflateSync, inflateSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { hashBytes, objectPath, formatObjectId, type ObjectId } from '../hash/object-id.js';
import { parseSignedManifest, signManifest, type ManifestFields } from '../manifest/manifest.js';
import { createWhitelist } from '../manifest/whitelist.js';
import { certificateFingerprint } from '../keys/keys.js';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSrvHandler } from '../server/srv-handler.js';
import { makeTempDir } from './tmp.js';
import { fixturesDir, packageRoot } from './fixtures.js';
export { packageRoot };
import { resolveClientSettings, type ClientSettings } from '../client/client-config.js';
import { cacheDirFor, createClient, type Client } from '../client/index.js';
import { createClientDeps } from '../client/default-deps.js';

export const FQRN = 'legacy_aufs.cern.ch';



export interface Fixture {
  tmp: string;
  /** Served as /cvmfs/. */
  srvRoot: string;
  /** The repository's public dir. */
  repo: string;
  keysDir: string;
  server: { server: Server; close(): Promise<void> };
  /** Added before each data/ response, to make concurrent requests overlap deterministically. */
  delayMs: number;
  /** Base URL of the repository. */
  url: string;
  original: ManifestFields;
  close(): Promise<void>;
}

export async function setupFixture(): Promise<Fixture> {
  const tmp = await makeTempDir('gridbox-client-');
  const fx = fixturesDir();
  execFileSync('tar', ['xzf', join(fx, 'legacy_aufs_repo.tar.gz'), '-C', tmp]);
  execFileSync('tar', ['xzf', join(fx, 'legacy_aufs_keys.tar.gz'), '-C', tmp]);
  execFileSync('chmod', ['-R', 'u+w', tmp]);
  const srvRoot = join(tmp, 'srv', 'cvmfs');
  const repo = join(srvRoot, FQRN);
  const keysDir = join(tmp, 'etc', 'cvmfs', 'keys');
  // Only the public key goes into the directory the client reads.
  const pubDir = join(tmp, 'pub');
  await mkdir(pubDir);
  copyFileSync(join(keysDir, `${FQRN}.pub`), join(pubDir, `${FQRN}.pub`));
  const original = parseSignedManifest(readFileSync(join(repo, '.cvmfspublished'))).fields;
  const handler = createSrvHandler({ srvDir: srvRoot });
  const http = createServer((req, res) => {
    if (f.delayMs > 0 && req.url?.includes('/data/')) setTimeout(() => handler(req, res), f.delayMs);
    else handler(req, res);
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const port = (http.address() as AddressInfo).port;
  let closed = false;
  const server = {
    server: http,
    close: () => new Promise<void>((resolve) => {
      if (closed) { resolve(); return; }
      closed = true;
      http.close(() => resolve());
      http.closeAllConnections();
    }),
  };
  const f: Fixture = {
    tmp, srvRoot, repo, keysDir: pubDir, server, delayMs: 0, url: `http://127.0.0.1:${port}/cvmfs/${FQRN}`, original,
    close: async () => { await server.close(); await rm(tmp, { recursive: true, force: true }); },
  };
  writeWhitelist(f);
  return f;
}

const key = (f: Fixture, ext: string): Buffer => readFileSync(join(f.tmp, 'etc', 'cvmfs', 'keys', `${FQRN}.${ext}`));

export function certPem(f: Fixture): Buffer {
  return inflateSync(readFileSync(join(f.repo, 'data', objectPath(f.original.X!, 'X'))));
}

/** Writes a whitelist signed with the fixture's master key (fresh 30-day validity unless overridden). */
export function writeWhitelist(f: Fixture, over: Partial<Parameters<typeof createWhitelist>[0]> = {}): void {
  writeFileSync(join(f.repo, '.cvmfswhitelist'), createWhitelist({
    fqrn: FQRN, fingerprints: [certificateFingerprint(certPem(f))], created: new Date(Date.now() - 3_600_000),
    expires: new Date(Date.now() + 30 * 86_400_000), masterKeyPem: key(f, 'masterkey'), ...over,
  }));
}

/** Writes a manifest: the fixture's fields with overrides, signed with `signingKey` (default: the repository key). */
export function writeManifest(f: Fixture, over: Partial<ManifestFields> = {}, signingKey: string | Buffer = key(f, 'key')): Buffer {
  const bytes = signManifest({ ...f.original, ...over }, signingKey);
  writeFileSync(join(f.repo, '.cvmfspublished'), bytes);
  return bytes;
}

/** Stores `content` zlib-compressed as an object of the repository; returns its id. */
export function putObject(f: Fixture, content: Buffer, suffix: '' | 'C' = ''): ObjectId {
  const stored = deflateSync(content);
  const id = hashBytes('sha1', stored);
  const p = join(f.repo, 'data', objectPath(id, suffix));
  execFileSync('mkdir', ['-p', dirname(p)]);
  writeFileSync(p, stored);
  return id;
}

/** A new root catalog: the current one with `sql` applied (revision bumped), stored; returns its id. */
export function deriveRootCatalog(f: Fixture, base: ObjectId, sql: string, revision: number): ObjectId {
  const file = join(f.tmp, `catalog-${Date.now()}-${Math.random()}.db`);
  writeFileSync(file, inflateSync(readFileSync(join(f.repo, 'data', objectPath(base, 'C')))));
  const db = new Database(file);
  db.exec(sql);
  db.prepare("UPDATE properties SET value = ? WHERE key = 'revision'").run(String(revision));
  db.close();
  return putObject(f, readFileSync(file), 'C');
}

export function objectFile(f: Fixture, id: ObjectId, suffix: '' | 'C' | 'X' = ''): string {
  return join(f.repo, 'data', objectPath(id, suffix));
}

export function settingsFor(f: Fixture, cacheBase: string, over: Record<string, string> = {}): ClientSettings {
  return resolveClientSettings(FQRN, {
    CVMFS_SERVER_URL: f.url, CVMFS_HTTP_PROXY: 'DIRECT', CVMFS_CACHE_BASE: cacheBase,
    CVMFS_MAX_RETRIES: '0', CVMFS_BACKOFF_INIT: '0', CVMFS_BACKOFF_MAX: '0', CVMFS_TIMEOUT: '3', CVMFS_TIMEOUT_DIRECT: '3', ...over,
  });
}

/** A client on the fixture with the real downloader, cache and trust check. */
export async function openFixtureClient(f: Fixture, cacheBase: string, over: Record<string, string> = {}, now?: () => number): Promise<Client> {
  const settings = settingsFor(f, cacheBase, over);
  const deps = await createClientDeps(settings, { cacheDir: cacheDirFor(settings) });
  try {
    return await createClient(settings, { ...deps, masterPublicKeysPem: [readFileSync(join(f.keysDir, `${FQRN}.pub`), 'utf8')], now });
  } catch (e) {
    await deps.onClose();
    throw e;
  }
}

export { formatObjectId };
