// The certificate whitelist `.cvmfswhitelist` (plain RSA variant) and the client blacklist (§3.1, §3.3):
// create/sign with a master key, parse, verify against several master public keys. Lives beside the
// manifest because trust.ts needs both and modules of one layer may not import each other.
import { privateEncrypt, publicDecrypt, constants, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { GridboxError, q } from '../errors.js';
import { formatObjectId, hashBytes, parseObjectId, sameObjectId, type HashAlgorithm, type ObjectId } from '../hash/object-id.js';

/** Untrusted input bound: stock whitelists are ~400 bytes; allow many fingerprints. */
export const MAX_WHITELIST_BYTES = 256 * 1024;

export interface Whitelist {
  created: Date;
  /** Valid while "now" is in an earlier UTC hour than this (Whitelist::IsBefore). */
  expires: Date;
  fqrn: string;
  /** Certificate fingerprints (hash of the DER certificate). */
  fingerprints: ObjectId[];
  /** "Vpkcs7": verified through a separate PKCS#7 file (not supported by verifyWhitelist). */
  pkcs7: boolean;
  /** "Wcachain": the certificate must also chain to a CA. */
  caChain: boolean;
}

export interface SignedWhitelist {
  whitelist: Whitelist;
  letter: Buffer;
  hashText: string;
  signature: Buffer;
}

const invalid = (msg: string, cause?: unknown) => new GridboxError('WHITELIST_INVALID', msg, cause === undefined ? {} : { cause });

/** YYYYMMDDhhmmss in UTC. */
export function formatWhitelistTime(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

function parseWhitelistTime(s: string, what: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(s);
  if (!m) throw invalid(`Cannot parse whitelist: ${what} is not YYYYMMDDhhmmss: ${q(s)}`);
  const [, y, mo, d, h, mi, se] = m.map(Number);
  return new Date(Date.UTC(y, mo - 1, d, h, mi, se));
}

/** Uppercase colon-separated form, with "-RMD160"/"-SHAKE128" appended for non-SHA-1 (§3.1). */
export function formatFingerprint(id: ObjectId): string {
  const pairs = id.hex.toUpperCase().match(/../g)!.join(':');
  return id.algorithm === 'sha1' ? pairs : `${pairs}-${id.algorithm.toUpperCase()}`;
}

/** MkFromFingerprint: drop colons, lower-case, stop at space/tab/#; undefined when not a fingerprint. */
export function parseFingerprint(line: string): ObjectId | undefined {
  const text = line.split(/[ \t#]/)[0].replace(/:/g, '').toLowerCase();
  try {
    return parseObjectId(text);
  } catch {
    return undefined;
  }
}

/** The fingerprint of a DER certificate with one algorithm. */
export function fingerprintOfDer(der: Uint8Array, algorithm: HashAlgorithm = 'sha1'): ObjectId {
  return hashBytes(algorithm, der);
}

export interface CreateWhitelistOptions {
  fqrn: string;
  /** Fingerprints as ObjectIds or in their printed form ("93:AB:…"). */
  fingerprints: (ObjectId | string)[];
  created: Date;
  expires: Date;
  masterKeyPem: string | Buffer;
  /** Letter hash algorithm (CVMFS_HASH_ALGORITHM); default sha1. */
  algorithm?: HashAlgorithm;
}

function loadKey(pem: string | Buffer, kind: 'private' | 'public', what: string): KeyObject {
  try {
    return kind === 'private' ? createPrivateKey(pem) : createPublicKey(pem);
  } catch (e) {
    throw new GridboxError('SIGNING_KEY', `Cannot load ${what}: ${(e as Error).message}`, { cause: e });
  }
}

/** Whitelist bytes: the lines, "--", the hex letter hash, and a raw PKCS#1 type-1 signature of that hex text. */
export function createWhitelist(o: CreateWhitelistOptions): Buffer {
  if (!o.fqrn || /[\n\r]/.test(o.fqrn)) throw new GridboxError('USAGE', `Cannot create whitelist: bad repository name ${q(o.fqrn)}`);
  const lines = [formatWhitelistTime(o.created), `E${formatWhitelistTime(o.expires)}`, `N${o.fqrn}`];
  for (const f of o.fingerprints) {
    const id = typeof f === 'string' ? parseFingerprint(f) : f;
    if (!id) throw new GridboxError('USAGE', `Cannot create whitelist: not a fingerprint: ${q(f)}`);
    lines.push(formatFingerprint(id));
  }
  const letter = Buffer.from(lines.map((l) => `${l}\n`).join(''), 'latin1');
  const hashText = formatObjectId(hashBytes(o.algorithm ?? 'sha1', letter));
  const key = loadKey(o.masterKeyPem, 'private', 'the master key');
  // RSA_private_encrypt with PKCS#1 padding over the hex text itself: no digest, no DigestInfo (§3.1).
  const signature = privateEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, Buffer.from(hashText, 'latin1'));
  return Buffer.concat([letter, Buffer.from(`--\n${hashText}\n`, 'latin1'), signature]);
}

/** Parse a whitelist; nothing is verified here. */
export function parseWhitelist(bytes: Uint8Array): SignedWhitelist {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length > MAX_WHITELIST_BYTES) throw invalid(`Cannot parse whitelist: ${buf.length} bytes exceed the limit of ${MAX_WHITELIST_BYTES}`);
  const cut = buf.indexOf('\n--\n', 0, 'latin1');
  if (cut < 0) throw invalid('Cannot parse whitelist: no "--" line, so it carries no signature');
  const letter = Buffer.from(buf.subarray(0, cut + 1));
  const hashEnd = buf.indexOf(0x0a, cut + 4);
  if (hashEnd < 0) throw invalid('Cannot parse whitelist: the hash line after "--" is not terminated');
  const hashText = buf.subarray(cut + 4, hashEnd).toString('latin1');
  try {
    parseObjectId(hashText);
  } catch (e) {
    throw invalid(`Cannot parse whitelist: the signed hash line is not a hash: ${q(hashText)}`, e);
  }
  const lines = letter.toString('latin1').split('\n').slice(0, -1);
  if (lines.length < 3) throw invalid(`Cannot parse whitelist: ${lines.length} lines, need creation, expiry and name`);
  if (lines[0].length !== 14) throw invalid(`Cannot parse whitelist: creation line must have 14 characters: ${q(lines[0])}`);
  if (!lines[1].startsWith('E') || lines[1].length !== 15) throw invalid(`Cannot parse whitelist: expiry line must be E + 14 digits: ${q(lines[1])}`);
  if (!lines[2].startsWith('N')) throw invalid(`Cannot parse whitelist: third line must be N<fqrn>: ${q(lines[2])}`);
  const whitelist: Whitelist = {
    created: parseWhitelistTime(lines[0], 'the creation time'),
    expires: parseWhitelistTime(lines[1].slice(1), 'the expiry'),
    fqrn: lines[2].slice(1),
    fingerprints: [],
    pkcs7: false,
    caChain: false,
  };
  for (const line of lines.slice(3)) {
    if (line === 'Vpkcs7') whitelist.pkcs7 = true;
    else if (line === 'Wcachain') whitelist.caChain = true;
    else {
      const id = parseFingerprint(line);
      if (id) whitelist.fingerprints.push(id); // unparseable lines are ignored, as upstream does
    }
  }
  return { whitelist, letter, hashText, signature: Buffer.from(buf.subarray(hashEnd + 1)) };
}

/** True when `now` is in an earlier UTC hour than the expiry. */
export function whitelistValidAt(w: Whitelist, now: Date): boolean {
  const HOUR_MS = 3_600_000;
  return Math.floor(now.getTime() / HOUR_MS) < Math.floor(w.expires.getTime() / HOUR_MS);
}

export interface VerifyWhitelistOptions {
  fqrn: string;
  now: Date;
  /** Any one of these may have signed it (CVMFS_PUBLIC_KEY / CVMFS_KEYS_DIR). */
  masterPublicKeysPem: (string | Buffer)[];
}

/** Signature (by any master key), then repository name, then expiry. Returns the whitelist. */
export function verifyWhitelist(parsed: SignedWhitelist, o: VerifyWhitelistOptions): Whitelist {
  const printed = parseObjectId(parsed.hashText);
  if (hashBytes(printed.algorithm, parsed.letter).hex !== printed.hex) {
    throw new GridboxError('WHITELIST_BAD_SIGNATURE', `Cannot verify whitelist: its text does not hash to the signed ${q(parsed.hashText)} (tampered text)`);
  }
  const expected = Buffer.from(parsed.hashText, 'latin1');
  const signedByMaster = o.masterPublicKeysPem.some((pem) => {
    const key = loadKey(pem, 'public', 'a master public key');
    try {
      return publicDecrypt({ key, padding: constants.RSA_PKCS1_PADDING }, parsed.signature).equals(expected);
    } catch {
      return false; // wrong key: the padding does not check out
    }
  });
  if (!signedByMaster) {
    throw new GridboxError('WHITELIST_BAD_SIGNATURE', `Cannot verify whitelist of ${q(parsed.whitelist.fqrn)}: not signed by any of the ${o.masterPublicKeysPem.length} master keys`);
  }
  const w = parsed.whitelist;
  if (w.fqrn !== o.fqrn) throw new GridboxError('WHITELIST_NAME_MISMATCH', `Cannot use whitelist: it is for ${q(w.fqrn)}, not ${q(o.fqrn)}`);
  if (w.pkcs7) throw new GridboxError('NOT_SUPPORTED', `Cannot verify whitelist of ${q(w.fqrn)}: the PKCS#7 variant is not supported`);
  if (!whitelistValidAt(w, o.now)) {
    throw new GridboxError('WHITELIST_EXPIRED', `Cannot use whitelist of ${q(w.fqrn)}: it expired at ${w.expires.toISOString()} (now ${o.now.toISOString()})`);
  }
  return w;
}

/** True when a DER certificate's fingerprint (in the listed algorithm) appears among `fingerprints`. */
export function fingerprintListed(certDer: Uint8Array, fingerprints: ObjectId[]): boolean {
  return fingerprints.some((f) => sameObjectId(f, fingerprintOfDer(certDer, f.algorithm)));
}

/** `/etc/cvmfs/blacklist`: certificate fingerprints, and "<fqrn N" lines refusing revisions below N. */
export interface Blacklist {
  fingerprints: ObjectId[];
  minRevisions: Map<string, number>;
}

export function parseBlacklist(text: string | Uint8Array): Blacklist {
  const s = typeof text === 'string' ? text : Buffer.from(text).toString('latin1');
  const bl: Blacklist = { fingerprints: [], minRevisions: new Map() };
  for (const raw of s.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const rev = /^<(\S+)\s+(\d+)$/.exec(line);
    if (rev) {
      bl.minRevisions.set(rev[1], Math.max(Number(rev[2]), bl.minRevisions.get(rev[1]) ?? 0));
      continue;
    }
    const id = parseFingerprint(line);
    if (id) bl.fingerprints.push(id);
  }
  return bl;
}

