// The signed repository manifest `.cvmfspublished` (cvmfs-format.md §2): parse and serialize the key
// lines, sign (letter hash + RSA/SHA-1 over the hex text) and verify; plus the client breadcrumb (§2.4).
// Pure bytes in, bytes out: fetching the manifest and the certificate object is the caller's job.
import { createPrivateKey, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { GridboxError, q } from '../errors.js';
import { formatObjectId, hashBytes, parseObjectId, type ObjectId } from '../hash/object-id.js';

/** Untrusted input bound: stock manifests are a few hundred bytes. */
export const MAX_MANIFEST_BYTES = 64 * 1024;

/** md5("") — the only root path a CVMFS manifest may name (§2.1, kFailRootMismatch otherwise). */
export const ROOT_PATH_MD5 = 'd41d8cd98f00b204e9800998ecf8427e';

/** Manifest fields under the spec's own key letters; hash fields are parsed object ids. */
export interface ManifestFields {
  /** Root catalog hash (suffix C implied). */
  C: ObjectId;
  /** Uncompressed root catalog size in bytes. */
  B?: number;
  /** MD5 of the root path; always ROOT_PATH_MD5. */
  R: string;
  /** TTL in seconds (the client reads the catalog's TTL instead). */
  D: number;
  /** Revision. */
  S: number;
  /** Garbage-collectable. */
  G?: boolean;
  /** Alternative `.cvmfsalt-` bootstrap paths. */
  A?: boolean;
  /** Micro-catalog hash (unused upstream), kept verbatim. */
  L?: string;
  /** Repository name (fqrn). */
  N?: string;
  /** Certificate object hash (suffix X). */
  X?: ObjectId;
  /** History database hash (suffix H). */
  H?: ObjectId;
  /** Publish time, Unix seconds. */
  T?: number;
  /** Meta-info object hash (suffix M). */
  M?: ObjectId;
  /** Hash of the uncompressed `.cvmfsreflog`. */
  Y?: ObjectId;
  /** Channel tips (reserved); repeated keys joined with "|". */
  Z?: string;
}

export interface SignedManifest {
  fields: ManifestFields;
  /** The signed text: every key line including the last "\n", without the "--" line. */
  letter: Buffer;
  /** The printed letter hash, e.g. "a7c0…454b" (with "-rmd160"/"-shake128" when not SHA-1). */
  hashText: string;
  /** Raw RSA signature bytes (everything after the hash line). */
  signature: Buffer;
}

const invalid = (msg: string, cause?: unknown) => new GridboxError('MANIFEST_INVALID', msg, cause === undefined ? {} : { cause });

function decimal(key: string, v: string): number {
  if (!/^\d{1,16}$/.test(v)) throw invalid(`Cannot parse manifest: ${key} must be a decimal number, got ${q(v)}`);
  return Number(v);
}

function hashField(key: string, v: string): ObjectId {
  try {
    return parseObjectId(v);
  } catch (e) {
    throw invalid(`Cannot parse manifest: ${key} is not a content hash: ${q(v)}`, e);
  }
}

/** Parse the key lines (stops at a line "--"; empty lines ignored; last repeat wins except Z). */
export function parseManifest(text: Uint8Array | string): ManifestFields {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : Buffer.from(text.buffer, text.byteOffset, text.byteLength);
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new GridboxError('MANIFEST_TOO_LARGE', `Cannot parse manifest: ${bytes.length} bytes exceed the limit of ${MAX_MANIFEST_BYTES}`);
  }
  const raw = new Map<string, string>();
  for (const line of bytes.toString('latin1').split('\n')) {
    if (line === '--') break;
    if (line === '') continue;
    const key = line[0];
    const value = line.slice(1);
    raw.set(key, key === 'Z' && raw.has('Z') ? `${raw.get('Z')}|${value}` : value);
  }
  for (const k of ['C', 'R', 'D', 'S']) {
    if (!raw.has(k)) throw invalid(`Cannot parse manifest: required key ${q(k)} is missing`);
  }
  const f: ManifestFields = {
    C: hashField('C', raw.get('C')!),
    R: raw.get('R')!,
    D: decimal('D', raw.get('D')!),
    S: decimal('S', raw.get('S')!),
  };
  if (!/^[0-9a-f]{32}$/.test(f.R)) throw invalid(`Cannot parse manifest: R is not an MD5 hex string: ${q(f.R)}`);
  const get = (k: string) => raw.get(k);
  if (get('B') !== undefined) f.B = decimal('B', get('B')!);
  if (get('G') !== undefined) f.G = get('G') === 'yes';
  if (get('A') !== undefined) f.A = get('A') === 'yes';
  if (get('L') !== undefined) f.L = get('L');
  if (get('N') !== undefined) f.N = get('N');
  if (get('X') !== undefined) f.X = hashField('X', get('X')!);
  if (get('H') !== undefined) f.H = hashField('H', get('H')!);
  if (get('T') !== undefined) f.T = decimal('T', get('T')!);
  if (get('M') !== undefined) f.M = hashField('M', get('M')!);
  if (get('Y') !== undefined) f.Y = hashField('Y', get('Y')!);
  if (get('Z') !== undefined) f.Z = get('Z');
  return f;
}

