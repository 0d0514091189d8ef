// Streaming tar reader: a thin adapter over tar-stream 3 that yields one checked entry at a time in the
// fstree Entry model, with bounded headers, normalised names and unsafe paths reported (OCI_UNSAFE_PATH).
// It does not apply layers (oci/flatten.ts does) and never touches the file system.
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { GridboxError, q } from '../errors.js';
import type { Entry, EntryType } from '../fstree/entry.js';

export interface TarReadOptions {
  /** Largest PAX extended header (sum of its records) accepted; default 1 MiB. tar-stream refuses > 4 MiB itself. */
  maxPaxBytes?: number;
  /** Longest entry or link path in bytes; default 4096 (PATH_MAX). */
  maxPathBytes?: number;
  /** Most path components; default 256. */
  maxPathDepth?: number;
  /** Absolute names ("/etc/x"): "refuse" (default, reported as unsafe) or "strip" the leading "/". */
  absoluteNames?: 'refuse' | 'strip';
  /** Unsafe paths throw instead of being skipped with a warning. */
  strict?: boolean;
  /** Called for each skipped entry. */
  onWarning?: (w: TarWarning) => void;
  /** Layer name for messages. */
  label?: string;
}

export interface TarWarning {
  code: 'OCI_UNSAFE_PATH' | 'TAR_UNSUPPORTED';
  message: string;
  /** The raw name from the header. */
  path: string;
  /** For OCI_UNSAFE_PATH: which rule the entry broke. */
  rule?: UnsafeRule;
}

/** Rules an entry can break (named in OCI_UNSAFE_PATH messages and warnings). */
export type UnsafeRule = 'path-traversal' | 'absolute-path' | 'nul-byte' | 'hardlink-escape' | 'symlink-escape' | 'whiteout-escape' | 'symlink-loop' | 'device';

export interface TarItem {
  /** Normalised entry; hard links appear as type "file" with `linkTo` set and size 0. */
  entry: Entry;
  /** For hard links: the normalised path of the earlier entry this one links to. */
  linkTo?: string;
  /** File bytes (regular files only). Consume before asking for the next item, or it is drained. */
  content?: AsyncIterable<Buffer>;
}

export const DEFAULT_MAX_PAX_BYTES = 2 ** 20;
export const DEFAULT_MAX_PATH_BYTES = 4096;
export const DEFAULT_MAX_PATH_DEPTH = 256;

const TYPE_MAP: Record<string, EntryType | 'link'> = {
  file: 'file', 'contiguous-file': 'file', directory: 'dir', symlink: 'symlink', link: 'link',
  'character-device': 'chardev', 'block-device': 'blockdev', fifo: 'fifo',
};

/**
 * Reads a (decompressed) tar stream and yields its entries in archive order. A missing end-of-archive
 * marker is tolerated (umoci 0.4 writes such layers); a stream that ends inside a header or file
 * fails with TAR_INVALID; limits fail with TAR_LIMIT.
 */
