// Apptainer's "underlay" for a read-only image under bwrap 0.8 (fuse-and-sandbox-notes.md §3e): where a mount
// destination diverges from the image, that directory becomes a tmpfs with the image's entries bound back,
// so bwrap can create the missing mount points. Applied at every depth where a path diverges; pure.
import { posix } from 'node:path';
import type { FsView } from './launch-spec.js';

export interface RootfsPlan {
  /** bwrap arguments that assemble the root: the image (or a tmpfs) at `/` and the underlay layers. */
  argv: string[];
  /** Directories made tmpfs; they are remounted read-only after every other mount (bwrap `--remount-ro`). */
  remountReadOnly: string[];
}

/** Deepest ancestor of `dest` that exists in the image as a directory, or undefined when `dest` exists. */
export function divergencePoint(image: FsView, dest: string): string | undefined {
  const parts = posix.normalize(dest).split('/').filter((p) => p !== '');
  let dir = '/';
  for (const part of parts) {
    const next = posix.join(dir, part);
    const type = image.typeOf(next);
    if (type === undefined) return dir;
    // A symlink or a file on the way: bwrap follows or fails as Apptainer would; no underlay for it.
    if (type !== 'dir') return undefined;
    dir = next;
  }
  return undefined;
}

/** `dir`/`name` for a normalized absolute `dir` and a plain name: no path.join, whose normalizing, run cold in a
 * process that lives ~100 ms, cost ~10 ms of a start whose underlay binds back a large /etc entry by entry. */
function under(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

export function planRootfs(image: FsView, imageRoot: string, dests: string[]): RootfsPlan {
  const points = new Set<string>();
  for (const d of dests) {
    const p = divergencePoint(image, d);
    if (p !== undefined) points.add(p);
  }
  // Parents before children: a deeper tmpfs lands on a directory the shallower layer bound back.
  const ordered = [...points].sort((a, b) => depth(a) - depth(b) || a.localeCompare(b));
  const argv: string[] = [];
  if (!points.has('/')) argv.push('--ro-bind', imageRoot, '/');
  const root = imageRoot === '/' ? '' : imageRoot.replace(/\/+$/, '');
  for (const dir of ordered) {
    argv.push('--tmpfs', dir);
    for (const name of image.list(dir)) {
      const inImage = under(dir, name);
      const type = image.typeOf(inImage);
      if (type === 'link') continue; // replaced below, with its target kept verbatim
      argv.push('--ro-bind', root + inImage, inImage);
    }
    for (const name of image.list(dir)) {
      const inImage = under(dir, name);
      if (image.typeOf(inImage) === 'link') argv.push('--symlink', image.readLink(inImage) ?? inImage, inImage);
    }
  }
  return { argv, remountReadOnly: ordered };
}

function depth(p: string): number {
  return p === '/' ? 0 : p.split('/').length - 1;
}

