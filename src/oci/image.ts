// OCI/Docker image documents: media types, manifest/index/config parsing (plain data, top-level
// mediaType optional as OCI 1.0 allows), platform selection from an index, and the runtime settings
// (.singularity.d inputs) taken from a config. No network and no layer contents here.
import { GridboxError, q } from '../errors.js';
import { type Digest, parseDigest } from './digest.js';

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
} as const;

/** Every manifest type we can read, for the Accept header (registries 404 a type not offered). */
export const MANIFEST_ACCEPT = [MEDIA_TYPES.ociManifest, MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerList];

const LAYER_TYPES = new Set([
  'application/vnd.oci.image.layer.v1.tar', 'application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar', 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar.gzip', 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.diff.tar', 'application/vnd.docker.image.rootfs.diff.tar.zstd',
]);

export const MAX_MANIFEST_BYTES = 4 * 2 ** 20;
export const MAX_CONFIG_BYTES = 8 * 2 ** 20;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
  features?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface ImageManifest {
  kind: 'manifest';
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  kind: 'index';
  mediaType: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  config?: {
    Env?: string[]; Entrypoint?: string[] | null; Cmd?: string[] | null; WorkingDir?: string;
    Labels?: Record<string, string> | null; User?: string;
  };
  rootfs?: { type: string; diff_ids: string[] };
}

/** What .singularity.d is generated from (Apptainer's inputs plus WorkingDir, which our runtime honours). */
export interface RuntimeSettings {
  env: string[];
  entrypoint: string[];
  cmd: string[];
  workingDir: string;
  labels: Record<string, string>;
  user: string;
}

function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> {
  let doc: unknown;
  try { doc = JSON.parse(Buffer.from(bytes).toString('utf8')); } catch (e) {
    throw new GridboxError('OCI_REGISTRY', `Cannot parse ${what}: not JSON`, { cause: e });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new GridboxError('OCI_REGISTRY', `Cannot parse ${what}: not a JSON object`);
  return doc as Record<string, unknown>;
}

function parseDescriptor(d: unknown, what: string): Descriptor {
  const o = d as Record<string, unknown>;
  if (typeof o !== 'object' || o === null || typeof o.digest !== 'string' || typeof o.size !== 'number' || typeof o.mediaType !== 'string') {
    throw new GridboxError('OCI_REGISTRY', `Cannot parse ${what}: descriptor lacks mediaType, digest or size`);
  }
  const out: Descriptor = { mediaType: o.mediaType, digest: parseDigest(o.digest), size: o.size };
  if (o.platform && typeof o.platform === 'object') out.platform = o.platform as Platform;
  if (o.annotations && typeof o.annotations === 'object') out.annotations = o.annotations as Record<string, string>;
  if (Array.isArray(o.urls)) out.urls = o.urls as string[];
  return out;
}

/**
 * Parses a manifest or index. `contentType` (from the response) is used when the document has no
 * mediaType field; without either, the presence of `manifests` vs `layers` decides.
 */
export function parseManifest(bytes: Uint8Array, contentType?: string, what = 'manifest'): ImageManifest | ImageIndex {
  const doc = parseJson(bytes, what);
  if (doc.schemaVersion !== 2) throw new GridboxError('OCI_UNSUPPORTED', `Cannot use ${what}: schemaVersion ${q(doc.schemaVersion)} (only 2 is supported)`);
  const ct = contentType?.split(';')[0].trim();
  const mediaType = typeof doc.mediaType === 'string' ? doc.mediaType : ct && ct !== 'application/json' ? ct : Array.isArray(doc.manifests) ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest;
  const annotations = doc.annotations as Record<string, string> | undefined;
  if (mediaType === MEDIA_TYPES.ociIndex || mediaType === MEDIA_TYPES.dockerList) {
    if (!Array.isArray(doc.manifests)) throw new GridboxError('OCI_REGISTRY', `Cannot parse ${what}: index without manifests`);
    return { kind: 'index', mediaType, manifests: doc.manifests.map((m) => parseDescriptor(m, what)), ...(annotations ? { annotations } : {}) };
  }
  if (mediaType === MEDIA_TYPES.ociManifest || mediaType === MEDIA_TYPES.dockerManifest) {
    if (!Array.isArray(doc.layers) || !doc.config) throw new GridboxError('OCI_REGISTRY', `Cannot parse ${what}: manifest without config or layers`);
    const layers = doc.layers.map((l) => parseDescriptor(l, what));
    return { kind: 'manifest', mediaType, config: parseDescriptor(doc.config, what), layers, ...(annotations ? { annotations } : {}) };
  }
  throw new GridboxError('OCI_UNSUPPORTED', `Cannot use ${what}: media type ${q(mediaType)} is not an image manifest or index`);
}

/** Layers we can apply; foreign/non-distributable ones are still tar and are applied if served. */
export function isLayerMediaType(mediaType: string): boolean {
  return LAYER_TYPES.has(mediaType);
}

export function parseConfig(bytes: Uint8Array): ImageConfig {
  return parseJson(bytes, 'image config') as ImageConfig;
}

/** The host's platform in OCI terms (linux/amd64, linux/arm64/v8, …). */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', ia32: '386', riscv64: 'riscv64' };
  const p: Platform = { os: 'linux', architecture: arch[process.arch] ?? process.arch };
  if (p.architecture === 'arm64') p.variant = 'v8';
  return p;
}