/** The key lines in the stock writer's order: C B R D S G A, then L N X H T M Y when set (Z last). */
export function serializeManifest(f: ManifestFields): Buffer {
  const lines = [`C${formatObjectId(f.C)}`];
  if (f.B !== undefined) lines.push(`B${f.B}`);
  lines.push(`R${f.R}`, `D${f.D}`, `S${f.S}`, `G${f.G ? 'yes' : 'no'}`, `A${f.A ? 'yes' : 'no'}`);
  if (f.L !== undefined) lines.push(`L${f.L}`);
  if (f.N !== undefined) lines.push(`N${f.N}`);
  if (f.X) lines.push(`X${formatObjectId(f.X)}`);
  if (f.H) lines.push(`H${formatObjectId(f.H)}`);
  if (f.T !== undefined) lines.push(`T${f.T}`);
  if (f.M) lines.push(`M${formatObjectId(f.M)}`);
  if (f.Y) lines.push(`Y${formatObjectId(f.Y)}`);
  if (f.Z !== undefined) for (const z of f.Z.split('|')) lines.push(`Z${z}`);
  for (const l of lines) if (l.includes('\n')) throw new GridboxError('USAGE', `Cannot write manifest: value contains a newline: ${q(l)}`);
  return Buffer.from(lines.map((l) => `${l}\n`).join(''), 'latin1');
}

function loadPrivateKey(pem: string | Buffer): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (e) {
    throw new GridboxError('SIGNING_KEY', `Cannot load the repository private key: ${(e as Error).message}`, { cause: e });
  }
}

/** Public key of a PEM certificate (the X object, decompressed). */
export function certificatePublicKey(certPem: string | Buffer): KeyObject {
  try {
    return new X509Certificate(certPem).publicKey;
  } catch (e) {
    throw new GridboxError('MANIFEST_BAD_SIGNATURE', `Cannot load the repository certificate: ${(e as Error).message}`, { cause: e });
  }
}

/** Serialize, append "--", the letter hash (algorithm of C) and an RSA PKCS#1 v1.5 SHA-1 signature of the hex text. */
export function signManifest(fields: ManifestFields, certPrivateKeyPem: string | Buffer): Buffer {
  const letter = serializeManifest(fields);
  const hashText = formatObjectId(hashBytes(fields.C.algorithm, letter));
  const signature = sign('sha1', Buffer.from(hashText, 'latin1'), loadPrivateKey(certPrivateKeyPem));
  return Buffer.concat([letter, Buffer.from(`--\n${hashText}\n`, 'latin1'), signature]);
}

/**
 * Split a signed manifest at the first "\n--\n" (as SignatureManager::CutLetter does) and parse its
 * fields. Nothing is verified here.
 */
export function parseSignedManifest(bytes: Uint8Array): SignedManifest {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length > MAX_MANIFEST_BYTES) {
    throw new GridboxError('MANIFEST_TOO_LARGE', `Cannot parse manifest: ${buf.length} bytes exceed the limit of ${MAX_MANIFEST_BYTES}`);
  }
  const cut = buf.indexOf('\n--\n', 0, 'latin1');
  if (cut < 0) throw invalid('Cannot parse manifest: no "--" line, so it carries no signature');
  const letter = Buffer.from(buf.subarray(0, cut + 1));
  const hashStart = cut + 4;
  const hashEnd = buf.indexOf(0x0a, hashStart);
  if (hashEnd < 0) throw invalid('Cannot parse manifest: the hash line after "--" is not terminated');
  const hashText = buf.subarray(hashStart, hashEnd).toString('latin1');
  try {
    parseObjectId(hashText);
  } catch (e) {
    throw invalid(`Cannot parse manifest: the signed hash line is not a hash: ${q(hashText)}`, e);
  }
  return { fields: parseManifest(letter), letter, hashText, signature: Buffer.from(buf.subarray(hashEnd + 1)) };
}

/** Check the letter hash, then the RSA/SHA-1 signature over the hex text with the certificate's key. */
export function verifyManifestSignature(parsed: SignedManifest, certPem: string | Buffer): void {
  const printed = parseObjectId(parsed.hashText);
  const actual = hashBytes(printed.algorithm, parsed.letter);
  if (actual.hex !== printed.hex) {
    throw new GridboxError('MANIFEST_BAD_SIGNATURE', `Cannot verify manifest: its text hashes to ${q(formatObjectId(actual))} but the signed hash is ${q(parsed.hashText)} (tampered text)`);
  }
  const key = certificatePublicKey(certPem);
  let ok = false;
  try {
    ok = verify('sha1', Buffer.from(parsed.hashText, 'latin1'), key, parsed.signature);
  } catch (e) {
    throw new GridboxError('MANIFEST_BAD_SIGNATURE', `Cannot verify manifest signature: ${(e as Error).message}`, { cause: e });
  }
  if (!ok) throw new GridboxError('MANIFEST_BAD_SIGNATURE', `Cannot verify manifest signature over ${q(parsed.hashText)}: not signed by the certificate's key`);
}

/** The client breadcrumb `<root catalog hash>T<timestamp>R<revision>` (§2.4). */
export interface Breadcrumb {
  catalogHash: ObjectId;
  timestamp: number;
  revision: number;
}

export function formatBreadcrumb(b: Breadcrumb): string {
  return `${formatObjectId(b.catalogHash)}T${b.timestamp}R${b.revision}`;
}

/** Parse a breadcrumb; old ones without "R<revision>" give revision 0. Returns undefined when malformed. */
export function parseBreadcrumb(text: string): Breadcrumb | undefined {
  const m = /^([0-9a-f]{40}(?:-rmd160|-shake128)?)T(\d{1,16})(?:R(\d{1,16}))?\s*$/.exec(text);
  if (!m) return undefined;
  return { catalogHash: parseObjectId(m[1]), timestamp: Number(m[2]), revision: m[3] === undefined ? 0 : Number(m[3]) };
}

