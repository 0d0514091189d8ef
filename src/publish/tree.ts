// The publisher's in-memory view of one revision: every entry by repository path ("" root, "/a/b"),
// its content ids once known, and where its bytes come from when they still have to be ingested.
// Plain data plus small helpers; no I/O.
import type { Entry } from '../fstree/entry.js';
import { compareNames } from '../fstree/walk.js';
import type { ObjectId } from '../hash/object-id.js';
import type { ChunkRef, Compression } from '../catalog/types.js';

export interface FileContent {
  id?: ObjectId;
  chunks?: ChunkRef[];
  compression: Compression;
}

/**
 * Where a file's bytes come from: a file (whole, or `size` bytes at `offset` of a spool file), bytes in
 * memory, or a stream read once in order (a tar entry; `label` names it in errors).
 */
export type ContentSource =
  | { kind: 'file'; path: string; offset?: number }
  | { kind: 'bytes'; bytes: Uint8Array }
  | { kind: 'stream'; stream: AsyncIterable<Uint8Array>; label: string };

export interface TreeItem {
  /** `entry.path` is kept repository-relative ("a/b"); the map key is the catalog form ("/a/b"). */
  entry: Entry;
  content?: FileContent;
  source?: ContentSource;
  /** Catalog flags carried over from an older revision (hidden, external, direct I/O). */
  hidden?: boolean;
  external?: boolean;
  directIo?: boolean;
}

export class RevisionTree {
  readonly items = new Map<string, TreeItem>();
  private kids = new Map<string, string[]>();
  private sorted = true;

  set(path: string, item: TreeItem): void {
    if (!this.items.has(path) && path !== '') {
      const parent = path.slice(0, path.lastIndexOf('/'));
      let k = this.kids.get(parent);
      if (k === undefined) this.kids.set(parent, (k = []));
      k.push(path);
      this.sorted = false;
    }
    this.items.set(path, item);
  }

  get(path: string): TreeItem | undefined {
    return this.items.get(path);
  }

  isDir(path: string): boolean {
    return this.items.get(path)?.entry.type === 'dir';
  }

  children(path: string): readonly string[] {
    if (!this.sorted) this.sortAll();
    return this.kids.get(path) ?? [];
  }

  /** Removes `path` and everything below it. */
  removeSubtree(path: string): void {
    for (const c of [...this.children(path)]) this.removeSubtree(c);
    this.items.delete(path);
    this.kids.delete(path);
    if (path !== '') {
      const parent = path.slice(0, path.lastIndexOf('/'));
      const k = this.kids.get(parent);
      if (k !== undefined) this.kids.set(parent, k.filter((p) => p !== path));
    }
  }

  private sortAll(): void {
    for (const k of this.kids.values()) k.sort(compareNames);
    this.sorted = true;
  }
}

/** "a/b" → "/a/b", "" → "". */
export function toRepoPath(rel: string): string {
  return rel === '' ? '' : `/${rel}`;
}
