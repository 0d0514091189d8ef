// Image lists for `gridbox sync`: OSG's docker_images.txt (one name a line, `#` comments, `*` tag globs)
// and DUCC's wish-list YAML (version 1, `input` URLs, `output_format` naming template), plus glob
// expansion against a registry's tag list. Parsing and naming only; no publishing here.
import { parse as parseYaml } from 'yaml';
import { GridboxError, q } from '../errors.js';
import { DOCKER_HUB, type ImageReference, parseReference } from '../oci/reference.js';

export interface ListEntry {
  /** The entry as written (for messages and to remember which entry produced which names). */
  text: string;
  /** 1-based line in the list file (OSG) or index in `input` (DUCC). */
  line: number;
  /** Parsed reference; `tag` may hold `*` globs. */
  reference: ImageReference;
  /** Public-name template (DUCC `output_format`), rendered by renderOutputName(). */
  outputFormat?: string;
}

export interface ImageList {
  format: 'osg' | 'ducc';
  entries: ListEntry[];
  /** Lines that could not be parsed; the rest of the list still syncs. */
  errors: { line: number; text: string; message: string }[];
}

/** Picks the format by content: a YAML mapping with `input` is a DUCC wish list, anything else OSG's. */
export function parseImageList(text: string): ImageList {
  const trimmed = text.replace(/^\uFEFF/, '');
  if (/^\s*(version|input|output_format|user|cvmfs_repo)\s*:/m.test(trimmed)) return parseDuccWishlist(trimmed);
  return parseOsgList(trimmed);
}

/**
 * OSG rules: one image a line, blank and `#` lines ignored. Names with three or more `/` parts name
 * their registry first; one part means Docker Hub `library/`; tag defaults to `latest`. Unlike OSG,
 * digest references (`name@sha256:…`, `name:tag@sha256:…`) are accepted.
 */
export function parseOsgList(text: string): ImageList {
  const list: ImageList = { format: 'osg', entries: [], errors: [] };
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    try {
      const name = line.split('@')[0];
      const parts = name.split('/');
      // OSG: the first of three or more parts is always the registry, even without a dot.
      const reference = parts.length >= 3 && !/[.:]|^localhost$/.test(parts[0])
        ? withRegistry(parts[0], line.slice(parts[0].length + 1))
        : parseReference(line, { allowTagGlob: true });
      list.entries.push({ text: line, line: i + 1, reference });
    } catch (e) {
      list.errors.push({ line: i + 1, text: line, message: (e as Error).message });
    }
  });
  return list;
}

