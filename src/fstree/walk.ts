// Directory walker for the publisher: lstat-based, never follows symlinks, children sorted by name
// (byte order), parents before children. Reads xattrs with one `getfattr` child process per tree
// (Node has no xattr API), which runs while the walk does. Not a change detector: comparing against an
// older revision is publish/'s job.
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { type Entry, joinPath, parentPath, typeFromMode } from './entry.js';

/** An entry found on disk, with the absolute path its bytes are read from. */
export interface WalkedEntry {
  entry: Entry;
  sourcePath: string;
}

export interface WalkOptions {
  /** Read extended attributes ("auto": when `getfattr` exists; default "auto"). */
  xattrs?: boolean | 'auto';
}

/** CVMFS stores xattr keys and values in one length byte each (spec §4.6). */
const XATTR_MAX_BYTES = 255;

/**
 * Walks `root` and returns every entry, the root itself first with path "".
 * Hard links: files sharing (dev, ino) inside ONE directory get a common `hardlinkKey`; CVMFS has no
 * cross-directory hard links (spec §4.5), so members in different directories are published as
 * separate files (each directory's members still form a group when there are two or more).
 * Throws PUBLISH_SOURCE naming the path when a directory or link cannot be read.
 */
export async function walkTree(root: string, options: WalkOptions = {}): Promise<WalkedEntry[]> {
  const out: WalkedEntry[] = [];
  const inodes = new Map<string, string>();
  // getfattr walks the tree in its own process meanwhile (its output waits in the pipe).
  const wantXattrs = options.xattrs ?? 'auto';
  const xattrs = wantXattrs === false ? undefined : readXattrs(root, wantXattrs === true);
  xattrs?.catch(() => undefined); // awaited below; a walk error must not leave it unhandled
  // Synchronous system calls: on a cached tree an lstat costs ~2 µs, a promise round trip through the
  // libuv pool ~20 µs (measured: 12k entries in 57 ms vs 220-400 ms with concurrent async lstat).
  const describe = (rel: string, abs: string): Entry => {
    const { entry, inode } = describeEntry(rel, abs);
    if (inode !== undefined) inodes.set(rel, inode);
    return entry;
  };
  const visit = (entry: Entry, abs: string): void => {
    out.push({ entry, sourcePath: abs });
    if (entry.type !== 'dir') return;
    let names: string[];
    try { names = readdirSync(abs); } catch (e) { throw sourceError('list directory', abs, e); }
    names.sort(compareNames);
    for (const n of names) {
      const childAbs = join(abs, n);
      visit(describe(joinPath(entry.path, n), childAbs), childAbs);
    }
  };
  visit(describe('', root), root);
  assignHardlinkKeys(out, inodes);
  if (xattrs !== undefined) {
    const found = await xattrs;
    const byAbs = new Map(found.size > 0 ? out.map((w) => [w.sourcePath, w.entry]) : []);
    for (const [abs, attrs] of found) {
      const e = byAbs.get(abs);
      if (e !== undefined) e.xattrs = attrs;
    }
  }
  return out;
}

/** UTF-16 order equals UTF-8 byte order unless a string holds a surrogate or a char from U+E000 up. */
const NOT_BYTE_ORDERED = /[\uD800-\uFFFF]/;

/** Byte-wise order, as CVMFS and most tools list directories; stable across locales. */
export function compareNames(a: string, b: string): number {
  if (NOT_BYTE_ORDERED.test(a) || NOT_BYTE_ORDERED.test(b)) return Buffer.compare(Buffer.from(a), Buffer.from(b));
  return a < b ? -1 : a > b ? 1 : 0;
}

function assignHardlinkKeys(out: WalkedEntry[], inodes: Map<string, string>): void {
  const groups = new Map<string, Entry[]>();
  for (const w of out) {
    const id = inodes.get(w.entry.path);
    if (id === undefined) continue;
    const key = `${id}:${parentPath(w.entry.path)}`;
    let g = groups.get(key);
    if (g === undefined) groups.set(key, (g = []));
    g.push(w.entry);
  }
  for (const [key, members] of groups) if (members.length > 1) for (const e of members) e.hardlinkKey = key;
}

function sourceError(action: string, path: string, cause: unknown): GridboxError {
  return new GridboxError('PUBLISH_SOURCE', `Cannot ${action} ${q(path)} in the publish source`, { path, cause });
}

/**
 * Runs `getfattr -R -h -d -m - -e hex` once over the tree and parses its report. Names and values
 * longer than 255 bytes cannot be stored in a catalog (spec §4.6) and are skipped.
 * With `required` false a missing getfattr means "no xattrs"; with true it is an error.
 */
