// One error class for all of gridbox, with a stable string code and structured fields.
// The table below says, per code, whether a retry may help and what it becomes at each edge
// (errno in FUSE, HTTP status in the server, exit code in the CLI). Translate only at those edges.

export interface ErrorEdge {
  /** A retry (another host, proxy, or attempt) may succeed. */
  retryable: boolean;
  /** errno name the FUSE layer answers with. */
  errno: 'EIO' | 'ENOENT' | 'EACCES' | 'EINVAL' | 'ENOTDIR' | 'EISDIR' | 'ENOSPC' | 'EBUSY' | 'ENOSYS' | 'ELOOP';
  /** HTTP status the server answers with. */
  http: number;
  /** CLI exit code. */
  exit: number;
}

const E = (retryable: boolean, errno: ErrorEdge['errno'], http: number, exit: number): ErrorEdge => ({ retryable, errno, http, exit });

/** Every code used in gridbox. Adding a code means adding a row here. */
export const ERROR_TABLE = {
  // usage and configuration
  USAGE: E(false, 'EINVAL', 400, 2),
  CONFIG_INVALID: E(false, 'EINVAL', 500, 2),
  NOT_FOUND: E(false, 'ENOENT', 404, 1),
  NOT_SUPPORTED: E(false, 'ENOSYS', 501, 1),
  INTERNAL: E(false, 'EIO', 500, 1),
  /** Too many symlinks resolving a repository path (a loop). */
  ELOOP: E(false, 'ELOOP', 508, 1),
  // plumbing: locks and databases any layer uses
  LOCK_HELD: E(false, 'EBUSY', 409, 1),
  SQLITE_INVALID: E(false, 'EIO', 500, 1),
  // hashing and object store
  HASH_BAD_ID: E(false, 'EINVAL', 400, 1),
  STORE_HASH_MISMATCH: E(true, 'EIO', 502, 1),
  STORE_SIZE_MISMATCH: E(true, 'EIO', 502, 1),
  STORE_TRUNCATED: E(true, 'EIO', 502, 1),
  STORE_CORRUPT: E(true, 'EIO', 502, 1),
  STORE_MISSING: E(false, 'EIO', 404, 1),
  STORE_IO: E(false, 'EIO', 500, 1),
  COMPRESSION_BAD: E(true, 'EIO', 502, 1),
  // catalogs
  CATALOG_INVALID: E(false, 'EIO', 500, 1),
  CATALOG_SCHEMA: E(false, 'EIO', 500, 1),
  // manifest, whitelist, signatures
  MANIFEST_INVALID: E(true, 'EIO', 502, 1),
  MANIFEST_TOO_LARGE: E(true, 'EIO', 502, 1),
  MANIFEST_BAD_SIGNATURE: E(true, 'EIO', 502, 1),
  MANIFEST_NAME_MISMATCH: E(false, 'EIO', 502, 1),
  MANIFEST_ROOT_MISMATCH: E(false, 'EIO', 502, 1),
  MANIFEST_OUTDATED: E(true, 'EIO', 502, 1),
  WHITELIST_INVALID: E(true, 'EIO', 502, 1),
  WHITELIST_EXPIRED: E(true, 'EIO', 502, 1),
  WHITELIST_NAME_MISMATCH: E(false, 'EIO', 502, 1),
  WHITELIST_BAD_SIGNATURE: E(true, 'EIO', 502, 1),
  WHITELIST_CERT_NOT_LISTED: E(false, 'EIO', 502, 1),
  CERT_BLACKLISTED: E(false, 'EIO', 502, 1),
  SIGNING_KEY: E(false, 'EACCES', 500, 1),
  // download
  DOWNLOAD_HOST: E(true, 'EIO', 502, 1),
  DOWNLOAD_PROXY_CONNECT: E(true, 'EIO', 502, 1),
  DOWNLOAD_PROXY: E(true, 'EIO', 502, 1),
  DOWNLOAD_HTTP_STATUS: E(true, 'EIO', 502, 1),
  DOWNLOAD_TIMEOUT: E(true, 'EIO', 504, 1),
  DOWNLOAD_TOO_LARGE: E(true, 'EIO', 502, 1),
  DOWNLOAD_ALL_FAILED: E(false, 'EIO', 502, 1),
  // cache
  CACHE_IO: E(false, 'EIO', 500, 1),
  CACHE_FULL: E(false, 'ENOSPC', 507, 1),
  // publish
  PUBLISH_LOCKED: E(false, 'EBUSY', 409, 1),
  PUBLISH_SOURCE: E(false, 'EIO', 500, 1),
  PUBLISH_NO_REPO: E(false, 'ENOENT', 404, 1),
  PUBLISH_FAILED: E(false, 'EIO', 500, 1),
  HISTORY_INVALID: E(false, 'EIO', 500, 1),
  TAG_UNKNOWN: E(false, 'ENOENT', 404, 1),
  CHECK_FAILED: E(false, 'EIO', 500, 1),
  // server
  SERVER_FORBIDDEN_PATH: E(false, 'EACCES', 403, 1),
  REPLICA_NOT_ALLOWED: E(false, 'EACCES', 403, 1),
  // tar and OCI
  TAR_INVALID: E(false, 'EIO', 422, 1),
  TAR_LIMIT: E(false, 'EIO', 422, 1),
  OCI_UNSAFE_PATH: E(false, 'EACCES', 422, 1),
  OCI_BAD_REFERENCE: E(false, 'EINVAL', 400, 2),
  OCI_REGISTRY: E(true, 'EIO', 502, 1),
  OCI_AUTH: E(false, 'EACCES', 401, 1),
  OCI_NOT_FOUND: E(false, 'ENOENT', 404, 1),
  OCI_DIGEST_MISMATCH: E(true, 'EIO', 502, 1),
  OCI_RATE_LIMITED: E(true, 'EIO', 429, 1),
  OCI_UNSUPPORTED: E(false, 'ENOSYS', 415, 1),
  OCI_PLATFORM: E(false, 'ENOENT', 404, 1),
  SYNC_LIST_INVALID: E(false, 'EINVAL', 400, 2),
  // FUSE and mount
  FUSE_UNAVAILABLE: E(false, 'EIO', 500, 1),
  FUSE_PROTOCOL: E(false, 'EIO', 500, 1),
  MOUNT_FAILED: E(false, 'EIO', 500, 1),
  MOUNT_POINT_BUSY: E(false, 'EBUSY', 500, 1),
  // launcher (Apptainer exits 255 for runtime errors)
  LAUNCH_NO_USERNS: E(false, 'EIO', 500, 255),
  LAUNCH_NO_IMAGE: E(false, 'ENOENT', 404, 255),
  LAUNCH_SIF_UNSUPPORTED: E(false, 'ENOSYS', 501, 255),
  LAUNCH_BIND_SOURCE: E(false, 'ENOENT', 404, 255),
  LAUNCH_BAD_OPTION: E(false, 'EINVAL', 400, 255),
  LAUNCH_NO_COMMAND: E(false, 'ENOENT', 404, 255),
  LAUNCH_NO_BWRAP: E(false, 'ENOENT', 500, 255),
  LAUNCH_FAILED: E(false, 'EIO', 500, 255),
  // pilot
  PILOT_NEGOTIATION: E(false, 'EINVAL', 400, 1),
  PILOT_NO_IMAGE: E(false, 'ENOENT', 404, 1),
} as const satisfies Record<string, ErrorEdge>;

