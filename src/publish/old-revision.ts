// The served revision read catalog by catalog, for the streaming publisher: a directory's old rows are
// looked up in the catalog that holds them (found by following nested refs down from the root), and only
// a few catalogs are open at once (inflated into the transaction's temp dir, least recently used closed
// first). Nothing of the old revision is loaded whole. Read-only on the store.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openCatalog, type CatalogReader } from '../catalog/catalog-reader.js';
import type { CatalogCounters, CatalogEntry } from '../catalog/types.js';
import { formatObjectId, type ObjectId } from '../hash/object-id.js';
import type { ObjectStore } from '../store/object-store.js';
import { readObject } from '../store/object-io.js';

/** What the previous revision had at one mountpoint. */
export interface OldCatalogInfo {
  id: ObjectId;
  size: number;
  revision: number;
  counters: CatalogCounters;
}

interface Open {
  reader: CatalogReader;
  file: string;
  info: OldCatalogInfo;
}

/** Catalogs open at once, at most (each is an SQLite handle over a temp file; the walk is depth-first). */
const MAX_OPEN = 6;

export class OldRevision {
  private readonly open = new Map<string, Open>();
  private seq = 0;
  /** Catalogs inflated (for the report and tests). */
  opened = 0;

  private constructor(private readonly store: ObjectStore, private readonly tmpDir: string, private readonly root: Open) {}

  static async load(store: ObjectStore, rootId: ObjectId, tmpDir: string): Promise<OldRevision> {
    return new OldRevision(store, tmpDir, await inflate(store, rootId, join(tmpDir, `old-catalog-${process.pid}-root.sqlite`)));
  }

  /** The root catalog's info. */
  get rootInfo(): OldCatalogInfo {
    return this.root.info;
  }

  /** The catalog holding `dirPath`'s children ("" root, "/a/b"): the deepest old mountpoint at or above it. */
  async catalogFor(dirPath: string): Promise<Open> {
    let cur = this.root;
    for (;;) {
      const ref = cur.reader.findNestedFor(dirPath);
      if (ref === undefined || ref.bind) return cur;
      cur = await this.get(ref.id);
    }
  }

  /** The old catalog mounted exactly at `mount`, if the previous revision had one there. */
  async atMount(mount: string): Promise<OldCatalogInfo | undefined> {
    const c = await this.catalogFor(mount);
    return c.reader.rootPath === mount ? c.info : undefined;
  }

  /** Old rows of `dirPath`'s children by name (chunks included), or an empty map. */
  async listing(dirPath: string): Promise<Map<string, CatalogEntry>> {
    const c = await this.catalogFor(dirPath);
    const out = new Map<string, CatalogEntry>();
    for (const r of c.reader.listing(dirPath)) out.set(r.path.slice(r.path.lastIndexOf('/') + 1), r);
    return out;
  }

  async close(): Promise<void> {
    for (const o of [...this.open.values(), this.root]) await this.drop(o);
    this.open.clear();
  }

  private async get(id: ObjectId): Promise<Open> {
    const key = formatObjectId(id);
    const hit = this.open.get(key);
    if (hit !== undefined) {
      // Most recently used last.
      this.open.delete(key);
      this.open.set(key, hit);
      return hit;
    }
    const o = await inflate(this.store, id, join(this.tmpDir, `old-catalog-${process.pid}-${this.seq++}.sqlite`));
    this.opened++;
    this.open.set(key, o);
    while (this.open.size > MAX_OPEN) {
      const [k, old] = this.open.entries().next().value as [string, Open];
      this.open.delete(k);
      await this.drop(old);
    }
    return o;
  }

  private async drop(o: Open): Promise<void> {
    try { o.reader.close(); } catch { /* closed */ }
    await rm(o.file, { force: true });
  }
}

/** Inflates one catalog object into `file` and opens it. */
async function inflate(store: ObjectStore, id: ObjectId, file: string): Promise<Open> {
  const bytes = await readObject(store, id, 'C', { compression: 'zlib' });
  await writeFile(file, bytes);
  const reader = openCatalog(file);
  return { reader, file, info: { id, size: bytes.length, revision: Number(reader.properties.revision), counters: reader.counters() } };
}
