// Where a repository's files live under a root directory, and its server-side settings file.
// Public (served) files under srv/<fqrn>/, private keys under keys/, lock and settings under var/<fqrn>/.
// Knows paths and settings only; creating keys and catalogs is mkfs's job.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import type { HashAlgorithm } from '../hash/object-id.js';
import type { Compression } from '../catalog/types.js';
import { writeFileAtomic } from '../plumbing/atomic-write.js';

export interface RepoLayout {
  fqrn: string;
  root: string;
  /** Served tree: .cvmfspublished, .cvmfswhitelist, data/. */
  srv: string;
  data: string;
  manifest: string;
  whitelist: string;
  /** Private keys: never below srv/. */
  masterKey: string;
  masterPub: string;
  certKey: string;
  cert: string;
  /** Server-side state: lock, settings, temp files that must not be served. */
  state: string;
  lock: string;
  settings: string;
}

/** Defaults a publish uses unless a flag overrides them; written by mkfs. */
export interface RepoSettings {
  hashAlgorithm: HashAlgorithm;
  compression: Compression;
  chunkMin: number;
  chunkAvg: number;
  chunkMax: number;
  /** Split a catalog automatically above this many entries (0 = never). */
  autocatalogMax: number;
  ttl: number;
  /** Whitelist validity in days (resign). */
  whitelistDays: number;
}

export const DEFAULT_SETTINGS: RepoSettings = {
  hashAlgorithm: 'sha1', compression: 'zlib', chunkMin: 4 << 20, chunkAvg: 8 << 20, chunkMax: 16 << 20,
  autocatalogMax: 0, ttl: 240, whitelistDays: 30,
};

const FQRN_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function repoLayout(root: string, fqrn: string): RepoLayout {
  if (!FQRN_RE.test(fqrn) || fqrn.includes('..')) throw new GridboxError('USAGE', `Invalid repository name ${q(fqrn)}: expected a DNS-like name such as "sw.example.org"`);
  const srv = join(root, 'srv', fqrn);
  const keys = join(root, 'keys');
  const state = join(root, 'var', fqrn);
  return {
    fqrn, root, srv, data: join(srv, 'data'),
    manifest: join(srv, '.cvmfspublished'), whitelist: join(srv, '.cvmfswhitelist'),
    masterKey: join(keys, `${fqrn}.masterkey`), masterPub: join(keys, `${fqrn}.pub`),
    certKey: join(keys, `${fqrn}.key`), cert: join(keys, `${fqrn}.crt`),
    state, lock: join(state, 'publish.lock'), settings: join(state, 'settings.json'),
  };
}

export async function readSettings(layout: RepoLayout): Promise<RepoSettings> {
  let text: string;
  try {
    text = await readFile(layout.settings, 'utf8');
  } catch (e) {
    throw new GridboxError('PUBLISH_NO_REPO', `No repository ${q(layout.fqrn)} under ${q(layout.root)} (run "gridbox mkfs" first)`, { path: layout.settings, cause: e });
  }
  try {
    return { ...DEFAULT_SETTINGS, ...(JSON.parse(text) as Partial<RepoSettings>) };
  } catch (e) {
    throw new GridboxError('CONFIG_INVALID', `Cannot parse repository settings ${q(layout.settings)}`, { path: layout.settings, cause: e });
  }
}

export async function writeSettings(layout: RepoLayout, settings: RepoSettings): Promise<void> {
  await mkdir(layout.state, { recursive: true });
  await writeFileAtomic(layout.settings, JSON.stringify(settings, null, 2) + '\n', { tmpDir: layout.state, fsync: true });
}
