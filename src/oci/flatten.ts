// Applies image layers in order to an in-memory entry map and returns the flat tree ready to publish:
// OCI whiteouts and opaque dirs (lower layers only), hard links, devices by policy, setuid/setgid
// stripped, permissions normalised. Never extracts to disk, so nothing can land outside the tree.
// Hostile entries fail the layer (OCI_UNSAFE_PATH naming layer, entry and rule), as Docker's unpacker
// fails with a breakout error; `lenient` skips them with a warning instead. Docker's rules (moby
// pkg/archive): a name or hard-link target whose ".." climbs above the root after lexical cleaning is a
// breakout ("a/../b" is just "b"); so is a symlink whose relative target, from its directory, climbs
// above the root. Harmless, as there: absolute names and hard-link targets (taken from the root),
// absolute symlink targets, and writes through a symlinked parent directory, which land where the link
// points inside the image (Docker unpacks in a chroot, containerd resolves with RootPath) — here
// absolute targets restart at the image root and ".." stops there. Ours besides: whiteouts of "", "."
// or "..", a loop of symlinks on the way (more than MAX_SYMLINK_HOPS) and, by policy, device nodes.
// Layers are read top to bottom and applied bottom to top: a file that no upper layer shadows goes
// straight to the caller's ContentSink (the publisher's worker pool) while the layer streams; the rest
// (and everything when there is no sink) is spooled, one append-only file per layer, and referenced by
// (spool file, offset, size). A layer whose entry list the caller remembered is not downloaded again.
import { createReadStream } from 'node:fs';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { GridboxError, q } from '../errors.js';
import { type Entry, baseName, joinPath, parentPath } from '../fstree/entry.js';
import { decompressLayer, type DecompressOptions } from '../tar/decompress.js';
import { readTar, type TarReadOptions, type UnsafeRule } from '../tar/tar-reader.js';

export type { UnsafeRule } from '../tar/tar-reader.js';

export interface LayerSource {
  /** Layer name for messages (its digest). */
  digest: string;
  /** Opens the layer bytes (gzip, zstd or plain tar; detected), read to the end. Called once per read of the image (see flattenLayers for a second read). */
  open(): AsyncIterable<Uint8Array> | Promise<AsyncIterable<Uint8Array>>;
  /** The layer's entries remembered from an earlier read; used instead of `open` when every file it needs is stored. */
  remembered?: () => Promise<LayerRecord[] | undefined>;
  /** Told the layer's entries after it was read from `open` (files the sink took carry `stored`). */
  remember?: (records: LayerRecord[]) => void;
}

/**
 * What happens to char/block devices: "skip" (default; counted), "empty-file" (mode 0, like rootless
 * umoci), "keep", or "refuse" (the layer fails with rule "device", or under `lenient` the node is skipped with a warning).
 */
export type DevicePolicy = 'skip' | 'empty-file' | 'keep' | 'refuse';

/** Symlinks followed on the way to one path before giving up (Linux's MAXSYMLINKS). */
export const MAX_SYMLINK_HOPS = 40;
/**
 * "propagate" (default): the owner's read bit is copied to group and other, the owner's execute bit
 * likewise, so a job user (CVMFS shows files as the mounting user but checks "other" bits) can read
 * and run what the image owner could. Write bits are untouched; an owner-unreadable file stays so.
 * "keep": modes as in the layer (setuid/setgid are still stripped unless `keepSetid`).
 */
export type PermissionPolicy = 'propagate' | 'keep';

