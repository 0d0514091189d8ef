// Path resolution inside one repository revision, following symlinks the way the kernel does
// (path_resolution(7)) but confined to the repository root as openat2(2)'s RESOLVE_IN_ROOT confines it:
// an absolute target and ".." at the top both stay at the repository root, so no path leaves the
// repository. A target under "/cvmfs/<fqrn>/" (OSG's image names are such absolute links) is taken from
// the root as well, which is where it points on a host that mounts the repository.
// Intermediate components are always followed; the last one only when asked (stat(2) versus lstat(2))
// or when the path ends in "/". More than MAX_SYMLINK_HOPS links on the way fail with ELOOP.
// Pure over a lookup function: no catalog or I/O knowledge here (catalog-tree.ts supplies the lookup).
import { GridboxError, q } from '../errors.js';

/** Links followed while resolving one path before ELOOP (Linux's MAXSYMLINKS). */
export const MAX_SYMLINK_HOPS = 40;

export interface ResolveOptions {
  /** Follow a symlink in the last component too (stat rather than lstat). A trailing "/" implies it. */
  follow?: boolean;
}

/** What resolution needs of a node: its path and, for symlinks, the target. */
export interface ResolvableNode {
  /** Repository path of the node, "" for the root. */
  path: string;
  entry: { entry: { type: string; target?: string } };
}

/** Looks up one exact repository path ("" or "/a/b"), no link following; undefined when absent. */
export type ExactLookup<N> = (path: string) => Promise<N | undefined>;

/**
 * The node `path` names, or undefined when some component does not exist (or a non-final component is
 * not a directory). Throws ELOOP past MAX_SYMLINK_HOPS links. `fqrn` enables the "/cvmfs/<fqrn>" prefix rule.
 */
export async function resolvePath<N extends ResolvableNode>(path: string, lookup: ExactLookup<N>, opts: ResolveOptions & { fqrn?: string } = {}): Promise<N | undefined> {
  const follow = opts.follow === true || /\/\.?$/.test(path);
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (!parts.includes('..')) {
    // Fast path: a row at the exact path means every ancestor is a directory row, so no link is on the way.
    const exact = await lookup(parts.length === 0 ? '' : `/${parts.join('/')}`);
    if (exact !== undefined) {
      if (!follow || exact.entry.entry.type !== 'symlink') return exact;
    } else if (!(await someAncestorIsNotDir(parts, lookup))) {
      return undefined;
    }
  }
  return walk(path, parts, follow, lookup, opts.fqrn);
}

/** True when an existing ancestor of the missing `parts` is not a directory (a symlink to resolve, or a file). */
async function someAncestorIsNotDir<N extends ResolvableNode>(parts: string[], lookup: ExactLookup<N>): Promise<boolean> {
  for (let n = parts.length - 1; n > 0; n--) {
    const a = await lookup(`/${parts.slice(0, n).join('/')}`);
    if (a !== undefined) return a.entry.entry.type !== 'dir';
  }
  return false;
}

/** Component by component, with a stack of real directory names; ".." pops it (physically, after links). */
async function walk<N extends ResolvableNode>(original: string, parts: string[], follow: boolean, lookup: ExactLookup<N>, fqrn: string | undefined): Promise<N | undefined> {
  const pending = [...parts];
  const done: string[] = [];
  let node = await lookup('');
  let hops = 0;
  while (pending.length > 0 && node !== undefined) {
    const c = pending.shift()!;
    if (c === '..') {
      if (node.entry.entry.type !== 'dir') return undefined;
      done.pop();
      node = await lookup(done.length === 0 ? '' : `/${done.join('/')}`);
      continue;
    }
    if (node.entry.entry.type !== 'dir') return undefined; // a file where a directory must be (ENOTDIR)
    const here = `/${[...done, c].join('/')}`;
    const next = await lookup(here);
    if (next === undefined) return undefined;
    // A link is followed unless it is the last component of an lstat-style lookup ("link/.." follows it).
    if (next.entry.entry.type === 'symlink' && (pending.length > 0 || follow)) {
      if (++hops > MAX_SYMLINK_HOPS) {
        throw new GridboxError('ELOOP', `Too many levels of symbolic links resolving ${q(original)}: more than ${MAX_SYMLINK_HOPS} links (at ${q(here)})`, { path: original });
      }
      const target = next.entry.entry.target ?? '';
      if (target === '') return undefined; // an empty link names nothing (ENOENT, as Linux)
      const tparts = target.split('/').filter((p) => p !== '' && p !== '.');
      if (target.startsWith('/')) {
        done.length = 0;
        const prefix = fqrn === undefined ? -1 : mountPrefixLength(tparts, fqrn);
        if (prefix > 0) tparts.splice(0, prefix);
      }
      pending.unshift(...tparts);
      node = await lookup(done.length === 0 ? '' : `/${done.join('/')}`);
      continue;
    }
    done.push(c);
    node = next;
  }
  return node;
}

/** 2 when `parts` start with "cvmfs", fqrn (the repository's own mount path), else 0. */
function mountPrefixLength(parts: string[], fqrn: string): number {
  return parts[0] === 'cvmfs' && parts[1] === fqrn ? 2 : 0;
}
