// OCI content digests ("sha256:<hex>", "sha512:<hex>"): a branded string type kept apart from CVMFS's
// ObjectId (hash/object-id.ts), plus a pass-through verifier that checks size and digest as bytes stream.
// Not for CVMFS object hashing.
import { createHash } from 'node:crypto';
import { GridboxError, q } from '../errors.js';

export type DigestAlgorithm = 'sha256' | 'sha512';

/** A validated OCI digest string; the brand keeps it from mixing with other strings or ObjectIds. */
export type Digest = string & { readonly __ociDigest: true };

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

export function parseDigest(text: string): Digest {
  const m = /^(sha256|sha512):([0-9a-f]+)$/.exec(text);
  if (!m || m[2].length !== HEX_LENGTH[m[1] as DigestAlgorithm]) {
    throw new GridboxError('OCI_BAD_REFERENCE', `Not a supported OCI digest: ${q(text)} (expected sha256:<64 hex> or sha512:<128 hex>)`);
  }
  return text as Digest;
}

export function isDigest(text: string): text is Digest {
  try { parseDigest(text); return true; } catch { return false; }
}

export function digestAlgorithm(d: Digest): DigestAlgorithm {
  return d.slice(0, d.indexOf(':')) as DigestAlgorithm;
}

export function digestHex(d: Digest): string {
  return d.slice(d.indexOf(':') + 1);
}

export function digestOf(data: Uint8Array, algorithm: DigestAlgorithm = 'sha256'): Digest {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}` as Digest;
}

export interface VerifyOptions {
  /** Declared size: more bytes fail at once, fewer fail at the end. */
  size?: number;
  /** For messages: what is being read (URL or "blob sha256:… of repo"). */
  label?: string;
}

/**
 * Passes `source` through unchanged while hashing; throws OCI_DIGEST_MISMATCH when the bytes end
 * with another digest or size than expected. The last chunk is only released once verified, so a
 * consumer never sees the whole content of a corrupt blob.
 */
export async function* verifyDigestStream(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, expected: Digest, options: VerifyOptions = {}): AsyncGenerator<Buffer> {
  const hash = createHash(digestAlgorithm(expected));
  const label = options.label ?? `content ${expected}`;
  let bytes = 0;
  let held: Buffer | undefined;
  for await (const chunk of source) {
    const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    bytes += b.length;
    if (options.size !== undefined && bytes > options.size) {
      throw new GridboxError('OCI_DIGEST_MISMATCH', `Cannot verify ${label}: more than the declared ${options.size} bytes`, { digest: expected });
    }
    hash.update(b);
    if (held) yield held;
    held = b;
  }
  if (options.size !== undefined && bytes !== options.size) {
    throw new GridboxError('OCI_DIGEST_MISMATCH', `Cannot verify ${label}: expected ${options.size} bytes, got ${bytes}`, { digest: expected });
  }
  const got = `${digestAlgorithm(expected)}:${hash.digest('hex')}`;
  if (got !== expected) {
    throw new GridboxError('OCI_DIGEST_MISMATCH', `Cannot verify ${label}: expected digest ${expected}, got ${got}`, { digest: expected });
  }
  if (held) yield held;
}

/** One-shot check of a buffer against a digest. */
export function verifyDigest(data: Uint8Array, expected: Digest, label = `content ${expected}`): void {
  const got = digestOf(data, digestAlgorithm(expected));
  if (got !== expected) throw new GridboxError('OCI_DIGEST_MISMATCH', `Cannot verify ${label}: expected digest ${expected}, got ${got}`, { digest: expected });
}
