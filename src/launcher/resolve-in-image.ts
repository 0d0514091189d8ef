// Where a mount destination really is inside the image: symlinks on the way are followed as if the image root
// were `/` (an absolute target restarts at the image root, `..` stops there, at most 40 links), which is
// Apptainer's fs.EvalRelative, applied to every mount destination in mountGeneric and by the underlay layer.
// Without it bwrap resolves an absolute symlink such as Debian's /etc/localtime -> /usr/share/zoneinfo/… against
// its own staging root and fails "Can't create file at /etc/localtime". Pure: reads only the FsView.
import { posix } from 'node:path';
import type { EntryType, FsView } from './launch-spec.js';

/** Apptainer's limit (walkSymRelative(path, root, 40)); the kernel's own is 40 too. */
export const MAX_SYMLINKS = 40;

export interface Resolved {
  /** Absolute path inside the image with every symlink on the way replaced by its target. */
  path: string;
  /** The link limit was reached (a loop): `path` is where resolution stopped. */
  loop: boolean;
}

/**
 * Resolves `path` inside the image. `stop(p)` marks paths that are covered by another mount (a tmpfs, a host
 * directory): what lies below them is not the image's, so their components are taken literally.
 */
export function resolveInImage(fs: FsView, path: string, stop: (p: string) => boolean = () => false): Resolved {
  const pending = path.split('/').filter((c) => c !== '' && c !== '.');
  let cur = '/';
  let links = 0;
  while (pending.length > 0) {
    const c = pending.shift() as string;
    if (c === '.') continue;
    if (c === '..') { cur = posix.dirname(cur); continue; }
    const next = posix.join(cur, c);
    if (stop(next)) return { path: posix.join(next, ...pending), loop: false };
    const target = fs.typeOf(next) === 'link' ? fs.readLink(next) : undefined;
    if (target === undefined) { cur = next; continue; }
    if (++links > MAX_SYMLINKS) return { path: posix.join(next, ...pending), loop: true };
    if (target.startsWith('/')) cur = '/';
    pending.unshift(...target.split('/').filter((x) => x !== '' && x !== '.'));
  }
  return { path: cur, loop: false };
}

/**
 * Why a file cannot be mounted at the resolved `path` (undefined when it can): it must be a file (or missing,
 * the underlay then creates it) whose existing ancestors are all directories, outside the kernel filesystems.
 */
export function fileMountBlocker(fs: FsView, path: string): string | undefined {
  if (['/proc', '/sys', '/dev'].some((d) => path === d || path.startsWith(`${d}/`))) return `${path} is on a kernel filesystem`;
  const type: EntryType | undefined = fs.typeOf(path);
  if (type === 'dir') return `${path} is a directory in the container`;
  if (type === 'other') return `${path} is not a regular file in the container`;
  for (let d = posix.dirname(path); d !== '/'; d = posix.dirname(d)) {
    const t = fs.typeOf(d);
    if (t !== undefined && t !== 'dir') return `${d} is not a directory in the container`;
  }
  return undefined;
}

/** The same view with some entries hidden (symlinks a mount replaces), so the underlay treats them as missing. */
export function withoutEntries(fs: FsView, hidden: ReadonlySet<string>): FsView {
  if (hidden.size === 0) return fs;
  const gone = (p: string): boolean => hidden.has(posix.normalize(p));
  return {
    typeOf: (p) => (gone(p) ? undefined : fs.typeOf(p)),
    isExecutable: (p) => !gone(p) && fs.isExecutable(p),
    list: (p) => fs.list(p).filter((n) => !gone(posix.join(p, n))),
    read: (p) => (gone(p) ? undefined : fs.read(p)),
    readLink: (p) => (gone(p) ? undefined : fs.readLink(p)),
  };
}
