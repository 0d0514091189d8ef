// Repository keys and certificates as `cvmfs_server mkfs` makes them (cvmfs-format.md §2.3, §3.2):
// RSA-2048 key pairs, a self-signed X.509 certificate, the DER fingerprint, and the key files on disk.
// Signing manifests and whitelists is in manifest/; this file only makes and stores keys.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { hashBytes, type HashAlgorithm } from '../hash/object-id.js';

export interface RsaKeyPair {
  /** PKCS#1 "RSA PRIVATE KEY" PEM, as openssl genrsa writes it. */
  privateKeyPem: string;
  /** SubjectPublicKeyInfo "PUBLIC KEY" PEM (the client's *.pub format). */
  publicKeyPem: string;
}

export function generateRsaKeyPair(bits = 2048): RsaKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: bits, publicExponent: 0x10001 });
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** SPKI PEM of the public half of a private key. */
export function publicKeyPemOf(privateKeyPem: string | Buffer): string {
  try {
    return createPublicKey(createPrivateKey(privateKeyPem)).export({ type: 'spki', format: 'pem' }).toString();
  } catch (e) {
    throw new GridboxError('SIGNING_KEY', `Cannot load private key: ${(e as Error).message}`, { cause: e });
  }
}

/** The stock subject: "<fqrn truncated to 30> CernVM-FS Release Managers". */
export function certificateCommonName(fqrn: string): string {
  return `${fqrn.slice(0, 30)} CernVM-FS Release Managers`;
}

export interface CertificateOptions {
  fqrn: string;
  privateKeyPem: string | Buffer;
  /** Validity start; default now. The client ignores validity dates, trust comes from the whitelist. */
  notBefore?: Date;
  days?: number;
}

// A minimal DER writer for the one certificate shape we make. (@peculiar/x509 needs the
// reflect-metadata polyfill, which is not installed; a self-signed RSA certificate is 40 lines of DER.)
function der(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  const n = body.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : n < 0x10000 ? Buffer.from([0x82, n >> 8, n & 0xff]) : Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}
const SEQUENCE = 0x30, SET = 0x31, INTEGER = 0x02, BIT_STRING = 0x03, UTF8_STRING = 0x0c, UTC_TIME = 0x17, GENERALIZED_TIME = 0x18;
const OID_SHA256_WITH_RSA = Buffer.from('06092a864886f70d01010b', 'hex');
const OID_COMMON_NAME = Buffer.from('0603550403', 'hex');
const DER_NULL = Buffer.from('0500', 'hex');

function derTime(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14); // YYYYMMDDhhmmss
  const year = d.getUTCFullYear();
  // RFC 5280: UTCTime through 2049, GeneralizedTime from 2050.
  return year < 2050 ? der(UTC_TIME, Buffer.from(`${iso.slice(2)}Z`)) : der(GENERALIZED_TIME, Buffer.from(`${iso}Z`));
}

/** A self-signed X.509 v3 certificate (SHA-256 with RSA) for the repository key, as PEM text. */
export async function createSelfSignedCertificate(o: CertificateOptions): Promise<string> {
  let spki: Buffer;
  let priv: ReturnType<typeof createPrivateKey>;
  try {
    priv = createPrivateKey(o.privateKeyPem);
    spki = createPublicKey(priv).export({ type: 'spki', format: 'der' });
  } catch (e) {
    throw new GridboxError('SIGNING_KEY', `Cannot load the key for the certificate of ${q(o.fqrn)}: ${(e as Error).message}`, { cause: e });
  }
  const notBefore = o.notBefore ?? new Date();
  const notAfter = new Date(notBefore.getTime() + (o.days ?? 365) * 86_400_000);
  const serial = randomBytes(8);
  serial[0] = (serial[0] & 0x7f) | 0x01; // positive and minimal: no leading zero byte needed
  const algorithm = der(SEQUENCE, OID_SHA256_WITH_RSA, DER_NULL);
  const name = der(SEQUENCE, der(SET, der(SEQUENCE, OID_COMMON_NAME, der(UTF8_STRING, Buffer.from(certificateCommonName(o.fqrn), 'utf8')))));
  const tbs = der(
    SEQUENCE,
    der(0xa0, der(INTEGER, Buffer.from([2]))), // [0] EXPLICIT version v3
    der(INTEGER, serial),
    algorithm,
    name, // issuer: self-signed
    der(SEQUENCE, derTime(notBefore), derTime(notAfter)),
    name, // subject
    spki,
  );
  const signature = sign('sha256', tbs, priv);
  const cert = der(SEQUENCE, tbs, algorithm, der(BIT_STRING, Buffer.from([0]), signature));
  const b64 = cert.toString('base64').match(/.{1,64}/g)!.join('\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/** Hash of the DER certificate in the whitelist's uppercase colon form ("93:AB:…", "…-RMD160" for rmd160). */
export function certificateFingerprint(certPem: string | Buffer, algorithm: HashAlgorithm = 'sha1'): string {
  let der: Buffer;
  try {
    der = new X509Certificate(certPem).raw;
  } catch (e) {
    throw new GridboxError('SIGNING_KEY', `Cannot parse certificate: ${(e as Error).message}`, { cause: e });
  }
  const id = hashBytes(algorithm, der);
  const pairs = id.hex.toUpperCase().match(/../g)!.join(':');
  return algorithm === 'sha1' ? pairs : `${pairs}-${algorithm.toUpperCase()}`;
}

export interface RepositoryKeys {
  master: RsaKeyPair;
  repository: RsaKeyPair;
  certPem: string;
}

/** Master key, repository key and certificate for a new repository. */
export async function generateRepositoryKeys(fqrn: string, now = new Date()): Promise<RepositoryKeys> {
  const master = generateRsaKeyPair();
  const repository = generateRsaKeyPair();
  const certPem = await createSelfSignedCertificate({ fqrn, privateKeyPem: repository.privateKeyPem, notBefore: now });
  return { master, repository, certPem };
}

/** Writes `<fqrn>.masterkey`, `.key` (0600), `.pub`, `.crt` (0644) into `dir`, as /etc/cvmfs/keys holds them. */
export async function writeRepositoryKeys(dir: string, fqrn: string, keys: RepositoryKeys): Promise<void> {
  await mkdir(dir, { recursive: true });
  const files: [string, string, number][] = [
    [`${fqrn}.masterkey`, keys.master.privateKeyPem, 0o600],
    [`${fqrn}.key`, keys.repository.privateKeyPem, 0o600],
    [`${fqrn}.pub`, keys.master.publicKeyPem, 0o644],
    [`${fqrn}.crt`, keys.certPem, 0o644],
  ];
  for (const [name, text, mode] of files) {
    const path = join(dir, name);
    await writeFile(path, text, { mode });
    await chmod(path, mode); // writeFile's mode is ignored when the file already exists
  }
}
