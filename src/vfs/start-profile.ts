// Prefetch for start-ups: the whole files a start opens under one image (`/.images/xx/<digest>`, else the
// repository's top directory) within the first seconds are recorded once per image; on a later start of
// that image the recorded files are opened in parallel through the client (so each object is downloaded,
// verified and cached exactly like a reader's), before the start asks for them one by one. A profile that
// names missing files is harmless (they are skipped); never more than MAX_BYTES_FACTOR × the recorded bytes.
import { mkdir, readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Client } from '../client/index.js';
import { writeFileAtomic } from '../plumbing/atomic-write.js';

/** How long after the first open of an image its opens count as "the start". */
export const START_WINDOW_MS = 20_000;
/** Replay stops once the files it opened hold this many times the bytes the profile recorded. */
export const MAX_BYTES_FACTOR = 2;
/** Files opened at once by a replay. */
export const REPLAY_CONCURRENCY = 16;
const MAX_PROFILE_FILES = 20_000;

interface Profile { fqrn: string; image: string; bytes: number; files: Array<[path: string, size: number]> }

export interface StartProfiler {
  /** A whole file of `size` bytes at `path` was opened. */
  onOpen(path: string, size: number): void;
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

export function createStartProfiler(o: { dir: string; client: Client; log?: (line: string) => void; windowMs?: number }): StartProfiler {
  const windowMs = o.windowMs ?? START_WINDOW_MS;
  const seen = new Set<string>();
  const recording = new Map<string, { files: Map<string, number>; timer: NodeJS.Timeout }>();
  let recorded = 0, replayed = 0, replayedBytes = 0, skipped = 0;
  const fileOf = (image: string): string => join(o.dir, `${createHash('sha256').update(`${o.client.fqrn}\0${image}`).digest('hex').slice(0, 24)}.json`);

  const save = async (image: string): Promise<void> => {
    const r = recording.get(image);
    if (r === undefined) return;
    recording.delete(image);
    clearTimeout(r.timer);
    if (r.files.size === 0) return;
    const files = [...r.files];
    const p: Profile = { fqrn: o.client.fqrn, image, bytes: files.reduce((a, [, s]) => a + s, 0), files };
    try {
      await mkdir(o.dir, { recursive: true });
      const f = fileOf(image);
      await writeFileAtomic(f, JSON.stringify(p));
      recorded++;
    } catch (e) {
      o.log?.(`cannot write the start profile of ${image}: ${(e as Error).message}`);
    }
  };

  const replay = async (image: string, p: Profile): Promise<void> => {
    const budget = MAX_BYTES_FACTOR * p.bytes;
    let used = 0, next = 0;
    const worker = async (): Promise<void> => {
      while (next < p.files.length && used <= budget) {
        const [path] = p.files[next++];
        try {
          const n = await o.client.lookup(path);
          if (n === undefined || n.entry.entry.type !== 'file') { skipped++; continue; }
          used += n.attr.size;
          if (used > budget) break;
          const h = o.client.openNode === undefined ? await o.client.open(path) : await o.client.openNode(n);
          await o.client.release(h);
          replayed++;
          replayedBytes += n.attr.size;
        } catch {
          skipped++; // the reader will meet the same error and report it
        }
      }
    };
    await Promise.all(Array.from({ length: REPLAY_CONCURRENCY }, worker));
    o.log?.(`start profile of ${image}: ${replayed} files (${replayedBytes} bytes) fetched ahead, ${skipped} skipped`);
  };

  const start = (image: string): void => {
    // Record from the first open on; a profile found on disk ends the recording and is replayed instead.
    const timer = setTimeout(() => { void save(image); }, windowMs);
    timer.unref();
    recording.set(image, { files: new Map(), timer });
    void readFile(fileOf(image), 'utf8').then((t) => {
      let p: Profile;
      try { p = JSON.parse(t) as Profile; } catch { return; } // a damaged profile is rewritten by this start
      if (!Array.isArray(p.files) || typeof p.bytes !== 'number') return;
      clearTimeout(timer);
      recording.delete(image);
      void replay(image, p);
    }, () => undefined);
  };

  return {
    onOpen(path, size) {
      const image = imageOf(path);
      if (!seen.has(image)) {
        seen.add(image);
        start(image);
      }
      const r = recording.get(image);
      if (r !== undefined && r.files.size < MAX_PROFILE_FILES) r.files.set(path, size);
    },
    async flush() {
      await Promise.all([...recording.keys()].map((i) => save(i)));
    },
    stats: () => ({ recorded, replayed, replayedBytes, skipped }),
  };
}