export interface FlattenOptions {
  /** Directory for the spool files (caller-owned; removed by disposeFlatTree or with the dir). */
  spoolDir: string;
  devices?: DevicePolicy;
  permissions?: PermissionPolicy;
  /** Keep setuid/setgid bits (default false: stripped and counted; inert under nosuid anyway). */
  keepSetid?: boolean;
  /**
   * Skip hostile entries with a warning (the image is published without them) instead of failing
   * the layer with OCI_UNSAFE_PATH (the default).
   */
  lenient?: boolean;
  /** Tar limits; `absoluteNames` defaults to "strip" here (Docker takes absolute names from the root). */
  tar?: Omit<TarReadOptions, 'strict' | 'onWarning' | 'label'>;
  decompress?: Omit<DecompressOptions, 'label'>;
  onWarning?: (w: FlattenWarning) => void;
  /** Takes the bytes of files no upper layer shadows while the layer streams (else they are spooled). */
  sink?: ContentSink;
}

/**
 * Where unshadowed file bytes go as a layer streams. `put` resolves once the caller may read on
 * (bounded memory) with `stored`, which settles when the bytes are stored: its value is kept as the
 * file's ContentRef.stored. `flush` sends whatever is still batched.
 */
export interface ContentSink {
  put(bytes: Uint8Array): Promise<{ stored: Promise<unknown> }>;
  flush(): void;
  /** Files larger than this are spooled, never held whole in memory (default 64 MiB). */
  maxFileBytes?: number;
}

/** A layer's entries in archive order, as remembered for a re-sync; `stored` as a ContentSink gave it. */
export interface LayerRecord {
  entry: Entry;
  linkTo?: string;
  /** Files only; absent when the bytes were spooled (shadowed then) rather than stored. */
  stored?: unknown;
}

export interface FlattenWarning {
  code: 'OCI_UNSAFE_PATH' | 'TAR_UNSUPPORTED' | 'TAR_INVALID';
  message: string;
  path: string;
  layer: string;
  /** For OCI_UNSAFE_PATH: the rule the entry broke. */
  rule?: UnsafeRule;
}

/** Where a file's bytes are: `size` bytes at `offset` of the spool file, or already `stored` by the sink. */
export interface ContentRef {
  spoolPath: string;
  offset: number;
  size: number;
  /** What the ContentSink made of the bytes (then spoolPath/offset mean nothing). */
  stored?: unknown;
}

export interface FlattenStats {
  layers: number;
  files: number;
  dirs: number;
  symlinks: number;
  /** Hard-link entries applied (each tar "link" record). */
  hardlinks: number;
  fifos: number;
  devicesSkipped: number;
  devicesEmptied: number;
  devicesKept: number;
  whiteouts: number;
  opaqueDirs: number;
  setidStripped: number;
  modesNormalised: number;
  unsafeSkipped: number;
  /** Entries and whiteouts whose parent path went through a symlink inside the image (applied where it points). */
  throughSymlinks: number;
  /** Sum of file sizes in the final tree. */
  bytes: number;
}

export interface FlatTree {
  /** Every entry, the root ("") first, parents before children, siblings in byte order. */
  entries: Entry[];
  /** Bytes of each regular file, by path. Files sharing a ref are hard links or link copies. */
  contents: Map<string, ContentRef>;
  stats: FlattenStats;
  warnings: FlattenWarning[];
  /** The spool files backing `contents` (removed by disposeFlatTree). */
  spoolFiles: string[];
}

interface Node {
  entry: Entry;
  content?: ContentRef;
  /** A remembered file without stored bytes: the tree cannot be finished from memory. */
  missing?: boolean;
  /** Identity of the inode: hard links share it. */
  inode: number;
}

type Warn = (code: FlattenWarning['code'], message: string, path: string, rule?: UnsafeRule) => void;

