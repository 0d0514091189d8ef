// Applies image layers in order to an in-memory entry map and returns the flat tree ready to publish:
// OCI whiteouts and opaque dirs (lower layers only), hard links, devices by policy, setuid/setgid
// stripped, permissions normalised, every escape from the root refused. Never extracts to disk.
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
import { readTar, type TarReadOptions } from '../tar/tar-reader.js';

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

/** What happens to char/block devices: "skip" (default; counted), "empty-file" (mode 0, like rootless umoci), "keep". */
export type DevicePolicy = 'skip' | 'empty-file' | 'keep';
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
  /** Unsafe paths throw OCI_UNSAFE_PATH instead of being skipped with a warning. */
  strict?: boolean;
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
    devicesKept: 0, whiteouts: 0, opaqueDirs: 0, setidStripped: 0, modesNormalised: 0, unsafeSkipped: 0, bytes: 0,
  };
  const warnings: FlattenWarning[] = [];
  const spoolFiles = layers.map((_, li) => join(options.spoolDir, `layer-${li}.spool`));
  const nodes = new Map<string, Node>();
  let nextInode = 1;
  nodes.set('', { entry: dirEntry('', 0), inode: nextInode++ });
  const warner = (li: number) => (code: FlattenWarning['code'], message: string, path: string): void => {
    if (code === 'OCI_UNSAFE_PATH') {
      stats.unsafeSkipped++;
      if (options.strict) throw new GridboxError('OCI_UNSAFE_PATH', message, { path, layer: layers[li].digest });
    }
    const w = { code, message, path, layer: layers[li].digest };
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
    const upper: LayerItem[] = [];
    for (const it of items) {
      const name = baseName(it.entry.path);
      if (!name.startsWith(WHITEOUT)) { upper.push(it); continue; }
      const dir = parentPath(it.entry.path);
      if (name === OPAQUE) {
        stats.opaqueDirs++;
        removeSubtree(nodes, dir, false);
      } else if (name.startsWith(WHITEOUT + WHITEOUT)) {
        // other AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless here
      } else {
        stats.whiteouts++;
        removeSubtree(nodes, joinPath(dir, name.slice(WHITEOUT.length)), true);
      }
    }

    // Phase 2: this layer's entries in archive order.
    for (const it of upper) {
      const path = it.entry.path;
      if (path === '' && it.entry.type !== 'dir') { warn('TAR_INVALID', `Skipping root entry of type ${it.entry.type} in ${label_}`, path); continue; }
      const blocked = blockedBy(nodes, path);
      if (blocked) {
        const why = blocked.entry.type === 'symlink'
          ? `its parent ${q(blocked.entry.path)} is a symlink to ${q(blocked.entry.target)} (writing through it could leave the root)`
          : `its parent ${q(blocked.entry.path)} is a ${blocked.entry.type}, not a directory`;
        warn(blocked.entry.type === 'symlink' ? 'OCI_UNSAFE_PATH' : 'TAR_INVALID', `Refusing ${q(path)} in ${label_}: ${why}`, path);
        continue;
      }
      let node: Node;
      if (it.linkTo !== undefined) {
        const target = nodes.get(it.linkTo);
        const via = blockedBy(nodes, it.linkTo);
        if (via?.entry.type === 'symlink') {
          warn('OCI_UNSAFE_PATH', `Refusing hard link ${q(path)} in ${label_}: target ${q(it.linkTo)} passes through symlink ${q(via.entry.path)}`, path);
          continue;
        }
        if (!target || target.entry.type === 'dir') {
          warn('TAR_INVALID', `Skipping hard link ${q(path)} in ${label_}: target ${q(it.linkTo)} ${target ? 'is a directory' : 'does not exist'}`, path);
          continue;
        }
        stats.hardlinks++;
        node = target.entry.type === 'file'
          ? { entry: { ...target.entry, path }, content: target.content, inode: target.inode }
          : { entry: { ...target.entry, path }, inode: nextInode++ };
        if (target.missing) node.missing = true;
      } else if (it.entry.type === 'chardev' || it.entry.type === 'blockdev') {
        if (devices === 'skip') {
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
  warn: (code: FlattenWarning['code'], message: string, path: string) => void, shadowed: (path: string) => boolean,
  stores: Promise<unknown>[]): Promise<LayerItem[]> {
  const items: LayerItem[] = [];
  const sink = options.sink;
  const maxSinkBytes = sink?.maxFileBytes ?? 64 << 20;
  let fh: FileHandle | undefined;
  let offset = 0;
  try {
    const bytes = decompressLayer(await layer.open(), { ...options.decompress, label });
    const tar = readTar(bytes, {
      ...options.tar, strict: options.strict, label,
      onWarning: (w) => warn(w.code, w.message, w.path),
    });
    for await (const t of tar) {
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

function dirEntry(path: string, mtime: number): Entry {
  return { path, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 4096, mtime, mtimeNs: 0 };
}

/** The nearest existing ancestor of `path` that is not a directory, if any. */
function blockedBy(nodes: Map<string, Node>, path: string): Node | undefined {
  let p = parentPath(path);
  const chain: string[] = [];
  while (p !== '') { chain.push(p); p = parentPath(p); }
  for (const a of chain.reverse()) {
    const n = nodes.get(a);
    if (n && n.entry.type !== 'dir') return n;
  }
  return undefined;
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