export async function readXattrs(root: string, required: boolean): Promise<Map<string, Record<string, Buffer>>> {
  const text = await new Promise<string | null>((resolve, reject) => {
    const child = spawn('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '--absolute-names', '-e', 'hex', root], { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => { if (stderr.length < 4096) stderr += c.toString(); });
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' && !required) resolve(null);
      else reject(new GridboxError('PUBLISH_SOURCE', `Cannot run getfattr to read extended attributes below ${q(root)}`, { path: root, cause: e }));
    });
    // getfattr exits 1 when some file had no readable attributes; the report is still complete.
    child.on('close', (code) => {
      if (code !== 0 && chunks.length === 0 && stderr.trim() !== '') reject(new GridboxError('PUBLISH_SOURCE', `getfattr failed below ${q(root)}: ${stderr.trim()}`, { path: root }));
      else resolve(Buffer.concat(chunks).toString('latin1'));
    });
  });
  const result = new Map<string, Record<string, Buffer>>();
  if (text === null) return result;
  let current: Record<string, Buffer> | null = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      const abs = Buffer.from(unescapeGetfattr(line.slice(8)), 'latin1').toString('utf8');
      current = {};
      result.set(abs, current);
      continue;
    }
    const eq = line.indexOf('=');
    if (current === null || eq <= 0) continue;
    const name = Buffer.from(unescapeGetfattr(line.slice(0, eq)), 'latin1').toString('utf8');
    const raw = line.slice(eq + 1);
    const value = raw.startsWith('0x') ? Buffer.from(raw.slice(2), 'hex') : Buffer.from(raw.replace(/^"|"$/g, ''), 'latin1');
    if (Buffer.byteLength(name) > XATTR_MAX_BYTES || value.length > XATTR_MAX_BYTES) continue;
    current[name] = value;
  }
  for (const [k, v] of result) if (Object.keys(v).length === 0) result.delete(k);
  return result;
}

/** getfattr escapes unprintable bytes, "\" and "=" as backslash + three octal digits. */
function unescapeGetfattr(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * One entry described by lstat (the streaming publisher's unit): `inode` ("dev:ino") is set for regular
 * files with more than one link. Throws PUBLISH_SOURCE naming the path.
 */
export function describeEntry(rel: string, abs: string): { entry: Entry; inode?: string } {
  let st;
  try { st = lstatSync(abs, { bigint: true }); } catch (e) { throw sourceError('stat', abs, e); }
  const type = typeFromMode(Number(st.mode));
  const entry: Entry = {
    path: rel, type, mode: Number(st.mode) & 0o7777, uid: Number(st.uid), gid: Number(st.gid),
    size: type === 'file' ? Number(st.size) : type === 'dir' ? 4096 : 0,
    mtime: Number(st.mtimeNs / 1_000_000_000n), mtimeNs: Number(st.mtimeNs % 1_000_000_000n),
  };
  if (type === 'symlink') {
    try { entry.target = readlinkSync(abs); } catch (e) { throw sourceError('read link', abs, e); }
    entry.size = Buffer.byteLength(entry.target);
  }
  if (type === 'chardev' || type === 'blockdev') entry.rdev = Number(st.rdev);
  return type === 'file' && st.nlink > 1n ? { entry, inode: `${st.dev}:${st.ino}` } : { entry };
}

/**
 * The children of one directory (`abs`, walked as `rel`), described and sorted by name, with the same
 * hard-link keys walkTree gives (files sharing an inode inside this directory). What the streaming
 * publisher holds of the source at any time: one listing per directory on the current path.
 */
export function listDirectory(abs: string, rel: string): WalkedEntry[] {
  let names: string[];
  try { names = readdirSync(abs); } catch (e) { throw sourceError('list directory', abs, e); }
  names.sort(compareNames);
  const out: WalkedEntry[] = new Array(names.length);
  let inodes: Map<string, Entry[]> | undefined;
  // Plain concatenation: path.join's normalisation cost ~10% of a walk (names never hold '/').
  const prefix = abs.endsWith('/') ? abs : `${abs}/`;
  for (let i = 0; i < names.length; i++) {
    const childAbs = prefix + names[i];
    const d = describeEntry(joinPath(rel, names[i]), childAbs);
    out[i] = { entry: d.entry, sourcePath: childAbs };
    if (d.inode !== undefined) {
      inodes ??= new Map();
      const g = inodes.get(d.inode);
      if (g === undefined) inodes.set(d.inode, [d.entry]);
      else g.push(d.entry);
    }
  }
  if (inodes !== undefined) for (const [id, members] of inodes) if (members.length > 1) for (const e of members) e.hardlinkKey = `${id}:${rel}`;
  return out;
}
