// Loads a published revision back into a RevisionTree: every catalog below a root catalog hash is
// read (verified) from the store, its rows become tree items with their content ids, and each catalog's
// digest is kept so an unchanged subtree can keep its catalog. Read-only on the store.
import { writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { openCatalog } from '../catalog/catalog-reader.js';
import type { CatalogEntry, NestedCatalogRef } from '../catalog/types.js';
import type { ObjectId } from '../hash/object-id.js';
import type { ObjectStore } from '../store/object-store.js';
import { readObject } from '../store/object-io.js';
import { canonicalDigest, type OldCatalog } from './catalog-build.js';
import { RevisionTree } from './tree.js';

export interface LoadedRevision {
  tree: RevisionTree;
  /** Every catalog of the revision by mountpoint ("" = root). */
  catalogs: Map<string, OldCatalog>;
}

/** Calls `fn` for each catalog below `rootId` (parents before children) with its rows and nested refs. */
export async function forEachCatalog(
  store: ObjectStore, rootId: ObjectId, tmpDir: string,
  fn: (mount: string, id: ObjectId, size: number, rows: CatalogEntry[], nested: NestedCatalogRef[], info: { revision: number; counters: OldCatalog['counters']; sqlite: Buffer }) => void | Promise<void>,
): Promise<void> {
  const queue: { mount: string; id: ObjectId }[] = [{ mount: '', id: rootId }];
  let n = 0;
  while (queue.length > 0) {
    const { mount, id } = queue.shift()!;
    const bytes = await readObject(store, id, 'C', { compression: 'zlib' });
    const file = join(tmpDir, `old-catalog-${process.pid}-${n++}.sqlite`);
    await writeFile(file, bytes);
    try {
      const reader = openCatalog(file);
      try {
        const nested = reader.nested().filter((r) => !r.bind);
        await fn(mount, id, bytes.length, reader.entries(), nested, { revision: Number(reader.properties.revision), counters: reader.counters(), sqlite: bytes });
        for (const r of nested) queue.push({ mount: r.path, id: r.id });
      } finally {
        reader.close();
      }
    } finally {
      await rm(file, { force: true });
    }
  }
}

export async function loadRevision(store: ObjectStore, rootId: ObjectId, tmpDir: string): Promise<LoadedRevision> {
  const tree = new RevisionTree();
  const catalogs = new Map<string, OldCatalog>();
  await forEachCatalog(store, rootId, tmpDir, (mount, id, size, rows, nested, info) => {
    // The digest is only asked for at nested mountpoints (the root catalog is always rewritten): computed
    // on first use, it costs nothing for the usual single-catalog repository.
    let digest: string | undefined;
    catalogs.set(mount, {
      id, size, revision: info.revision, counters: info.counters, get digest() { return (digest ??= canonicalDigest(rows, nested)); },
      ...(mount === '' ? { loaded: { rows, nested, sqlite: info.sqlite } } : {}),
    });
    for (const r of rows) {
      // The child catalog's root row describes a mountpoint; the parent's copy is only a stub.
      if (r.nestedMountpoint) continue;
      const entry = { ...r.entry, path: r.path.slice(1) };
      // Keep hard-link groups across republishes of untouched parts; groups are per catalog.
      if (r.hardlinkGroup > 0) entry.hardlinkKey = `old:${mount}:${r.hardlinkGroup}`;
      else delete entry.hardlinkKey;
      tree.set(r.path, {
        entry,
        content: entry.type === 'file' ? { id: r.id, chunks: r.chunks, compression: r.compression } : undefined,
        hidden: r.hidden, external: r.external, directIo: r.directIo,
      });
    }
  });
  return { tree, catalogs };
}
