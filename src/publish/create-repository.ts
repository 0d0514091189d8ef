// Lays out a new repository: directories, settings, keys (given by the caller, who makes them with
// signing/), whitelist, an empty root catalog (root dir 0755) and the first signed manifest (revision 1).
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { createStoreSkeleton, FsStore } from '../store/fs-store.js';
import { buildCatalogs } from './catalog-build.js';
import { commitHead, type Head } from './head.js';
import { writeSettings, type RepoLayout, type RepoSettings } from './repo-layout.js';
import { RevisionTree } from './tree.js';

export interface RepositoryKeys {
  masterKeyPem: string;
  masterPubPem: string;
  certKeyPem: string;
  certPem: string;
}

export async function createRepository(layout: RepoLayout, settings: RepoSettings, keys: RepositoryKeys, whitelist: Uint8Array): Promise<Head> {
  if (await stat(layout.manifest).then(() => true, () => false)) {
    throw new GridboxError('USAGE', `Cannot create repository ${q(layout.fqrn)}: ${q(layout.manifest)} already exists`);
  }
  await mkdir(dirname(layout.masterKey), { recursive: true, mode: 0o700 });
  await writeFile(layout.masterKey, keys.masterKeyPem, { mode: 0o600 });
  await writeFile(layout.masterPub, keys.masterPubPem, { mode: 0o644 });
  await writeFile(layout.certKey, keys.certKeyPem, { mode: 0o600 });
  await writeFile(layout.cert, keys.certPem, { mode: 0o644 });
  await createStoreSkeleton(layout.srv);
  await writeSettings(layout, settings);
  await writeFile(layout.whitelist, whitelist);
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
