// Prefetch for start-ups: what a start reads under one image (`/.images/xx/<digest>`, else the repository's
// top directory) within its first seconds is recorded once per image: whole files, the chunks read of chunked
// files, and the catalogs they live in. On a later start of that image the record is replayed in parallel
// through the client (so each object is downloaded, verified and cached exactly like a reader's, and a reader
// arriving meanwhile joins the download in flight instead of fetching again), before the start asks for the
// objects one by one. The replay begins at the first LOOKUP under the image, not at its first read: a
// runtime resolves the image and sets up its sandbox long before the first exec reads a byte, and the
// replay's own lookups wait on the image's catalog with the runtime's.
// A profile that names missing files is harmless (they are skipped); never more than MAX_BYTES_FACTOR × the
// recorded bytes. Every start is recorded, not only an image's first: a start of an image after QUIET_MS
// without activity records again (a mount lives for days), and what a start read that its profile lacked is
// merged in; otherwise a pilot's probe of an image (`apptainer exec IMG true`), often its first start on a
// node, would be the only start its profile ever knew.
import { mkdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Client } from '../client/index.js';
import { writeFileAtomicSync } from '../plumbing/atomic-write.js';

/** How long after the first sign of a start of an image its reads count as "the start". */
export const START_WINDOW_MS = 20_000;
/** An image quiet this long (no lookup or read under it) starts again with its next lookup: recorded anew. */
export const QUIET_MS = 60_000;
/** Replay stops once the objects it fetched hold this many times the bytes the profile recorded. */
export const MAX_BYTES_FACTOR = 2;
/**
 * Files fetched at once by a replay. With 10 ms per request the replay is latency-bound, not bandwidth-bound
 * (most objects of a start are a few KiB): 16 left a 659-object start waiting ~0.4 s on round trips alone.
 */
export const REPLAY_CONCURRENCY = 48;
const MAX_PROFILE_FILES = 20_000;
/** Catalogs a profile loads up front at most (an image's catalogs number in the tens). */
const MAX_PROFILE_CATALOGS = 1_000;

/** A recorded file: a whole file and its size, or a chunked file, the bytes of its chunks read and their indices. */
export type ProfileFile = [path: string, size: number] | [path: string, size: number, chunks: number[]];
export interface Profile { fqrn: string; image: string; bytes: number; files: ProfileFile[]; catalogs?: string[] }

export interface StartProfiler {
  /** A lookup under `path` is about to be resolved: the earliest sign that an image starts (begins its replay). */
  onLookup(path: string): void;
  /** A whole file of `size` bytes at `path`, held by the catalog mounted at `catalog`, was opened. */
  onOpen(path: string, size: number, catalog?: string): void;
  /** Chunk `index` (`chunkSize` bytes) of the chunked file at `path` was read. */
  onChunk(path: string, index: number, chunkSize: number, catalog?: string): void;
  /**
   * A lookup of `path` was answered from the catalog mounted at `catalog`. A start that only lists or stats a
   * directory with its own nested catalog (`ls /usr/bin`) opens no file there, yet waits for that catalog's
   * load in the middle of its run; recorded, the replay loads it with the others at the start.
   */
  onCatalog(path: string, catalog: string): void;
  /** Writes profiles still recording (unmount). */
  flush(): Promise<void>;
  stats(): { recorded: number; replayed: number; replayedBytes: number; skipped: number };
}

/** The image a path belongs to: `/.images/xx/<digest>` for synced images, else its top directory. */
export function imageOf(path: string): string {
  const p = path.split('/').filter((s) => s !== '');
  if (p[0] === '.images' && p.length >= 3) return `/${p.slice(0, 3).join('/')}`;
  return p.length > 1 ? `/${p[0]}` : '/';
}

/**
 * The image a lookup of `path` is strictly inside of, or undefined at or above an image's root: a stat of image
 * roots (a pilot checking its image dictionary, a listing of /.images) must not replay every image's start.
 */
function lookupImage(path: string): string | undefined {
  const image = imageOf(path);
  return image === '/' || image === '/.images' || path.length <= image.length ? undefined : image;
}

/** Parses a stored profile; undefined when it is not one (a damaged profile is rewritten by the next start). */
export function parseProfile(text: string): Profile | undefined {
  let p: Profile;
  try { p = JSON.parse(text) as Profile; } catch { return undefined; }
  if (p === null || typeof p !== 'object' || !Array.isArray(p.files) || typeof p.bytes !== 'number') return undefined;
  const files = p.files.filter((f): f is ProfileFile => Array.isArray(f) && typeof f[0] === 'string' && typeof f[1] === 'number'
    && (f[2] === undefined || (Array.isArray(f[2]) && f[2].every((i) => Number.isInteger(i) && i >= 0))));
  const catalogs = Array.isArray(p.catalogs) ? p.catalogs.filter((c): c is string => typeof c === 'string') : [];
  return { fqrn: String(p.fqrn), image: String(p.image), bytes: p.bytes, files, catalogs };
}

