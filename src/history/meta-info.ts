// The repository meta-info object `M` (cvmfs-format.md §6.3): a small JSON document, stored zlib-compressed
// and content-addressed by the publisher. Only (de)serialisation with a size bound lives here.
import { GridboxError } from '../errors.js';

export const MAX_META_INFO_BYTES = 1024 * 1024;

/** The keys of `cpt-servermeta.rst`; any other JSON value is kept as given. */
export interface MetaInfo {
  administrator?: string;
  email?: string;
  organisation?: string;
  description?: string;
  url?: string;
  'recommended-stratum0'?: string;
  'recommended-stratum1s'?: string[];
  custom?: Record<string, unknown>;
  [key: string]: unknown;
}

export function serializeMetaInfo(info: MetaInfo): Buffer {
  return Buffer.from(`${JSON.stringify(info, null, 2)}\n`, 'utf8');
}

export function parseMetaInfo(bytes: Uint8Array): MetaInfo {
  if (bytes.byteLength > MAX_META_INFO_BYTES) {
    throw new GridboxError('HISTORY_INVALID', `Cannot parse meta-info: ${bytes.byteLength} bytes, limit ${MAX_META_INFO_BYTES}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (cause) {
    throw new GridboxError('HISTORY_INVALID', `Cannot parse meta-info: ${(cause as Error).message}`, { cause });
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new GridboxError('HISTORY_INVALID', 'Cannot parse meta-info: not a JSON object');
  return v as MetaInfo;
}
