// One container start as the accounting keeps it, and how an image path names its image: the public name
// (`<fqrn>/<path in the repository>`, e.g. `sync.example.org/library/debian:bookworm`) and the config digest
// the published tree is stored under (`.images/<xx>/<rest>`, src/sync/layout.ts). Pure; no I/O.

export interface StartRecord {
  /** Node that ran it (hostname); with `id`, unique across an aggregated fleet. */
  node: string;
  /** Local row id on that node (0 before it is stored). */
  id: number;
  /** Start time, ms since the epoch. */
  startedAt: number;
  /** Who started it: the pilot's job wrapper or a direct runtime call. */
  via: 'pilot' | 'runtime';
  imageName: string;
  /** `sha256:<hex>` when the image is a synced tree, else null. */
  imageDigest: string | null;
  /** Wall time from the start until the sandbox's process was created (bwrap reports it), ms. */
  firstInstructionMs: number | null;
  /** Wall time from the start until exit, ms. */
  exitMs: number;
  exitStatus: number;
  /** Bytes the mount downloaded and objects it found in its cache while this start ran (the whole mount's counters). */
  bytesFetched: number | null;
  cacheHits: number | null;
  cacheMisses: number | null;
}

export const MAX_IMAGE_NAME_CHARS = 512;
export const MAX_NODE_CHARS = 255;

export interface MountEntry { mountpoint: string; fstype: string; source: string }

/** /proc/self/mountinfo → mount point, type and source (octal escapes such as \040 decoded). */
export function parseMountInfo(text: string): MountEntry[] {
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (f.length < 10 || dash < 6) continue;
    out.push({ mountpoint: unescape(f[4]), fstype: f[dash + 1], source: unescape(f[dash + 2]) });
  }
  return out;
}

/** The gridbox FUSE mount holding `path` (longest mount point prefix of type fuse.gridbox), if any. */
export function gridboxMountOf(path: string, mounts: MountEntry[]): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) {
    if (m.fstype !== 'fuse.gridbox') continue;
    const inside = path === m.mountpoint || path.startsWith(m.mountpoint.endsWith('/') ? m.mountpoint : `${m.mountpoint}/`);
    if (inside && (best === undefined || m.mountpoint.length > best.mountpoint.length)) best = m;
  }
  return best;
}

/**
 * Public name and digest of an image. `given` is the path the caller named (a tag symlink, or the pinned
 * tree), `physical` its real path; `human` a name the pilot already knows (`/cvmfs/<fqrn>/...`).
 */
export function imageIdentity(o: { given: string; physical: string; mount?: MountEntry; human?: string }): { name: string; digest: string | null } {
  const m = /(?:^|\/)\.images\/([0-9a-f]{2})\/([0-9a-f]{62}|[0-9a-f]{126})(?:\/|$)/.exec(o.physical);
  const digest = m ? `${m[2].length === 62 ? 'sha256' : 'sha512'}:${m[1]}${m[2]}` : null;
  const inRepo = (p: string): string | undefined => {
    if (o.mount === undefined) return undefined;
    const mp = o.mount.mountpoint.replace(/\/+$/, '');
    if (p !== mp && !p.startsWith(`${mp}/`)) return undefined;
    return `${o.mount.source}${p.slice(mp.length) || '/'}`;
  };
  let name: string;
  if (o.human && o.human.startsWith('/cvmfs/')) name = o.human.slice('/cvmfs/'.length);
  else if (o.human) name = o.human;
  else name = inRepo(o.given) ?? o.given;
  name = name.replace(/\/+$/, '');
  return { name: name.length > MAX_IMAGE_NAME_CHARS ? name.slice(0, MAX_IMAGE_NAME_CHARS) : name, digest };
}

/** Checks a record from the network (another node's post) field by field; returns why it is bad, or undefined. */
export function invalidRecord(r: unknown): string | undefined {
  if (typeof r !== 'object' || r === null) return 'not an object';
  const x = r as Record<string, unknown>;
  const isNum = (k: string, nullable = false): boolean => (nullable && x[k] === null) || (typeof x[k] === 'number' && Number.isFinite(x[k] as number) && (x[k] as number) >= 0);
  if (typeof x.node !== 'string' || x.node === '' || x.node.length > MAX_NODE_CHARS) return 'node must be a non-empty string';
  if (!Number.isInteger(x.id) || (x.id as number) < 1) return 'id must be a positive integer';
  if (!isNum('startedAt')) return 'startedAt must be a time in ms';
  if (x.via !== 'pilot' && x.via !== 'runtime') return 'via must be "pilot" or "runtime"';
  if (typeof x.imageName !== 'string' || x.imageName.length > MAX_IMAGE_NAME_CHARS) return 'imageName must be a string';
  if (x.imageDigest !== null && (typeof x.imageDigest !== 'string' || !/^sha(256|512):[0-9a-f]+$/.test(x.imageDigest))) return 'imageDigest must be null or sha256:<hex>';
  for (const k of ['firstInstructionMs', 'bytesFetched', 'cacheHits', 'cacheMisses']) if (!isNum(k, true)) return `${k} must be null or a number >= 0`;
  if (!isNum('exitMs')) return 'exitMs must be a number >= 0';
  if (!Number.isInteger(x.exitStatus) || (x.exitStatus as number) < 0 || (x.exitStatus as number) > 511) return 'exitStatus must be an integer 0..511';
  return undefined;
}