interface Recording { files: Map<string, { size: number; chunks?: Set<number> }>; catalogs: Set<string>; timer: NodeJS.Timeout }

/**
 * A start's record merged into the stored profile: the start's files first (chunk sets joined with the stored
 * ones), then stored files it did not read, at most MAX_PROFILE_FILES; undefined when it adds nothing.
 */
export function mergeProfile(stored: Profile | undefined, fresh: Profile): Profile | undefined {
  if (stored === undefined) return fresh;
  const old = new Map(stored.files.map((f) => [f[0], f]));
  let added = false;
  const files: ProfileFile[] = [];
  for (const f of fresh.files) {
    const o = old.get(f[0]);
    old.delete(f[0]);
    if (o === undefined) { added = true; files.push(f); continue; }
    if (f[2] === undefined || o[2] === undefined) { files.push(f[2] === undefined ? f : o); continue; }
    // Chunked in both: the chunks either start read (sizes are the fresh record's per chunk on average).
    const chunks = [...new Set([...o[2], ...f[2]])].sort((a, b) => a - b);
    if (chunks.length > o[2].length) added = true;
    const per = f[2].length > 0 ? f[1] / f[2].length : 0;
    files.push([f[0], Math.max(o[1], f[1], Math.round(per * chunks.length)), chunks]);
  }
  const catalogs = [...new Set([...(stored.catalogs ?? []), ...(fresh.catalogs ?? [])])];
  if (!added && catalogs.length === (stored.catalogs ?? []).length) return undefined;
  for (const f of old.values()) files.push(f);
  const kept = files.slice(0, MAX_PROFILE_FILES);
  return { ...fresh, files: kept, catalogs, bytes: kept.reduce((a, f) => a + f[1], 0) };
}

