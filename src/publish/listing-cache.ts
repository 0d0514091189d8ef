// Directory listings the streaming publisher's first pass (source-summary.ts) keeps for its second
// (stream-publish.ts), so that the second does not list and lstat those directories again (at 10^5
// entries that was seconds of the main thread's time, which the workers' compression waits behind).
// Packed, about 110 bytes an entry instead of ~330 as walked-entry objects, and bounded by an entry
// budget, not by the tree: directories past the budget are listed again by the second pass, so
// memory stays flat in the entry count. A listing is handed out once (the second pass consumes them
// in the order the first kept them, which frees the budget as it goes).
import type { Entry, EntryType } from '../fstree/entry.js';
import type { WalkedEntry } from '../fstree/walk.js';

/** Entries kept at most, over all directories (~45 MiB at the packed size). */
export const LISTING_CACHE_ENTRIES = 400_000;

const TYPES: readonly EntryType[] = ['dir', 'file', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev'];
const TYPE_CODE: Readonly<Record<EntryType, number>> = { dir: 0, file: 1, symlink: 2, fifo: 3, socket: 4, chardev: 5, blockdev: 6 };
/** Numbers per entry: type, mode, uid, gid, size, mtime, mtimeNs. */
const FIELDS = 7;

interface Packed {
  /** Absolute path of the directory (its children's source paths are this + "/" + name). */
  abs: string;
  /** Each child's entry path (repository-relative, as walked). */
  paths: string[];
  nums: Float64Array;
  /** The rare fields, by child index: symlink targets, device numbers, hard-link keys. */
  extra?: Map<number, Pick<Entry, 'target' | 'rdev' | 'hardlinkKey'>>;
}

export class ListingCache {
  private readonly dirs = new Map<string, Packed>();
  private held = 0;

  constructor(private readonly maxEntries = LISTING_CACHE_ENTRIES) {}

  /** Entries held now. */
  get entries(): number {
    return this.held;
  }

  /** Keeps the listing of directory `dir` (a repository path, "" the root) at `abs`, if it fits the budget; false if not. */
  keep(dir: string, abs: string, kids: readonly WalkedEntry[]): boolean {
    if (this.held + kids.length > this.maxEntries) return false;
    const n = kids.length;
    const paths = new Array<string>(n);
    const nums = new Float64Array(n * FIELDS);
    let extra: Packed['extra'];
    for (let i = 0; i < n; i++) {
      const e = kids[i].entry;
      paths[i] = e.path;
      const o = i * FIELDS;
      nums[o] = TYPE_CODE[e.type];
      nums[o + 1] = e.mode;
      nums[o + 2] = e.uid;
      nums[o + 3] = e.gid;
      nums[o + 4] = e.size;
      nums[o + 5] = e.mtime;
      nums[o + 6] = e.mtimeNs;
      if (e.target !== undefined || e.rdev !== undefined || e.hardlinkKey !== undefined) {
        extra ??= new Map();
        extra.set(i, { ...(e.target !== undefined ? { target: e.target } : {}), ...(e.rdev !== undefined ? { rdev: e.rdev } : {}), ...(e.hardlinkKey !== undefined ? { hardlinkKey: e.hardlinkKey } : {}) });
      }
    }
    this.dirs.set(dir, { abs, paths, nums, ...(extra !== undefined ? { extra } : {}) });
    this.held += n;
    return true;
  }

  /** Forgets the listing of `dir`, if kept (a directory the second pass will not walk). */
  drop(dir: string): void {
    const p = this.dirs.get(dir);
    if (p === undefined) return;
    this.dirs.delete(dir);
    this.held -= p.paths.length;
  }

  /** The listing kept for `dir`, as walked entries (fresh objects), and forgets it; undefined when none was kept. */
  take(dir: string): WalkedEntry[] | undefined {
    const p = this.dirs.get(dir);
    if (p === undefined) return undefined;
    this.dirs.delete(dir);
    const n = p.paths.length;
    this.held -= n;
    const prefix = p.abs.endsWith('/') ? p.abs : `${p.abs}/`;
    const out = new Array<WalkedEntry>(n);
    const nums = p.nums;
    for (let i = 0; i < n; i++) {
      const path = p.paths[i];
      const o = i * FIELDS;
      const entry: Entry = {
        path, type: TYPES[nums[o]], mode: nums[o + 1], uid: nums[o + 2], gid: nums[o + 3],
        size: nums[o + 4], mtime: nums[o + 5], mtimeNs: nums[o + 6],
      };
      const x = p.extra?.get(i);
      if (x !== undefined) Object.assign(entry, x);
      out[i] = { entry, sourcePath: prefix + path.slice(path.lastIndexOf('/') + 1) };
    }
    return out;
  }
}