/** DUCC wish list, version 1: `input` is a list of `[scheme://]registry/repository[:tag][@digest]`. */
export function parseDuccWishlist(text: string): ImageList {
  let doc: unknown;
  try { doc = parseYaml(text); } catch (e) {
    throw new GridboxError('SYNC_LIST_INVALID', 'Cannot parse the wish list: not valid YAML', { cause: e });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new GridboxError('SYNC_LIST_INVALID', 'Cannot parse the wish list: expected a YAML mapping');
  const o = doc as Record<string, unknown>;
  if (o.version !== 1) throw new GridboxError('SYNC_LIST_INVALID', `Cannot use the wish list: version ${q(o.version)} (only 1 is supported)`);
  if (!Array.isArray(o.input)) throw new GridboxError('SYNC_LIST_INVALID', 'Cannot use the wish list: `input` must be a list of image URLs');
  if (o.output_format !== undefined && typeof o.output_format !== 'string') throw new GridboxError('SYNC_LIST_INVALID', 'Cannot use the wish list: `output_format` must be a string');
  const outputFormat = typeof o.output_format === 'string' && o.output_format.trim() !== '' ? o.output_format.trim() : undefined;
  // A misspelt variable is a list error, said once here rather than once per image at expansion.
  for (const [all, name] of outputFormat?.matchAll(/\$\((\w+)\)/g) ?? []) {
    if (!OUTPUT_VARIABLES.includes(name)) throw new GridboxError('SYNC_LIST_INVALID', `Cannot use the wish list: unknown variable ${q(all)} in output_format ${q(outputFormat)} (known: ${OUTPUT_VARIABLES.map((v) => `$(${v})`).join(' ')})`);
  }
  const list: ImageList = { format: 'ducc', entries: [], errors: [] };
  o.input.forEach((item, i) => {
    const text = String(item).trim();
    try {
      if (typeof item !== 'string') throw new GridboxError('SYNC_LIST_INVALID', 'not a string');
      const m = /^(?:(https?):\/\/)?([^/]+)\/(.+)$/.exec(text);
      if (!m) throw new GridboxError('SYNC_LIST_INVALID', 'expected [scheme://]registry/repository[:tag][@digest]');
      const reference = withRegistry(m[2], m[3]);
      if (m[1]) reference.scheme = m[1] as 'http' | 'https';
      list.entries.push({ text, line: i + 1, reference, ...(outputFormat ? { outputFormat } : {}) });
    } catch (e) {
      list.errors.push({ line: i + 1, text, message: `Cannot parse wish-list input ${q(text)}: ${(e as Error).message}` });
    }
  });
  return list;
}

const HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

/** A reference whose registry is given explicitly (the remainder is parsed with Docker's rules). */
function withRegistry(host: string, remainder: string): ImageReference {
  // A placeholder host with a dot makes parseReference treat every remaining part as repository.
  const r = parseReference(`registry.invalid/${remainder}`, { allowTagGlob: true });
  const h = host.toLowerCase();
  if (!/^[a-z0-9.-]+(?::\d{1,5})?$|^\[[0-9a-f:.]+\](?::\d{1,5})?$/.test(h)) throw new GridboxError('OCI_BAD_REFERENCE', `Cannot parse image reference: bad registry host ${q(host)}`);
  r.registry = HUB_ALIASES.has(h) ? DOCKER_HUB : h;
  if (r.registry === DOCKER_HUB && !r.repository.includes('/')) r.repository = `library/${r.repository}`;
  return r;
}

/** Whole-tag match of a `*` glob; every other character is literal (DUCC leaves regex characters live). */
export function tagMatches(glob: string, tag: string): boolean {
  const re = new RegExp(`^${glob.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(tag);
}

export function isGlob(ref: ImageReference): boolean {
  return ref.tag !== undefined && ref.tag.includes('*');
}

/** DUCC's output_format variables. */
const OUTPUT_VARIABLES = ['scheme', 'registry', 'repository', 'tag', 'digest', 'reference', 'image'];

/** DUCC's `$(reference)`: ":tag", "@digest" or ":tag@digest". */
function referencePart(ref: ImageReference): string {
  return `${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/**
 * Renders DUCC's `output_format` as the image's public name inside the repository. Variables:
 * $(scheme) $(registry) $(repository) $(tag) $(digest) $(reference) $(image). A leading
 * "scheme://" is dropped (DUCC templates name registry URLs); the result must stay inside the repository.
 */
export function renderOutputName(format: string, ref: ImageReference): string {
  const vars: Record<string, string> = {
    scheme: ref.scheme ?? 'https', registry: ref.registry, repository: ref.repository, tag: ref.tag ?? '',
    digest: ref.digest ?? '', reference: referencePart(ref), image: `${ref.repository}${referencePart(ref)}`,
  };
  const out = format.replace(/\$\((\w+)\)/g, (all, name: string) => {
    if (!(name in vars)) throw new GridboxError('SYNC_LIST_INVALID', `Unknown variable ${q(all)} in output_format ${q(format)}`);
    return vars[name];
  }).replace(/^[a-z]+:\/\//, '');
  return checkPublicName(out);
}

/** Default public name: `<ns>/<image>:<tag>` on Docker Hub (OSG naming), `<registry>/<ns>/<image>:<tag>` elsewhere. */
export function defaultPublicName(ref: ImageReference): string {
  const base = ref.registry === DOCKER_HUB ? ref.repository : `${ref.registry}/${ref.repository}`;
  return checkPublicName(`${base}${ref.tag !== undefined ? `:${ref.tag}` : `@${ref.digest ?? ''}`}`);
}

export function publicNameOf(entry: Pick<ListEntry, 'outputFormat'>, ref: ImageReference): string {
  return entry.outputFormat ? renderOutputName(entry.outputFormat, ref) : defaultPublicName(ref);
}

/** A public name is a relative path with no "." / ".." parts, not under a dot directory (`.images`). */
function checkPublicName(name: string): string {
  const parts = name.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..') || parts[0].startsWith('.') || name.includes('\0')) {
    throw new GridboxError('SYNC_LIST_INVALID', `Refusing public name ${q(name)}: it must be a relative path inside the repository, not under a dot directory`);
  }
  return name;
}

/** One concrete image of a cycle: a list entry with its glob resolved. */
export interface WantedImage {
  entry: ListEntry;
  reference: ImageReference;
  name: string;
}

export interface ExpandResult {
  images: WantedImage[];
  /** Entries whose tag list could not be read: names they produced before are kept, not removed. */
  failed: { entry: ListEntry; error: unknown }[];
}

/**
 * Resolves globs with `listTags` (matching tags in sorted order; a glob matching no tag is a failure of
 * its entry); concrete entries pass through. Duplicate names keep the first entry.
 */
export async function expandImageList(list: ImageList, listTags: (registry: string, repository: string) => Promise<string[]>): Promise<ExpandResult> {
  const out: ExpandResult = { images: [], failed: [] };
  const seen = new Set<string>();
  const add = (entry: ListEntry, reference: ImageReference): void => {
    try {
      const name = publicNameOf(entry, reference);
      if (seen.has(name)) return;
      seen.add(name);
      out.images.push({ entry, reference, name });
    } catch (error) {
      out.failed.push({ entry, error });
    }
  };
  for (const entry of list.entries) {
    if (!isGlob(entry.reference)) { add(entry, entry.reference); continue; }
    try {
      const tags = await listTags(entry.reference.registry, entry.reference.repository);
      // Registries may list tags unsorted; a stable order keeps names, reports and publishes reproducible.
      const matching = [...new Set(tags.filter((t) => tagMatches(entry.reference.tag!, t)))].sort();
      // A glob matching nothing is most often a typo or a push that never happened: say so, and keep
      // what the entry published before (an empty list can also be a registry hiccup).
      if (matching.length === 0) {
        throw new GridboxError('OCI_NOT_FOUND', `No tag of ${q(`${entry.reference.registry}/${entry.reference.repository}`)} matches ${q(entry.reference.tag)} (${tags.length} tags listed)`);
      }
      for (const tag of matching) add(entry, { ...entry.reference, tag });
    } catch (error) {
      out.failed.push({ entry, error });
    }
  }
  return out;
}