export function createStartProfiler(o: { dir: string; client: Client; log?: (line: string) => void; windowMs?: number; quietMs?: number; concurrency?: number }): StartProfiler {
  const windowMs = o.windowMs ?? START_WINDOW_MS;
  const quietMs = o.quietMs ?? QUIET_MS;
  const concurrency = o.concurrency ?? REPLAY_CONCURRENCY;
  /** When each image was last looked into or read: the first time starts a replay, a quiet spell a new recording. */
  const lastActive = new Map<string, number>();
  const recording = new Map<string, Recording>();
  let recorded = 0, replayed = 0, replayedBytes = 0, skipped = 0;
  /** The image of the last lookup: most lookups stay inside it, so they cost one startsWith. */
  let lastImage = '';
  const fileOf = (image: string): string => join(o.dir, `${createHash('sha256').update(`${o.client.fqrn}\0${image}`).digest('hex').slice(0, 24)}.json`);

  const save = async (image: string): Promise<void> => {
    const r = recording.get(image);
    if (r === undefined) return;
    recording.delete(image);
    clearTimeout(r.timer);
    if (r.files.size === 0) return;
    let bytes = 0;
    const files: ProfileFile[] = [];
    for (const [path, f] of r.files) {
      bytes += f.size;
      files.push(f.chunks === undefined ? [path, f.size] : [path, f.size, [...f.chunks].sort((a, b) => a - b)]);
    }
    const fresh: Profile = { fqrn: o.client.fqrn, image, bytes, files, catalogs: [...r.catalogs] };
    try {
      // Read again now, not at the start: another mount of this repository may have written it meanwhile.
      // Synchronous: a profile is tens of KiB in the page cache, and the last save runs while umount(8)'s caller
      // waits for the daemon to be gone (threadpool hops cost it 2-6 ms here; the JSON work is synchronous anyway).
      let stored: Profile | undefined;
      try { stored = parseProfile(readFileSync(fileOf(image), 'utf8')); } catch { stored = undefined; }
      const p = mergeProfile(stored, fresh);
      if (p === undefined) return;
      mkdirSync(o.dir, { recursive: true });
      writeFileAtomicSync(fileOf(image), JSON.stringify(p));
      recorded++;
    } catch (e) {
      o.log?.(`cannot write the start profile of ${image}: ${(e as Error).message}`);
    }
  };

  const replay = async (image: string, p: Profile): Promise<void> => {
    const t0 = Date.now();
    // Nested catalogs all at once: each file lookup below an unloaded one would wait for it anyway, and a
    // lookup of a mountpoint loads the chain above it (concurrent loads of one catalog are shared).
    for (const c of p.catalogs ?? []) o.client.lookup(c).catch(() => undefined);
    const budget = MAX_BYTES_FACTOR * p.bytes;
    let used = 0, next = 0;
    /** When the first recorded file resolved: the image's catalog was there (the log says how long that took). */
    let resolvedAt = 0;
    const one = async ([path, , wanted]: ProfileFile): Promise<void> => {
      const n = await o.client.lookup(path);
      if (resolvedAt === 0) resolvedAt = Date.now();
      if (n === undefined || n.entry.entry.type !== 'file') { skipped++; return; }
      const chunks = n.entry.chunks;
      // A chunked file: only the chunks the start read (a profile from another revision may name more).
      const picked = chunks === undefined ? undefined : (wanted ?? []).filter((i) => i < chunks.length).map((i) => chunks[i]);
      const size = picked === undefined ? n.attr.size : picked.reduce((a, c) => a + c.size, 0);
      if (used + size > budget) { skipped++; return; }
      used += size;
      // Already in the client cache (a remount, a second image sharing files): only read it into memory in the
      // background, whole (the start read it), so the start's reads do not each wait on the disk in turn; no
      // open and no close on the thread that answers FUSE. Within the byte budget like the rest of the replay.
      if (picked === undefined && (o.client.prefetch?.([n], size) ?? 0) > 0) {
        replayed++;
        replayedBytes += size;
        return;
      }
      const h = o.client.openNode === undefined ? await o.client.open(path) : await o.client.openNode(n);
      try {
        if (picked !== undefined) await Promise.all(picked.map((c) => o.client.read(h, c.offset, 1)));
      } finally {
        await o.client.release(h);
      }
      replayed++;
      replayedBytes += size;
    };
    const worker = async (): Promise<void> => {
      while (next < p.files.length && used < budget) {
        try {
          await one(p.files[next++]);
        } catch {
          skipped++; // the reader will meet the same error and report it
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    o.log?.(`start profile of ${image}: ${replayed} files (${replayedBytes} bytes) fetched ahead in ${Date.now() - t0} ms (catalogs ready after ${resolvedAt - t0} ms), ${skipped} skipped`);
  };

  /** Records from the first sign on; the first start of an image in this mount also replays its profile. */
  const start = (image: string, replayProfile: boolean): void => {
    const timer = setTimeout(() => { void save(image); }, windowMs);
    timer.unref();
    recording.set(image, { files: new Map(), catalogs: new Set(), timer });
    if (!replayProfile) return;
    void readFile(fileOf(image), 'utf8').then((t) => {
      const p = parseProfile(t);
      if (p !== undefined) void replay(image, p);
    }, () => undefined);
  };

  const touch = (image: string): void => {
    const now = Date.now();
    const before = lastActive.get(image);
    lastActive.set(image, now);
    if (before === undefined) start(image, true);
    else if (now - before >= quietMs && !recording.has(image)) start(image, false);
  };

  /** Strictly inside the image of the last lookup: the common case of both hooks below, a startsWith and a compare. */
  const inLastImage = (path: string): boolean => lastImage !== '' && path.startsWith(lastImage) && path.charCodeAt(lastImage.length) === 47;

  const note = (path: string, catalog: string | undefined): Recording['files'] | undefined => {
    const image = imageOf(path);
    touch(image);
    const r = recording.get(image);
    if (r === undefined || r.files.size >= MAX_PROFILE_FILES) return undefined;
    if (catalog !== undefined && catalog !== '') r.catalogs.add(catalog);
    return r.files;
  };

  return {
    onLookup(path) {
      if (inLastImage(path)) { touch(lastImage); return; }
      const image = lookupImage(path);
      if (image === undefined) return;
      lastImage = image;
      touch(image);
    },
    onOpen(path, size, catalog) {
      note(path, catalog)?.set(path, { size });
    },
    onCatalog(path, catalog) {
      // Every lookup comes here: the common case (the root catalog, or one already recorded) costs a few compares.
      if (catalog === '') return;
      const image = inLastImage(path) ? lastImage : lookupImage(path);
      if (image === undefined) return;
      const r = recording.get(image);
      if (r !== undefined && r.catalogs.size < MAX_PROFILE_CATALOGS) r.catalogs.add(catalog);
    },
    onChunk(path, index, chunkSize, catalog) {
      const files = note(path, catalog);
      if (files === undefined) return;
      let f = files.get(path);
      if (f === undefined) files.set(path, f = { size: 0, chunks: new Set() });
      if (f.chunks === undefined || f.chunks.has(index)) return;
      f.chunks.add(index);
      f.size += chunkSize;
    },
    async flush() {
      await Promise.all([...recording.keys()].map((i) => save(i)));
    },
    stats: () => ({ recorded, replayed, replayedBytes, skipped }),
  };
}
