// Decides where nested catalogs go: `.cvmfscatalog` markers, `.cvmfsdirtab` patterns, mountpoints
// kept from the previous revision, and automatic splitting of heavy catalogs (spec §4.7), following
// CernVM-FS's rules (cvmfs/catalog_balancer_impl.h, cvmfs/dirtab.cc, cvmfs/pathspec). Pure: works on
// repository paths only; writing catalogs is catalog-build.ts's job. Unlike `cvmfs_server`, automatic
// catalogs get no `.cvmfscatalog`/`.cvmfsautocatalog` marker files: the plan is recomputed at every publish.

/** A directory-tree view: every path ("" root, "/a/b") with its type and its children. */
export interface PlanTree {
  isDir(path: string): boolean;
  /** Child paths of a directory, in catalog order. */
  children(path: string): readonly string[];
  /**
   * When present, `children` lists only subdirectories and this gives the count of a directory's other
   * children (files, links, …; each weighs 1): the streaming publisher plans from a summary of directories.
   */
  leafCount?(path: string): number;
}

export interface PlanOptions {
  /** Explicit mountpoints (markers, dirtab matches, kept mountpoints). The root "" is implied. */
  explicit: Iterable<string>;
  /** A catalog holding more entries than this is split (CVMFS_AUTOCATALOGS_MAX_WEIGHT; 0 = never). */
  autocatalogMax: number;
  /**
   * A subtree lighter than this never becomes an automatic catalog (CVMFS_AUTOCATALOGS_MIN_WEIGHT).
   * Default: max/100, which is CernVM-FS's 1000 for its default max of 100000.
   */
  autocatalogMin?: number;
}

/** CernVM-FS's default CVMFS_AUTOCATALOGS_MAX_WEIGHT and CVMFS_AUTOCATALOGS_MIN_WEIGHT. */
export const CVMFS_AUTOCATALOG_MAX = 100_000;
export const CVMFS_AUTOCATALOG_MIN = 1_000;

const depth = (p: string): number => { let n = 0; for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) === 47) n++; return n; };

/** Returns the sorted set of catalog mountpoints, "" (the root catalog) first. */
export function planCatalogs(tree: PlanTree, opts: PlanOptions): string[] {
  const mounts = new Set<string>(['']);
  for (const p of opts.explicit) if (p !== '' && tree.isDir(p)) mounts.add(p);
  const max = opts.autocatalogMax;
  if (max > 0) {
    const min = opts.autocatalogMin ?? Math.max(1, Math.floor(max / 100));
    // Deepest catalogs first, as CernVM-FS balances the most recently added first: a child's new
    // catalogs never change its parent's weight (a mountpoint weighs 1 either way).
    const explicit = [...mounts].sort((a, b) => depth(b) - depth(a));
    for (const m of explicit) {
      if (catalogWeight(tree, m, mounts) > max) partition(tree, m, mounts, Math.floor(max / 2), min);
    }
  }
  return [...mounts].sort((a, b) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0));
}

/** Entries the catalog rooted at `mount` holds: itself, everything below down to (and including) nested mountpoints. */
export function catalogWeight(tree: PlanTree, mount: string, mounts: ReadonlySet<string>): number {
  let n = 0;
  const stack = [mount];
  while (stack.length > 0) {
    const p = stack.pop()!;
    n++;
    if (p !== mount && mounts.has(p)) continue;
    if (tree.isDir(p)) {
      for (const c of tree.children(p)) stack.push(c);
      if (tree.leafCount !== undefined) n += tree.leafCount(p);
    }
  }
  return n;
}

/**
 * CernVM-FS's CatalogBalancer::PartitionOptimally over the catalog at `mount`, without recursion: in
 * post-order, every directory heavier than `balance` (max/2) turns its heaviest child directory into a
 * catalog (which then weighs 1) while that child weighs at least `min`, until it is light enough or no
 * child qualifies (a flat directory of many files cannot be split). Ties go to the first child in order.
 */
