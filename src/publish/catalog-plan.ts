// Decides where nested catalogs go: `.cvmfscatalog` markers, `.cvmfsdirtab` patterns, mountpoints
// kept from the previous revision, and automatic splitting above an entry count (spec §4.7).
// Pure: works on repository paths only; writing catalogs is catalog-build.ts's job.

/** A directory-tree view: every path ("" root, "/a/b") with its type and its children. */
export interface PlanTree {
  isDir(path: string): boolean;
  /** Child paths of a directory, in catalog order. */
  children(path: string): readonly string[];
}

export interface PlanOptions {
  /** Explicit mountpoints (markers, dirtab matches, kept mountpoints). The root "" is implied. */
  explicit: Iterable<string>;
  /** Split any catalog holding more entries than this (0 = never). */
  autocatalogMax: number;
}

/** Returns the sorted set of catalog mountpoints, "" (the root catalog) first. */
export function planCatalogs(tree: PlanTree, opts: PlanOptions): string[] {
  const mounts = new Set<string>(['']);
  for (const p of opts.explicit) if (p !== '' && tree.isDir(p)) mounts.add(p);
  if (opts.autocatalogMax > 0) {
    const pending = [...mounts];
    while (pending.length > 0) {
      const m = pending.pop()!;
      for (const added of splitCatalog(tree, m, mounts, opts.autocatalogMax)) pending.push(added);
    }
  }
  return [...mounts].sort((a, b) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Greedy split of one catalog: while it holds more than `max` entries, cut off the largest
 * subdirectory subtree that fits in `max` (or, when none fits, the largest direct child directory,
 * which is then split in turn). A flat directory with more than `max` files cannot be split.
 */
function splitCatalog(tree: PlanTree, mount: string, mounts: Set<string>, max: number): string[] {
  const added: string[] = [];
  for (;;) {
    const sizes = new Map<string, number>();
    const count = (p: string): number => {
      let n = 1;
      for (const c of tree.children(p)) {
        if (mounts.has(c)) { n += 1; continue; }
        n += tree.isDir(c) ? count(c) : 1;
      }
      sizes.set(p, n);
      return n;
    };
    const total = count(mount);
    if (total <= max) return added;
    let best: string | undefined;
    let bestSize = -1;
    for (const [p, n] of sizes) if (p !== mount && n <= max && n > bestSize) { best = p; bestSize = n; }
    if (best === undefined || bestSize <= 1) {
      best = undefined; bestSize = -1;
      for (const c of tree.children(mount)) {
        const n = sizes.get(c);
        if (n !== undefined && n > bestSize) { best = c; bestSize = n; }
      }
    }
    if (best === undefined || bestSize <= 1) return added;
    mounts.add(best);
    added.push(best);
  }
}

/** The mountpoint whose catalog holds `path`: the deepest mountpoint that is `path` or above it. */
export function catalogOf(path: string, mounts: ReadonlySet<string>): string {
  let p = path;
  for (;;) {
    if (mounts.has(p)) return p;
    if (p === '') return '';
    p = p.slice(0, p.lastIndexOf('/'));
  }
}

/**
 * `.cvmfsdirtab` lines: "/pattern/*" adds matching directories, "!pattern" excludes, "#" comments.
 * Patterns are matched component-wise with "*" and "?" against paths relative to `base`
 * (the directory holding the dirtab); results are repository paths.
 */
export function matchDirtab(text: string, base: string, tree: PlanTree): string[] {
  const include: string[][] = [];
  const exclude: RegExp[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('!')) exclude.push(globToRegExp(line.slice(1).replace(/^\/+/, '')));
    else include.push(line.replace(/^\/+|\/+$/g, '').split('/').filter((s) => s !== ''));
  }
  const out = new Set<string>();
  for (const parts of include) {
    let level = [base];
    for (const part of parts) {
      const re = globToRegExp(part);
      const next: string[] = [];
      for (const dir of level) for (const c of tree.children(dir)) if (tree.isDir(c) && re.test(c.slice(c.lastIndexOf('/') + 1))) next.push(c);
      level = next;
    }
    for (const p of level) {
      const rel = p.slice(base.length + 1);
      const name = p.slice(p.lastIndexOf('/') + 1);
      if (!exclude.some((re) => re.test(rel) || re.test(name))) out.add(p);
    }
  }
  return [...out];
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]');
  return new RegExp(`^${body}$`);
}