interface LayerItem {
  entry: Entry;
  linkTo?: string;
  content?: ContentRef;
  missing?: boolean;
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/**
 * Applies `layers` bottom to top. Throws on corrupt or over-limit layers; warns (or throws if strict) on
 * unsafe paths. Should a remembered layer lack bytes the final tree needs (an upper entry that shadowed
 * them was refused), the image is read again without remembered layers (warnings are then told twice).
 */
export async function flattenLayers(layers: LayerSource[], options: FlattenOptions): Promise<FlatTree> {
  const tree = await flattenOnce(layers, options, true);
  return tree ?? (await flattenOnce(layers, options, false))!;
}

async function flattenOnce(layers: LayerSource[], options: FlattenOptions, useRemembered: boolean): Promise<FlatTree | undefined> {
  const devices = options.devices ?? 'skip';
  const stats: FlattenStats = {
    layers: layers.length, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, fifos: 0, devicesSkipped: 0, devicesEmptied: 0,
    devicesKept: 0, whiteouts: 0, opaqueDirs: 0, setidStripped: 0, modesNormalised: 0, unsafeSkipped: 0, throughSymlinks: 0, bytes: 0,
  };
  const warnings: FlattenWarning[] = [];
  const spoolFiles = layers.map((_, li) => join(options.spoolDir, `layer-${li}.spool`));
  const nodes = new Map<string, Node>();
  let nextInode = 1;
  nodes.set('', { entry: dirEntry('', 0), inode: nextInode++ });
  const warner = (li: number): Warn => (code, message, path, rule) => {
    if (code === 'OCI_UNSAFE_PATH') {
      if (!options.lenient) {
        throw new GridboxError('OCI_UNSAFE_PATH', `${message}; refusing the layer (gridbox sync --lenient would skip such entries)`, { path, layer: layers[li].digest, rule });
      }
      stats.unsafeSkipped++;
    }
    const w: FlattenWarning = { code, message, path, layer: layers[li].digest };
    if (rule !== undefined) w.rule = rule;
    warnings.push(w);
    options.onWarning?.(w);
  };
  const label = (li: number): string => `layer ${li + 1}/${layers.length} ${layers[li].digest}`;

  // Read top to bottom, so that each layer knows which of its files upper layers shadow.
  const shadow = new Shadow();
  const layerItems: LayerItem[][] = new Array(layers.length);
  const stores: Promise<unknown>[] = [];
  const toRemember: { li: number; items: LayerItem[] }[] = [];
  for (let li = layers.length - 1; li >= 0; li--) {
    const layer = layers[li];
    const records = useRemembered ? await layer.remembered?.() : undefined;
    if (records !== undefined && records.every((r) => r.entry.type !== 'file' || r.linkTo !== undefined || r.stored !== undefined || shadow.covers(r.entry.path))) {
      layerItems[li] = records.map((r) => {
        const it: LayerItem = { entry: r.entry };
        if (r.linkTo !== undefined) it.linkTo = r.linkTo;
        else if (r.entry.type === 'file') {
          if (r.stored !== undefined) it.content = { spoolPath: '', offset: 0, size: r.entry.size, stored: r.stored };
          else it.missing = true;
        }
        return it;
      });
    } else {
      const warned = warnings.length;
      layerItems[li] = await readLayer(layer, label(li), spoolFiles[li], options, warner(li), (p) => shadow.covers(p), stores);
      // A layer that warned while being read is read again next time, so its warnings (and --strict) recur.
      if (layer.remember && warnings.length === warned) toRemember.push({ li, items: layerItems[li] });
    }
    shadow.add(layerItems[li]);
  }
  options.sink?.flush();
  await Promise.all(stores);
  for (const { li, items } of toRemember) {
    layers[li].remember!(items.map((it) => ({
      entry: it.entry, ...(it.linkTo !== undefined ? { linkTo: it.linkTo } : {}), ...(it.content?.stored !== undefined ? { stored: it.content.stored } : {}),
    })));
  }

  for (let li = 0; li < layers.length; li++) {
    const spoolPath = spoolFiles[li];
    const warn = warner(li);
    const items = layerItems[li];
    const label_ = label(li);

    // Phase 1: whiteouts and opaque markers act on the lower layers only, wherever they sit in the archive.
    // A marker below a symlinked directory acts where the link points (as Docker's chrooted RemoveAll).
    const upper: LayerItem[] = [];
    for (const it of items) {
      const name = baseName(it.entry.path);
      if (!name.startsWith(WHITEOUT)) { upper.push(it); continue; }
      if (name.startsWith(WHITEOUT + WHITEOUT) && name !== OPAQUE) continue; // other AUFS bookkeeping (.wh..wh.plnk): meaningless here
      const real = realPath(nodes, it.entry.path);
      if (typeof real !== 'string') { warnUnreal(warn, label_, it.entry.path, real); continue; }
      if (real !== it.entry.path) stats.throughSymlinks++;
      if (name === OPAQUE) {
        stats.opaqueDirs++;
        removeSubtree(nodes, parentPath(real), false);
      } else {
        stats.whiteouts++;
        removeSubtree(nodes, joinPath(parentPath(real), name.slice(WHITEOUT.length)), true);
      }
    }

    // Phase 2: this layer's entries in archive order, each at its real path (parent symlinks followed inside the image).
    for (const it of upper) {
      if (it.entry.path === '' && it.entry.type !== 'dir') { warn('TAR_INVALID', `Skipping root entry of type ${it.entry.type} in ${label_}`, ''); continue; }
      const real = realPath(nodes, it.entry.path);
      if (typeof real !== 'string') { warnUnreal(warn, label_, it.entry.path, real); continue; }
      if (real !== it.entry.path) stats.throughSymlinks++;
      const path = real;
      let node: Node;
      if (it.linkTo !== undefined) {
        const realTarget = realPath(nodes, it.linkTo);
        if (typeof realTarget !== 'string') { warnUnreal(warn, label_, it.entry.path, realTarget, `hard link target ${q(it.linkTo)}`); continue; }
        const target = nodes.get(realTarget);
        if (!target || target.entry.type === 'dir') {
          warn('TAR_INVALID', `Skipping hard link ${q(it.entry.path)} in ${label_}: target ${q(it.linkTo)} ${target ? 'is a directory' : 'does not exist'}`, it.entry.path);
          continue;
        }
        stats.hardlinks++;
        node = target.entry.type === 'file'
          ? { entry: { ...target.entry, path }, content: target.content, inode: target.inode }
          : { entry: { ...target.entry, path }, inode: nextInode++ };
        if (target.missing) node.missing = true;
      } else if (it.entry.type === 'chardev' || it.entry.type === 'blockdev') {
        if (devices === 'skip' || devices === 'refuse') {
          // "refuse" failed the layer while it was read; under lenient the node is skipped like this.
          stats.devicesSkipped++;
          ensureParents(nodes, path, it.entry.mtime, () => nextInode++);
          removeSubtree(nodes, path, true);
          continue;
        }
        if (devices === 'empty-file') {
          stats.devicesEmptied++;
          const { rdev: _rdev, ...rest } = it.entry;
          node = { entry: { ...rest, type: 'file', mode: 0, size: 0 }, content: { spoolPath, offset: 0, size: 0 }, inode: nextInode++ };
        } else {
          stats.devicesKept++;
          node = { entry: it.entry, inode: nextInode++ };
        }
      } else {
        node = { entry: it.entry, inode: nextInode++ };
        if (it.content) node.content = it.content;
        if (it.missing) node.missing = true;
      }
      ensureParents(nodes, path, it.entry.mtime, () => nextInode++);
      const old = nodes.get(path);
      if (old && !(old.entry.type === 'dir' && node.entry.type === 'dir')) removeSubtree(nodes, path, true);
      if (old && old.entry.type === 'dir' && node.entry.type === 'dir') node.inode = old.inode;
      nodes.set(path, node);
    }
  }

  for (const n of nodes.values()) if (n.missing && n.entry.type === 'file') return undefined;
  return finish(nodes, options, stats, warnings, spoolFiles);
}

/** What the layers read so far (the upper ones) hide of a lower layer. */
class Shadow {
  /** Paths some upper layer has an entry at (or whites out). */
  private readonly defined = new Set<string>();
  /** Paths whose descendants upper layers hide: non-directories, whiteouts, opaque directories. */
  private readonly cut = new Set<string>();