function partition(tree: PlanTree, mount: string, mounts: Set<string>, balance: number, min: number): void {
  const weight = new Map<string, number>();
  const stack: { path: string; childrenDone: boolean }[] = [{ path: mount, childrenDone: false }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const kids = tree.children(top.path);
    if (!top.childrenDone) {
      top.childrenDone = true;
      for (let i = kids.length - 1; i >= 0; i--) {
        const c = kids[i];
        if (!mounts.has(c) && tree.isDir(c)) stack.push({ path: c, childrenDone: false });
      }
      continue;
    }
    stack.pop();
    let w = 1 + (tree.leafCount?.(top.path) ?? 0);
    for (const c of kids) w += weight.get(c) ?? 1; // files, and mountpoints, weigh 1
    while (w > balance) {
      let heaviest: string | undefined;
      let hw = 0;
      for (const c of kids) {
        if (mounts.has(c)) continue;
        const cw = weight.get(c);
        if (cw !== undefined && cw > hw) { heaviest = c; hw = cw; }
      }
      if (heaviest === undefined || hw < min) break;
      mounts.add(heaviest);
      weight.set(heaviest, 1);
      w -= hw - 1;
    }
    weight.set(top.path, w);
    // Children's weights are no longer needed once the parent has its own: keep the map small.
    for (const c of kids) if (c !== mount) weight.delete(c);
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

/** A parsed `.cvmfsdirtab`. */
export interface Dirtab {
  /** Positive rules, one regular expression per path component (`*` and `?` stay inside a component). */
  include: RegExp[][];
  /** Negations over the whole path (`*` and `?` also match '/'). */
  exclude: RegExp[];
  /** Lines CernVM-FS refuses (a positive rule must be absolute); they are ignored here. */
  invalid: string[];
}

/** One pathspec element to a regular expression: `\x` is a literal x; `*`/`?` match within (strict) or across (relaxed) components. */
function elementRegExp(element: string, relaxed: boolean): string {
  let out = '';
  for (let i = 0; i < element.length; i++) {
    const ch = element[i];
    if (ch === '\\' && i + 1 < element.length) out += escapeRegExp(element[++i]);
    else if (ch === '*') out += relaxed ? '.*' : '[^/]*';
    else if (ch === '?') out += relaxed ? '.' : '[^/]';
    else out += escapeRegExp(ch);
  }
  return out;
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/**
 * `.cvmfsdirtab` lines (dirtab.cc): split at '\n', leading whitespace skipped; `#` starts a comment line; `!` (then
 * optional whitespace) starts a negation; the rest is a pathspec. Positive pathspecs must be absolute.
 */
export function parseDirtab(text: string): Dirtab {
  const out: Dirtab = { include: [], exclude: [], invalid: [] };
  for (const raw of text.split('\n')) {
    let line = raw.replace(/^\s+/, ''); // only leading blanks: dirtab.cc keeps trailing ones (and a CR)
    if (line === '' || line.startsWith('#')) continue;
    const negation = line.startsWith('!');
    if (negation) line = line.slice(1).replace(/^\s+/, '');
    if (line === '') continue;
    const absolute = line.startsWith('/');
    const elements = line.split('/').filter((s) => s !== '');
    if (negation) {
      // Pathspec::GenerateRegularExpression(relaxed): "^" ["/"] elements joined by "/" "/?$".
      out.exclude.push(new RegExp(`^${absolute ? '\\/' : ''}${elements.map((e) => elementRegExp(e, true)).join('\\/')}\\/?$`));
    } else if (!absolute || elements.length === 0) {
      out.invalid.push(raw);
    } else {
      out.include.push(elements.map((e) => new RegExp(`^${elementRegExp(e, false)}$`)));
    }
  }
  return out;
}

/**
 * The directories a `.cvmfsdirtab` makes catalogs, as repository paths. Patterns are relative to `base`
 * (the directory holding the dirtab; "" for the repository root). Like `cvmfs_server`'s glob
 * (GLOB_ONLYDIR | GLOB_PERIOD, then lstat): only real directories, and wildcards match a leading dot.
 * A candidate is dropped when a negation matches its path relative to `base` ("/a/b").
 */
export function matchDirtab(text: string, base: string, tree: PlanTree): string[] {
  const tab = parseDirtab(text);
  const out = new Set<string>();
  for (const parts of tab.include) {
    let level = [base];
    for (const re of parts) {
      const next: string[] = [];
      for (const dir of level) for (const c of tree.children(dir)) if (tree.isDir(c) && re.test(c.slice(c.lastIndexOf('/') + 1))) next.push(c);
      level = next;
    }
    for (const p of level) {
      const rel = p.slice(base.length);
      if (!tab.exclude.some((re) => re.test(rel))) out.add(p);
    }
  }
  return [...out];
}