/** "linux/arm64/v8" → Platform. */
export function parsePlatform(text: string): Platform {
  const [os, architecture, variant] = text.split('/');
  if (!os || !architecture) throw new GridboxError('USAGE', `Cannot parse platform ${q(text)}: expected os/arch[/variant]`);
  return variant ? { os, architecture, variant } : { os, architecture };
}

function isAttestation(d: Descriptor): boolean {
  return d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest'
    || (d.platform?.os === 'unknown' && d.platform?.architecture === 'unknown');
}

/**
 * Picks the manifest for `want` from an index: os and architecture must match; a wanted variant must
 * match (arm64 entries without variant count as v8); attestation entries are never chosen. Among
 * several matches the first wins (registries list the preferred one first).
 */
export function selectPlatform(index: ImageIndex, want: Platform): Descriptor {
  const defaultVariant = (p: Platform | undefined): string | undefined => p?.variant ?? (p?.architecture === 'arm64' ? 'v8' : undefined);
  const candidates = index.manifests.filter((d) => !isAttestation(d) && d.platform
    && d.platform.os === want.os && d.platform.architecture === want.architecture
    && (want.variant === undefined || defaultVariant(d.platform) === defaultVariant(want)));
  if (candidates.length === 0) {
    const offered = index.manifests.filter((d) => !isAttestation(d)).map((d) => d.platform ? [d.platform.os, d.platform.architecture, d.platform.variant].filter(Boolean).join('/') : '?');
    throw new GridboxError('OCI_PLATFORM', `No image for platform ${q([want.os, want.architecture, want.variant].filter(Boolean).join('/'))} in index; offered: ${offered.join(', ') || 'none'}`);
  }
  return candidates[0];
}

/** Runtime settings from a config, with Docker's defaults (empty when absent). */
export function runtimeSettings(config: ImageConfig): RuntimeSettings {
  const c = config.config ?? {};
  return {
    env: Array.isArray(c.Env) ? [...c.Env] : [],
    entrypoint: Array.isArray(c.Entrypoint) ? [...c.Entrypoint] : [],
    cmd: Array.isArray(c.Cmd) ? [...c.Cmd] : [],
    workingDir: typeof c.WorkingDir === 'string' ? c.WorkingDir : '',
    labels: c.Labels && typeof c.Labels === 'object' ? { ...c.Labels } : {},
    user: typeof c.User === 'string' ? c.User : '',
  };
}