export type ErrorCode = keyof typeof ERROR_TABLE;

export interface ErrorFields {
  cause?: unknown;
  objectId?: string;
  url?: string;
  path?: string;
  [key: string]: unknown;
}

/** The one error type. `code` is stable; `message` names the failed action and quotes values. */
export class GridboxError extends Error {
  readonly code: ErrorCode;
  readonly fields: Readonly<ErrorFields>;

  constructor(code: ErrorCode, message: string, fields: ErrorFields = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = 'GridboxError';
    this.code = code;
    const { cause: _cause, ...rest } = fields;
    this.fields = rest;
  }

  get retryable(): boolean {
    return ERROR_TABLE[this.code].retryable;
  }
}

export function isGridboxError(e: unknown, code?: ErrorCode): e is GridboxError {
  return e instanceof GridboxError && (code === undefined || e.code === code);
}

/** The edge translation for any thrown value; unknown errors are INTERNAL. */
export function edgeOf(e: unknown): ErrorEdge {
  return e instanceof GridboxError ? ERROR_TABLE[e.code] : ERROR_TABLE.INTERNAL;
}

/** One line for a person: the message and, where it adds something, the innermost cause. */
export function describeError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  let line = e instanceof GridboxError ? `${e.message} [${e.code}]` : e.message;
  let cause: unknown = e.cause;
  for (let depth = 0; cause instanceof Error && depth < 5; depth++) {
    if (!line.includes(cause.message)) line += `: ${cause.message}`;
    cause = cause.cause;
  }
  return line;
}

/** Quote a value for a message: long hashes are shortened, strings quoted. */
export function q(v: unknown): string {
  const s = String(v);
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 77)}...` : s);
}
