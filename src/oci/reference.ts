// Docker/OCI image references: "[scheme://][registry[:port]/]path[:tag][@digest]" with Docker's rules
// (a first part with "." or ":" or "localhost" is a registry; Docker Hub is "docker.io" and one-part
// names get "library/"). Pure parsing; which URL a registry answers on is registry-client.ts's concern.
import { GridboxError, q } from '../errors.js';
import { type Digest, parseDigest } from './digest.js';

export interface ImageReference {
  /** Registry host[:port], lowercase; Docker Hub is always "docker.io". */
  registry: string;
  /** Repository path below the registry, e.g. "library/debian", "lscsoft/lalsuite/lalsuite-v6.53". */
  repository: string;
  /** Tag, when given (a digest-only reference has none); may contain "*" when globs were allowed. */
  tag?: string;
  digest?: Digest;
  /** Scheme given in the text (DUCC wish lists use URLs); undefined when none was written. */
  scheme?: 'http' | 'https';
}

export const DOCKER_HUB = 'docker.io';
const HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const TAG_GLOB = /^[\w*][\w.*-]{0,127}$/;
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::\d{1,5})?$|^\[[0-9a-fA-F:.]+\](?::\d{1,5})?$/;

export interface ParseReferenceOptions {
  /** Accept "*" in tags (image lists with tag globs). */
  allowTagGlob?: boolean;
  /** Tag when neither tag nor digest is given (default "latest"; null keeps it undefined). */
  defaultTag?: string | null;
}

export function parseReference(text: string, options: ParseReferenceOptions = {}): ImageReference {
  const bad = (why: string): never => { throw new GridboxError('OCI_BAD_REFERENCE', `Cannot parse image reference ${q(text)}: ${why}`); };
  let rest = text.trim();
  let scheme: ImageReference['scheme'];
  const sm = /^(https?):\/\//.exec(rest);
  if (sm) { scheme = sm[1] as 'http' | 'https'; rest = rest.slice(sm[0].length); }
  if (rest === '') bad('empty');
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    try { digest = parseDigest(rest.slice(at + 1)); } catch { bad(`bad digest ${q(rest.slice(at + 1))}`); }
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!(options.allowTagGlob ? TAG_GLOB : TAG).test(tag)) bad(`bad tag ${q(tag)}`);
  }
  const parts = rest.split('/');
  let registry = DOCKER_HUB;
  if (parts.length > 1 && (parts[0].includes('.') || parts[0].includes(':') || parts[0] === 'localhost' || parts[0].startsWith('['))) {
    registry = parts.shift()!.toLowerCase();
    if (!HOST.test(registry)) bad(`bad registry host ${q(registry)}`);
    if (HUB_ALIASES.has(registry)) registry = DOCKER_HUB;
  }
  if (parts.length === 0 || parts.some((p) => !COMPONENT.test(p))) bad('repository must be lowercase components [a-z0-9] joined by ".", "_", "__" or "-"');
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library');
  const repository = parts.join('/');
  if (repository.length > 255) bad('repository longer than 255 characters');
  if (tag === undefined && digest === undefined) {
    const d = options.defaultTag === undefined ? 'latest' : options.defaultTag;
    if (d !== null) tag = d;
  }
  const ref: ImageReference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  if (scheme !== undefined) ref.scheme = scheme;
  return ref;
}

/** Fully qualified text: "docker.io/library/debian:stable", "host:5000/a/b@sha256:…". */
export function formatReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** The tag or digest a manifest request names (digest wins: it pins the content). */
export function manifestReferenceOf(ref: ImageReference): string {
  if (ref.digest) return ref.digest;
  if (ref.tag !== undefined) return ref.tag;
  throw new GridboxError('OCI_BAD_REFERENCE', `Image reference ${q(formatReference(ref))} has neither tag nor digest`);
}
