// Opens a sandbox image (a directory, possibly on a FUSE mount) and reads what the runtime needs from
// /.singularity.d. SIF and other single-file images are refused. Also the real FsView over a directory.
// Image-sync contract: `.singularity.d/env/90-environment.sh` carries the OCI Env, and `.singularity.d/workdir`
// holds the OCI WorkingDir (one absolute path, trailing newline optional); `run` honours it without --pwd.
import { type Dirent, type Stats, closeSync, lstatSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, realpathSync, statSync, accessSync, constants } from 'node:fs';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { GridboxError, q } from '../errors.js';
import type { EntryType, FsView, ImageInfo } from './launch-spec.js';

const MAX_SMALL_FILE_BYTES = 1 << 20;
const SIF_MAGIC = 'SIF_MAGIC';

/**
 * An FsView over a host directory; paths are absolute inside `root`. Synchronous: start-up latency matters more.
 * Answers are remembered for the view's life (one launch being built): building a launch asks about the same
 * paths many times (`/etc` ~20 times for a GlideinWMS job), and on a FUSE-mounted image each question the
 * kernel has not cached is a round trip to the mount's daemon.
 */
export function createFsView(root: string): FsView {
  // Plain concatenation for the normalized absolute paths callers pass (path.join's normalizing, run cold in a
  // process that lives ~100 ms, was most of the underlay's planning on an image with a large /etc); join otherwise.
  const at = (p: string): string => (root === '/' ? p : p.startsWith('/') && !/\/\.{0,2}(\/|$)/.test(p) ? root + p : join(root, p));
  const memo = <T>(fn: (p: string) => T): ((p: string) => T) => {
    const seen = new Map<string, T>();
    return (p) => {
      if (seen.has(p)) return seen.get(p) as T;
      const v = fn(p);
      seen.set(p, v);
      return v;
    };
  };
  /** Types learned from directory listings (d_type), so listing a directory and asking each entry's type is one call. */
  const listed = new Map<string, EntryType>();
  // The same answer from an lstat or a directory entry (Node fills an entry whose d_type is unknown by lstat).
  const entryType = (s: Stats | Dirent): EntryType => (s.isDirectory() ? 'dir' : s.isFile() ? 'file' : s.isSymbolicLink() ? 'link' : 'other');
  return {
    typeOf: memo((p: string): EntryType | undefined => {
      const known = listed.get(p);
      if (known !== undefined) return known;
      try { return entryType(lstatSync(at(p))); } catch { return undefined; }
    }),
    isExecutable: memo((p: string): boolean => {
      try {
        if (!statSync(at(p)).isFile()) return false;
        accessSync(at(p), constants.X_OK);
        return true;
      } catch { return false; }
    }),
    list: memo((p: string): string[] => {
      let entries: Dirent[];
      try { entries = readdirSync(at(p), { withFileTypes: true }); } catch { return []; }
      const prefix = p.endsWith('/') ? p : `${p}/`;
      for (const d of entries) listed.set(prefix + d.name, entryType(d));
      return entries.map((d) => d.name).sort();
    }),
    readLink: memo((p: string): string | undefined => {
      try { return readlinkSync(at(p)); } catch { return undefined; }
    }),
    read: memo((p: string): string | undefined => {
      try {
        const st = statSync(at(p));
        if (!st.isFile() || st.size > MAX_SMALL_FILE_BYTES) return undefined;
        return readFileSync(at(p), 'utf8');
      } catch { return undefined; }
    }),
  };
}

/** Opens `arg` (relative to `cwd`) as a sandbox image; throws LAUNCH_NO_IMAGE or LAUNCH_SIF_UNSUPPORTED. */
export function openImage(arg: string, cwd: string): ImageInfo {
  if (/^[a-z0-9+.-]+:\/\//i.test(arg)) {
    throw new GridboxError('LAUNCH_SIF_UNSUPPORTED', `Cannot open image ${q(arg)}: only sandbox directories are supported, not URIs`);
  }
  const abs = isAbsolute(arg) ? arg : resolve(cwd, arg);
  let root: string;
  try {
    root = realpathSync(abs);
  } catch (cause) {
    throw new GridboxError('LAUNCH_NO_IMAGE',
      `While checking container encryption: could not open image ${abs}: failed to retrieve path for ${arg}: lstat ${abs}: no such file or directory`,
      { cause, path: abs });
  }
  const st = statSync(root);
  if (!st.isDirectory()) {
    const sif = headerHasSifMagic(root);
    throw new GridboxError('LAUNCH_SIF_UNSUPPORTED',
      sif ? `Cannot run image ${q(abs)}: SIF images are not supported, use a sandbox directory`
        : `Cannot run image ${q(abs)}: only sandbox directories are supported`, { path: abs });
  }
  if (root === '/') throw new GridboxError('LAUNCH_NO_IMAGE', `Cannot use ${q(abs)} as an image: "/" is refused`, { path: abs });
  return describeImage(abs, root, createFsView(root));
}

function headerHasSifMagic(file: string): boolean {
  try {
    const fd = openSync(file, 'r');
    try {
      const buf = Buffer.alloc(64);
      const n = readSync(fd, buf, 0, 64, 0);
      return buf.subarray(0, n).toString('latin1').includes(SIF_MAGIC);
    } finally { closeSync(fd); }
  } catch { return false; }
}

/** Reads the image facts through a view; tests pass an in-memory view. */
export function describeImage(path: string, root: string, fs: FsView): ImageInfo {
  const envScripts = fs.list('/.singularity.d/env').filter((n) => n.endsWith('.sh'));
  let labels: Record<string, string> = {};
  const labelText = fs.read('/.singularity.d/labels.json');
  if (labelText !== undefined) {
    try {
      const parsed: unknown = JSON.parse(labelText);
      if (parsed !== null && typeof parsed === 'object') {
        labels = Object.fromEntries(Object.entries(parsed as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
      }
    } catch { /* a broken labels.json shows no labels, as Apptainer does */ }
  }
  const workdir = fs.read('/.singularity.d/workdir')?.trim();
  return {
    path, root, fs,
    hasShell: fs.isExecutable('/bin/sh'),
    envScripts,
    runscript: fs.isExecutable('/.singularity.d/runscript') ? '/.singularity.d/runscript' : undefined,
    testScript: fs.isExecutable('/.singularity.d/test') ? '/.singularity.d/test' : undefined,
    labels,
    workdir: workdir !== undefined && workdir.startsWith('/') ? workdir : undefined,
  };
}

export const imageName = (info: ImageInfo): string => basename(info.path);
