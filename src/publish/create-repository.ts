// Lays out a new repository: directories, settings, keys (keys/keys.ts), a whitelist signed by the
// master key, an empty root catalog (root dir 0755) and the first signed manifest (revision 1).
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { createStoreSkeleton, FsStore } from '../store/fs-store.js';
import { buildCatalogs } from './catalog-build.js';
import { commitHead, type Head } from './head.js';
import { writeSettings, type RepoLayout, type RepoSettings } from './repo-layout.js';
import { writeFileAtomic } from '../plumbing/atomic-write.js';
import { certificateFingerprint, generateRepositoryKeys, writeRepositoryKeys, type RepositoryKeys } from '../keys/keys.js';
import { createWhitelist } from '../manifest/whitelist.js';
import { RevisionTree } from './tree.js';

/** Signs a whitelist listing the repository certificate, valid `days` from now (spec §3.1). */
export async function signWhitelist(layout: RepoLayout, days: number, now = new Date()): Promise<Buffer> {
  const [certPem, masterKeyPem] = await Promise.all([readFile(layout.cert, 'utf8'), readFile(layout.masterKey, 'utf8')]).catch((e: unknown) => {
    throw new GridboxError('SIGNING_KEY', `Cannot read the master key or certificate of ${q(layout.fqrn)} under ${q(dirname(layout.masterKey))}`, { cause: e });
  });
  return createWhitelist({
    fqrn: layout.fqrn, fingerprints: [certificateFingerprint(certPem)], created: now,
    expires: new Date(now.getTime() + days * 86_400_000), masterKeyPem,
  });
}

/** Renews `.cvmfswhitelist` (gridbox resign); returns its expiry. */
export async function resignWhitelist(layout: RepoLayout, days: number): Promise<Date> {
  const now = new Date();
  await writeFileAtomic(layout.whitelist, await signWhitelist(layout, days, now), { tmpDir: layout.state, fsync: true });
  return new Date(now.getTime() + days * 86_400_000);
}

export async function createRepository(layout: RepoLayout, settings: RepoSettings, keys?: RepositoryKeys): Promise<Head> {
  if (await stat(layout.manifest).then(() => true, () => false)) {
    throw new GridboxError('USAGE', `Cannot create repository ${q(layout.fqrn)}: ${q(layout.manifest)} already exists`);
  }
  await mkdir(dirname(layout.masterKey), { recursive: true, mode: 0o700 });
  await writeRepositoryKeys(dirname(layout.masterKey), layout.fqrn, keys ?? await generateRepositoryKeys(layout.fqrn));
  await createStoreSkeleton(layout.srv);
  await writeSettings(layout, settings);
  await writeFile(layout.whitelist, await signWhitelist(layout, settings.whitelistDays));
  const tree = new RevisionTree();
  const now = Math.floor(Date.now() / 1000);
  tree.set('', { entry: { path: '', type: 'dir', mode: 0o755, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, size: 4096, mtime: now, mtimeNs: 0 } });
  const store = new FsStore(layout.srv);
  const tmpDir = await mkdtemp(join(layout.state, 'mkfs-'));
  try {
    const built = await buildCatalogs(tree, [''], { store, algorithm: settings.hashAlgorithm, tmpDir, revision: 1, ttl: settings.ttl, now, old: new Map() });
    const root = built.get('')!;
    return await commitHead(layout, store, { rootId: root.id, rootSize: root.size, revision: 1, algorithm: settings.hashAlgorithm, ttl: settings.ttl, tmpDir });
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
  }
}