  add(items: LayerItem[]): void {
    for (const it of items) {
      const path = it.entry.path;
      const name = baseName(path);
      if (name === OPAQUE) this.cut.add(parentPath(path));
      else if (name.startsWith(WHITEOUT + WHITEOUT)) continue;
      else if (name.startsWith(WHITEOUT)) {
        const target = joinPath(parentPath(path), name.slice(WHITEOUT.length));
        this.defined.add(target);
        this.cut.add(target);
      } else {
        this.defined.add(path);
        if (it.entry.type !== 'dir' || it.linkTo !== undefined) this.cut.add(path);
      }
    }
  }

  /** True when a lower layer's file at `path` cannot be what the final tree shows there. */
  covers(path: string): boolean {
    if (this.defined.has(path)) return true;
    for (let p = parentPath(path); ; p = parentPath(p)) {
      if (this.cut.has(p)) return true;
      if (p === '') return false;
    }
  }
}

/** Removes the spool files of a flat tree (its ContentRefs become invalid). */
export async function disposeFlatTree(tree: Pick<FlatTree, 'spoolFiles'>): Promise<void> {
  await Promise.all(tree.spoolFiles.map((f) => rm(f, { force: true })));
}

/** Streams one file's bytes from the spool. */
export function openContent(ref: ContentRef): Readable {
  if (ref.size === 0) return createReadStream('/dev/null');
  return createReadStream(ref.spoolPath, { start: ref.offset, end: ref.offset + ref.size - 1 });
}

/**
 * Reads one layer fully: entry metadata into memory; the bytes of files `shadowed` does not cover go to
 * the sink (their `stored` promises are pushed to `stores`), the others are appended to the spool file.
 */
async function readLayer(layer: LayerSource, label: string, spoolPath: string, options: FlattenOptions,
  warn: Warn, shadowed: (path: string) => boolean,
  stores: Promise<unknown>[]): Promise<LayerItem[]> {
  const items: LayerItem[] = [];
  const sink = options.sink;
  const maxSinkBytes = sink?.maxFileBytes ?? 64 << 20;
  let fh: FileHandle | undefined;
  let offset = 0;
  try {
    const bytes = decompressLayer(await layer.open(), { ...options.decompress, label });
    const tar = readTar(bytes, {
      // Unsafe names come back as warnings; warn() throws them unless lenient, with the layer named.
      absoluteNames: 'strip', ...options.tar, strict: false, label,
      onWarning: (w) => warn(w.code, w.message, w.path, w.rule),
    });
    for await (const t of tar) {
      const hostile = hostileShape(t.entry, t.linkTo, options.devices ?? 'skip');
      if (hostile !== undefined) {
        warn('OCI_UNSAFE_PATH', `Refusing tar entry ${q(t.entry.path)} in ${label}: ${hostile.why} (rule ${hostile.rule})`, t.entry.path, hostile.rule);
        continue; // lenient: skipped (its bytes are drained by the reader)
      }
      const item: LayerItem = { entry: t.entry };
      if (t.linkTo !== undefined) item.linkTo = t.linkTo;
      if (t.content) {
        // Whiteout markers are never files of the tree; shadowed files may never be either.
        if (sink !== undefined && t.entry.size <= maxSinkBytes && !baseName(t.entry.path).startsWith(WHITEOUT) && !shadowed(t.entry.path)) {
          const chunks: Buffer[] = [];
          let size = 0;
          for await (const chunk of t.content) { chunks.push(chunk); size += chunk.length; }
          const { stored } = await sink.put(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
          const ref: ContentRef = { spoolPath, offset: 0, size };
          const done = stored.then((v) => { ref.stored = v; });
          done.catch(() => undefined); // awaited (and thrown) once the layers are read; never unhandled
          stores.push(done);
          item.content = ref;
        } else {
          fh ??= await open(spoolPath, 'w');
          const start = offset;
          for await (const chunk of t.content) {
            await fh.write(chunk);
            offset += chunk.length;
          }
          item.content = { spoolPath, offset: start, size: offset - start };
        }
      }
      items.push(item);
    }
  } finally {
    await fh?.close();
  }
  return items;
}

/** The rules an entry breaks on its own (names and hard-link targets were checked by the tar reader). */
function hostileShape(e: Entry, linkTo: string | undefined, devices: DevicePolicy): { rule: UnsafeRule; why: string } | undefined {
  if (e.type === 'symlink' && symlinkEscapes(e.path, e.target ?? '')) {
    return { rule: 'symlink-escape', why: `symlink to ${q(e.target)} points above the image root` };
  }
  const name = baseName(e.path);
  if (name.startsWith(WHITEOUT) && !name.startsWith(WHITEOUT + WHITEOUT)) {
    const victim = name.slice(WHITEOUT.length);
    if (victim === '' || victim === '.' || victim === '..') return { rule: 'whiteout-escape', why: `whiteout of ${q(victim)} would delete its own directory or a parent` };
  }
  if (linkTo === undefined && devices === 'refuse' && (e.type === 'chardev' || e.type === 'blockdev')) {
    return { rule: 'device', why: `${e.type === 'chardev' ? 'character' : 'block'} device node refused by the device policy` };
  }
  return undefined;
}

function dirEntry(path: string, mtime: number): Entry {
  return { path, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 4096, mtime, mtimeNs: 0 };
}

/** Why a path has no real location: a loop of symlinks, or a non-directory on the way. */
interface Unreal { loop?: boolean; blocker?: Node }

/**
 * Where `path` really is in the tree built so far: every symlink among its parent directories followed
 * inside the image, like a chroot (an absolute target restarts at the root, ".." stops at the root).
 * The last component is never followed (an entry replaces a symlink there). Components that do not
 * exist yet are kept as they are (ensureParents creates them).
 */
function realPath(nodes: Map<string, Node>, path: string): string | Unreal {
  const parent = parentPath(path);
  // The common case, no symlink on the way, costs one map lookup per component and no allocation.
  let plain = true;
  for (let p = parent; p !== ''; p = parentPath(p)) {
    const t = nodes.get(p)?.entry.type;
    if (t !== undefined && t !== 'dir') { plain = false; break; }
  }
  if (plain) return path;
  const pending = parent.split('/');
  const done: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const c = pending.shift()!;
    if (c === '' || c === '.') continue;
    if (c === '..') { done.pop(); continue; }
    done.push(c);
    const n = nodes.get(done.join('/'));
    if (n === undefined || n.entry.type === 'dir') continue;
    if (n.entry.type !== 'symlink') return { blocker: n };
    if (++hops > MAX_SYMLINK_HOPS) return { loop: true, blocker: n };
    done.pop();
    const target = n.entry.target ?? '';
    if (target.startsWith('/')) done.length = 0;
    pending.unshift(...target.split('/'));
  }
  return joinPath(done.join('/'), baseName(path));
}

/** Reports an entry realPath() could not place: a symlink loop is hostile; a file as a parent is just invalid. */
function warnUnreal(warn: Warn, label: string, path: string, u: Unreal, what = 'its parent path'): void {
  if (u.loop) {
    warn('OCI_UNSAFE_PATH', `Refusing tar entry ${q(path)} in ${label}: ${what} follows more than ${MAX_SYMLINK_HOPS} symlinks (a loop at ${q(u.blocker?.entry.path)}) (rule symlink-loop)`, path, 'symlink-loop');
  } else {
    warn('TAR_INVALID', `Skipping ${q(path)} in ${label}: ${what} passes through ${q(u.blocker?.entry.path)}, a ${u.blocker?.entry.type}, not a directory`, path);
  }
}

/**
 * True when a symlink at `path` with a relative `target` would point above the root (Docker's
 * "invalid symlink" breakout: the target joined to the link's directory and cleaned lexically).
 */
export function symlinkEscapes(path: string, target: string): boolean {
  if (target.startsWith('/')) return false;
  let depth = parentPath(path) === '' ? 0 : parentPath(path).split('/').length;
  for (const c of target.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') { if (--depth < 0) return true; } else depth++;
  }
  return false;
}

function ensureParents(nodes: Map<string, Node>, path: string, mtime: number, inode: () => number): void {
  const missing: string[] = [];
  for (let p = parentPath(path); p !== '' && !nodes.has(p); p = parentPath(p)) missing.push(p);
  for (const p of missing.reverse()) nodes.set(p, { entry: dirEntry(p, mtime), inode: inode() });
}

/** Deletes everything below `path` (and `path` itself when `self`). Linear in the map size. */
function removeSubtree(nodes: Map<string, Node>, path: string, self: boolean): void {
  if (self && path !== '') nodes.delete(path);
  const prefix = path === '' ? '' : `${path}/`;
  for (const k of nodes.keys()) if (k !== '' && k.startsWith(prefix)) nodes.delete(k);
}

function finish(nodes: Map<string, Node>, options: FlattenOptions, stats: FlattenStats, warnings: FlattenWarning[], spoolFiles: string[]): FlatTree {
  const permissions = options.permissions ?? 'propagate';
  // Hard links: CVMFS links only within one directory (cvmfs-format.md §4.5), so a group gets a key
  // per directory with two or more members; members elsewhere stay separate files with shared bytes.
  const groups = new Map<string, string[]>();
  for (const [path, n] of nodes) {
    if (n.entry.type !== 'file') continue;
    const key = `${n.inode}\0${parentPath(path)}`;
    const g = groups.get(key);
    if (g) g.push(path); else groups.set(key, [path]);
  }
  const linkKey = new Map<string, string>();
  for (const [key, members] of groups) if (members.length > 1) for (const m of members) linkKey.set(m, `i${key.slice(0, key.indexOf('\0'))}`);

  const entries: Entry[] = [];
  const contents = new Map<string, ContentRef>();
  for (const [path, n] of nodes) {
    const e: Entry = { ...n.entry, path };
    delete e.hardlinkKey;
    if (e.type !== 'symlink') {
      let mode = e.mode;
      if (!options.keepSetid && mode & 0o6000) { mode &= ~0o6000; stats.setidStripped++; }
      if (permissions === 'propagate') {
        const add = (mode & 0o400 ? 0o044 : 0) | (mode & 0o100 ? 0o011 : 0);
        if ((mode | add) !== mode) { mode |= add; stats.modesNormalised++; }
      }
      e.mode = mode;
    }
    const lk = linkKey.get(path);
    if (lk) e.hardlinkKey = lk;
    if (e.type === 'file') {
      const ref = n.content ?? { spoolPath: spoolFiles[0] ?? '', offset: 0, size: 0 };
      e.size = ref.size;
      contents.set(path, ref);
      stats.files++;
      stats.bytes += ref.size;
    } else if (e.type === 'dir') stats.dirs++;
    else if (e.type === 'symlink') stats.symlinks++;
    else if (e.type === 'fifo' || e.type === 'socket') stats.fifos++;
    entries.push(e);
  }
  stats.dirs--; // the root is not counted
  // Byte order with "/" sorting lowest: parents first, each subtree contiguous.
  const keys = new Map(entries.map((e) => [e, Buffer.from(e.path.replaceAll('/', '\u0000'))]));
  entries.sort((a, b) => Buffer.compare(keys.get(a)!, keys.get(b)!));
  return { entries, contents, stats, warnings, spoolFiles };
}