export async function* readTar(input: AsyncIterable<Uint8Array> | Readable, options: TarReadOptions = {}): AsyncGenerator<TarItem> {
  const label = options.label ?? 'tar stream';
  const maxPax = options.maxPaxBytes ?? DEFAULT_MAX_PAX_BYTES;
  const maxPath = options.maxPathBytes ?? DEFAULT_MAX_PATH_BYTES;
  const maxDepth = options.maxPathDepth ?? DEFAULT_MAX_PATH_DEPTH;
  const extract = tarStream.extract({ allowUnknownFormat: true } as Parameters<typeof tarStream.extract>[0]);
  const source = input instanceof Readable ? input : Readable.from(input);
  let sourceError: unknown;
  let extractError: unknown;
  extract.on('error', (e) => { extractError ??= e; });
  source.on('error', (e) => { sourceError = e; extract.destroy(e); });
  source.pipe(extract as unknown as NodeJS.WritableStream);

  const unsafe = (raw: string, rule: UnsafeRule, why: string): void => {
    const message = `Refusing tar entry ${q(raw)} in ${label}: ${why} (rule ${rule})`;
    if (options.strict) throw new GridboxError('OCI_UNSAFE_PATH', message, { path: raw, rule });
    options.onWarning?.({ code: 'OCI_UNSAFE_PATH', message, path: raw, rule });
  };
  const checkName = (raw: string, what: string): string | null => {
    if (Buffer.byteLength(raw) > maxPath) {
      throw new GridboxError('TAR_LIMIT', `Cannot read ${label}: ${what} of ${Buffer.byteLength(raw)} bytes exceeds ${maxPath}`, { path: raw.slice(0, 200) });
    }
    if (raw.includes('\0')) { unsafe(raw, 'nul-byte', 'name contains a NUL byte'); return null; }
    if (raw.startsWith('/') && options.absoluteNames !== 'strip') { unsafe(raw, 'absolute-path', 'absolute path'); return null; }
    const norm = cleanRelPath(raw);
    if (norm === null) { unsafe(raw, 'path-traversal', 'path contains ".." that escapes the root'); return null; }
    if (norm.split('/').length > maxDepth) {
      throw new GridboxError('TAR_LIMIT', `Cannot read ${label}: ${what} ${q(raw)} is deeper than ${maxDepth} components`, { path: raw.slice(0, 200) });
    }
    return norm;
  };

  try {
    for await (const stream of extract as AsyncIterable<Readable & { header: tarStream.Header }>) {
      const h = stream.header;
      let content: AsyncGenerator<Buffer> | undefined;
      let finished = false;
      try {
        const pax = (h as { pax?: Record<string, string> }).pax;
        if (pax) {
          let paxBytes = 0;
          for (const [k, v] of Object.entries(pax)) paxBytes += Buffer.byteLength(k) + Buffer.byteLength(v) + 4;
          if (paxBytes > maxPax) {
            throw new GridboxError('TAR_LIMIT', `Cannot read ${label}: PAX header of ${paxBytes} bytes for ${q(h.name.slice(0, 100))} exceeds ${maxPax}`, { limit: maxPax });
          }
        }
        const kind = h.type ? TYPE_MAP[h.type] : undefined;
        if (kind === undefined) {
          options.onWarning?.({ code: 'TAR_UNSUPPORTED', message: `Skipping tar entry ${q(h.name)} in ${label}: unsupported type ${q(h.type)}`, path: h.name });
          continue;
        }
        const path = checkName(h.name, 'name');
        if (path === null) continue;
        let linkTo: string | undefined;
        if (kind === 'link') {
          const target = h.linkname ?? '';
          if (Buffer.byteLength(target) > maxPath) throw new GridboxError('TAR_LIMIT', `Cannot read ${label}: hard link target of ${q(h.name)} exceeds ${maxPath} bytes`);
          if (target.startsWith('/') && options.absoluteNames !== 'strip') { unsafe(h.name, 'absolute-path', `hard link to absolute path ${q(target)}`); continue; }
          const norm = cleanRelPath(target);
          if (norm === null || norm === '') { unsafe(h.name, 'hardlink-escape', `hard link to ${q(target)} outside the root`); continue; }
          linkTo = norm;
        }
        if (kind === 'symlink' && Buffer.byteLength(h.linkname ?? '') > maxPath) {
          throw new GridboxError('TAR_LIMIT', `Cannot read ${label}: symlink target of ${q(h.name)} exceeds ${maxPath} bytes`);
        }
        const type: EntryType = kind === 'link' ? 'file' : kind;
        const mtimeSec = h.mtime ? Math.floor(h.mtime.getTime() / 1000) : 0;
        const entry: Entry = {
          path, type, mode: (h.mode ?? 0) & 0o7777, uid: h.uid ?? 0, gid: h.gid ?? 0,
          size: type === 'file' && kind !== 'link' ? h.size ?? 0 : type === 'dir' ? 4096 : 0,
          mtime: mtimeSec, mtimeNs: 0,
        };
        if (pax?.mtime) {
          const m = /^(-?\d+)(?:\.(\d{1,9}))?/.exec(pax.mtime);
          if (m) { entry.mtime = Number(m[1]); entry.mtimeNs = m[2] ? Number(m[2].padEnd(9, '0')) : 0; }
        }
        if (type === 'symlink') { entry.target = h.linkname ?? ''; entry.size = Buffer.byteLength(entry.target); }
        if (type === 'chardev' || type === 'blockdev') entry.rdev = makeDev(h.devmajor ?? 0, h.devminor ?? 0);
        if (pax) {
          const xattrs: Record<string, Buffer> = {};
          for (const [k, v] of Object.entries(pax)) {
            // PAX carries xattr values as (UTF-8 decoded) strings; tar-stream gives no raw bytes.
            if (k.startsWith('SCHILY.xattr.')) xattrs[k.slice('SCHILY.xattr.'.length)] = Buffer.from(String(v), 'utf8');
          }
          if (Object.keys(xattrs).length > 0) entry.xattrs = xattrs;
        }
        if (type === 'file' && kind !== 'link') {
          content = (async function* (): AsyncGenerator<Buffer> {
            try {
              for await (const chunk of stream) yield chunk as Buffer;
            } catch (e) {
              // The entry stream only says "destroyed"; the archive-level error says why.
              throw translate(sourceError ?? extractError ?? e, label);
            }
            finished = true;
          })();
          yield { entry, content };
        } else {
          yield linkTo === undefined ? { entry } : { entry, linkTo };
        }
      } finally {
        // Drain what the consumer skipped so tar-stream moves on (never break out of `content`).
        if (content === undefined) for await (const _ of stream) { /* drain */ }
        else if (!finished) for await (const _ of content) { /* drain */ }
      }
    }
  } catch (e) {
    extract.destroy();
    source.destroy();
    throw translate(sourceError ?? (e instanceof GridboxError ? e : extractError ?? e), label);
  }
  if (sourceError) throw translate(sourceError, label);
}

/**
 * A tar name as a plain relative path: "/" and "." dropped, ".." applied lexically (as Docker's
 * filepath.Clean does, so "a/../b" is "b"); null when ".." climbs above the root.
 */
export function cleanRelPath(raw: string): string | null {
  const parts: string[] = [];
  for (const p of raw.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') { if (parts.pop() === undefined) return null; continue; }
    parts.push(p);
  }
  return parts.join('/');
}

/** Linux dev_t encoding (glibc makedev), exact for numbers below 2^32 combined. */
export function makeDev(major: number, minor: number): number {
  const low = (((major & 0xfff) << 8) | (minor & 0xff) | ((minor & 0xfff00) << 12)) >>> 0;
  return low + Math.floor(major / 0x1000) * 2 ** 44;
}

function translate(e: unknown, label: string): unknown {
  if (e instanceof GridboxError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  if (/Header exceeds max size/.test(msg)) return new GridboxError('TAR_LIMIT', `Cannot read ${label}: an extended header exceeds 4 MiB`, { cause: e });
  return new GridboxError('TAR_INVALID', `Cannot read ${label}: ${msg}`, { cause: e });
}
