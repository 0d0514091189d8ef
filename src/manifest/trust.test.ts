// Manifest, whitelist and the trust chain against the cvmfs_server fixture repository and its keys,
// and against repositories signed here with fresh keys.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isGridboxError } from '../errors.js';
import { hashBytes, parseObjectId } from '../hash/object-id.js';
import { FsStore } from '../store/fs-store.js';
import { readObject } from '../store/object-io.js';
import { makeTempDir } from '../testing/tmp.js';
import { certificateCommonName, certificateFingerprint, createSelfSignedCertificate, generateRsaKeyPair, publicKeyPemOf, writeRepositoryKeys } from '../keys/keys.js';
import { formatBreadcrumb, MAX_MANIFEST_BYTES, parseBreadcrumb, parseManifest, parseSignedManifest, serializeManifest, signManifest, verifyManifestSignature, type ManifestFields } from './manifest.js';
import { verifyRepositoryTrust, type RepositoryTrustInput } from './trust.js';
import { createWhitelist, parseBlacklist, parseWhitelist, verifyWhitelist } from './whitelist.js';
import { X509Certificate } from 'node:crypto';
import { fixturesDir } from '../testing/fixtures.js';

const FQRN = 'legacy_aufs.cern.ch';


let tmp = '';
let srv = '';
let keysDir = '';
let certPem: Buffer;
let other: { privateKeyPem: string; publicKeyPem: string };

const code = (c: string) => (e: unknown) => {
  assert.ok(isGridboxError(e), `expected a GridboxError, got ${e}`);
  assert.equal(e.code, c, e.message);
  return true;
};
const key = (ext: string) => readFileSync(join(keysDir, `${FQRN}.${ext}`));
const fixtureInput = (over: Partial<RepositoryTrustInput> = {}): RepositoryTrustInput => ({
  fqrn: FQRN,
  manifestBytes: readFileSync(join(srv, '.cvmfspublished')),
  whitelistBytes: readFileSync(join(srv, '.cvmfswhitelist')),
  certPem,
  masterPublicKeysPem: [key('pub')],
  now: new Date('2015-11-01T00:00:00Z'),
  ...over,
});
const freshWhitelist = (over: Partial<Parameters<typeof createWhitelist>[0]> = {}) => createWhitelist({
  fqrn: FQRN,
  fingerprints: [certificateFingerprint(certPem)],
  created: new Date(),
  expires: new Date(Date.now() + 30 * 86_400_000),
  masterKeyPem: key('masterkey'),
  ...over,
});

before(async () => {
  tmp = await makeTempDir();
  const fx = fixturesDir();
  execFileSync('tar', ['xzf', join(fx, 'legacy_aufs_repo.tar.gz'), '-C', tmp]);
  execFileSync('tar', ['xzf', join(fx, 'legacy_aufs_keys.tar.gz'), '-C', tmp]);
  srv = join(tmp, 'srv', 'cvmfs', FQRN);
  keysDir = join(tmp, 'etc', 'cvmfs', 'keys');
  const m = parseSignedManifest(readFileSync(join(srv, '.cvmfspublished')));
  certPem = await readObject(new FsStore(srv), m.fields.X!, 'X', { compression: 'zlib' });
  other = generateRsaKeyPair();
});
after(async () => { if (tmp) await rm(tmp, { recursive: true, force: true }); });

test('the fixture manifest parses into the fields cvmfs_server wrote', () => {
  const m = parseSignedManifest(readFileSync(join(srv, '.cvmfspublished')));
  assert.equal(m.fields.C.hex, '6ed3d49a5c64f21f36936ab350d49aaf57585b9a');
  assert.equal(m.fields.B, 14336);
  assert.equal(m.fields.S, 2);
  assert.equal(m.fields.D, 900);
  assert.equal(m.fields.N, FQRN);
  assert.equal(m.fields.T, 1445428515);
  assert.equal(m.hashText, 'a7c0345bd49103a80f2341c0319e020d1acf454b');
  assert.equal(m.signature.length, 256);
  // Our writer keeps the stock order; this 2015 writer had no A line yet.
  assert.equal(serializeManifest(m.fields).toString().replace('Ano\n', ''), m.letter.toString());
});

test('the fixture manifest verifies with the fixture certificate (the zlib X object)', () => {
  assert.match(certPem.toString(), /^-----BEGIN CERTIFICATE-----/);
  verifyManifestSignature(parseSignedManifest(readFileSync(join(srv, '.cvmfspublished'))), certPem);
  assert.equal(certificateFingerprint(certPem), '93:AB:A3:C4:89:BE:F9:B7:3E:90:8F:42:C1:8A:EF:12:BB:05:C4:15');
});

test('the fixture passes the whole trust chain while its whitelist was valid', () => {
  assert.equal(verifyRepositoryTrust(fixtureInput()).S, 2);
});

test('the fixture whitelist is expired today: WHITELIST_EXPIRED, at hour granularity', () => {
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ now: new Date() })), code('WHITELIST_EXPIRED'));
  const parsed = parseWhitelist(readFileSync(join(srv, '.cvmfswhitelist')));
  assert.equal(parsed.whitelist.expires.toISOString(), '2015-11-20T11:55:13.000Z');
  const opts = { fqrn: FQRN, masterPublicKeysPem: [key('pub')] };
  verifyWhitelist(parsed, { ...opts, now: new Date('2015-11-20T10:59:59Z') });
  assert.throws(() => verifyWhitelist(parsed, { ...opts, now: new Date('2015-11-20T11:00:00Z') }), code('WHITELIST_EXPIRED'));
});

test('re-signed with the fixture master key, the fixture verifies today', () => {
  const fields = verifyRepositoryTrust(fixtureInput({ now: new Date(), whitelistBytes: freshWhitelist() }));
  assert.equal(fields.C.hex, '6ed3d49a5c64f21f36936ab350d49aaf57585b9a');
  const wl = parseWhitelist(freshWhitelist({ fingerprints: ['93:AB:A3:C4:89:BE:F9:B7:3E:90:8F:42:C1:8A:EF:12:BB:05:C4:15 # comment'] }));
  assert.equal(wl.whitelist.fingerprints[0].hex, '93aba3c489bef9b73e908f42c18aef12bb05c415');
});

test('a whitelist for another repository is WHITELIST_NAME_MISMATCH', () => {
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ now: new Date(), whitelistBytes: freshWhitelist({ fqrn: 'other.cern.ch' }) })), code('WHITELIST_NAME_MISMATCH'));
});

test('a whitelist signed by an unknown master key is refused; any one of several keys may sign', () => {
  const foreign = freshWhitelist({ masterKeyPem: other.privateKeyPem });
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ now: new Date(), whitelistBytes: foreign })), code('WHITELIST_BAD_SIGNATURE'));
  verifyRepositoryTrust(fixtureInput({ now: new Date(), whitelistBytes: foreign, masterPublicKeysPem: [key('pub'), other.publicKeyPem] }));
  const tampered = Buffer.from(freshWhitelist());
  tampered[tampered.indexOf('N') + 1] ^= 0x20; // "Legacy_aufs…": text no longer matches its hash
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ now: new Date(), whitelistBytes: tampered })), code('WHITELIST_BAD_SIGNATURE'));
});

test('a tampered manifest is MANIFEST_BAD_SIGNATURE', () => {
  const bytes = readFileSync(join(srv, '.cvmfspublished'));
  const text = Buffer.from(bytes);
  text.write('S3', text.indexOf('\nS2\n') + 1, 'latin1');
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ manifestBytes: text })), code('MANIFEST_BAD_SIGNATURE'));
  const sig = Buffer.from(bytes);
  sig[sig.length - 10] ^= 1;
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ manifestBytes: sig })), code('MANIFEST_BAD_SIGNATURE'));
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ manifestBytes: bytes.subarray(0, bytes.length - 1) })), code('MANIFEST_BAD_SIGNATURE'));
});

test('a manifest signed by another key is MANIFEST_BAD_SIGNATURE; a certificate not listed is WHITELIST_CERT_NOT_LISTED', async () => {
  const fields = parseManifest(readFileSync(join(srv, '.cvmfspublished')));
  const forged = signManifest(fields, other.privateKeyPem);
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ manifestBytes: forged })), code('MANIFEST_BAD_SIGNATURE'));
  const otherCert = await createSelfSignedCertificate({ fqrn: FQRN, privateKeyPem: other.privateKeyPem });
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ manifestBytes: forged, certPem: otherCert, now: new Date(), whitelistBytes: freshWhitelist() })), code('WHITELIST_CERT_NOT_LISTED'));
});

test('name, root, age and blacklist checks come with their own codes', () => {
  const fields = parseManifest(readFileSync(join(srv, '.cvmfspublished')));
  const resigned = (f: Partial<ManifestFields>) => signManifest({ ...fields, ...f }, key('key'));
  assert.equal(verifyRepositoryTrust(fixtureInput({ manifestBytes: resigned({ T: 1445428516 }) })).T, 1445428516);
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ fqrn: 'other.cern.ch' })), code('MANIFEST_NAME_MISMATCH'));
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ manifestBytes: resigned({ R: 'ffffffffffffffffffffffffffffffff' }) })), code('MANIFEST_ROOT_MISMATCH'));
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ minTimestamp: 1445428516 })), code('MANIFEST_OUTDATED'));
  verifyRepositoryTrust(fixtureInput({ minTimestamp: 1445428515 }));
  const bl = parseBlacklist(`# revoked\n93:AB:A3:C4:89:BE:F9:B7:3E:90:8F:42:C1:8A:EF:12:BB:05:C4:15\n`);
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ blacklist: bl })), code('CERT_BLACKLISTED'));
  assert.throws(() => verifyRepositoryTrust(fixtureInput({ blacklist: parseBlacklist(`<${FQRN} 3\n`) })), code('MANIFEST_OUTDATED'));
  verifyRepositoryTrust(fixtureInput({ blacklist: parseBlacklist(`<${FQRN} 2\n<other.org 9\n`) }));
});

test('a corrupted or truncated certificate object is STORE_HASH_MISMATCH naming the object', async () => {
  const store = new FsStore(srv);
  const xKey = '65133968f581abad1e75489c92a634e44929cbd7X';
  const original = await store.get(xKey);
  const { writeFile } = await import('node:fs/promises');
  try {
    for (const bad of [original.subarray(0, original.length - 5), Buffer.concat([original.subarray(0, 20), Buffer.from([original[20] ^ 1]), original.subarray(21)])]) {
      await writeFile(store.pathOf(xKey), bad);
      await assert.rejects(readObject(store, parseObjectId(xKey.slice(0, 40)), 'X', { compression: 'zlib' }), (e) => code('STORE_HASH_MISMATCH')(e) && (e as Error).message.includes(xKey));
    }
  } finally {
    await writeFile(store.pathOf(xKey), original);
  }
});

test('malformed manifests are refused with MANIFEST_* codes', () => {
  assert.throws(() => parseSignedManifest(Buffer.alloc(MAX_MANIFEST_BYTES + 1, 0x41)), code('MANIFEST_TOO_LARGE'));
  assert.throws(() => parseSignedManifest(Buffer.from('Cabc\n')), code('MANIFEST_INVALID'));
  assert.throws(() => parseManifest('Rd41d8cd98f00b204e9800998ecf8427e\nD1\nS1\n'), code('MANIFEST_INVALID'));
  assert.throws(() => parseManifest('Cnothex\nRd41d8cd98f00b204e9800998ecf8427e\nD1\nS1\n'), code('MANIFEST_INVALID'));
  assert.throws(() => parseManifest(`C${'a'.repeat(40)}\nRd41d8cd98f00b204e9800998ecf8427e\nDx\nS1\n`), code('MANIFEST_INVALID'));
  const f = parseManifest(`\nC${'a'.repeat(40)}\nRd41d8cd98f00b204e9800998ecf8427e\nD1\nS1\nS2\nZa\nZb\n--\nS9\n`);
  assert.equal(f.S, 2);
  assert.equal(f.Z, 'a|b');
});

test('a fresh repository signs and verifies with rmd160 and shake128, and the key files are written', async () => {
  const dir = await makeTempDir();
  try {
    const master = generateRsaKeyPair();
    const fqrn = 'a-repository-with-a-long-name.example.org';
    const certText = await createSelfSignedCertificate({ fqrn, privateKeyPem: other.privateKeyPem });
    const x509 = new X509Certificate(certText);
    assert.equal(x509.subject, `CN=${certificateCommonName(fqrn)}`);
    assert.equal(certificateCommonName(fqrn), 'a-repository-with-a-long-name. CernVM-FS Release Managers');
    assert.equal(certificateFingerprint(certText), x509.fingerprint, 'matches OpenSSL\'s SHA-1 DER fingerprint');
    assert.ok(x509.verify(x509.publicKey), 'self-signed');
    for (const algorithm of ['rmd160', 'shake128'] as const) {
      const C = hashBytes(algorithm, Buffer.from('root catalog'));
      const fields: ManifestFields = { C, B: 12, R: 'd41d8cd98f00b204e9800998ecf8427e', D: 240, S: 7, G: false, A: false, N: fqrn, X: hashBytes(algorithm, Buffer.from(certText)), T: 1700000000 };
      const manifestBytes = signManifest(fields, other.privateKeyPem);
      assert.ok(parseSignedManifest(manifestBytes).hashText.endsWith(`-${algorithm}`));
      const whitelistBytes = createWhitelist({ fqrn, fingerprints: [certificateFingerprint(certText, algorithm)], created: new Date(), expires: new Date(Date.now() + 3_600_000 * 2), masterKeyPem: master.privateKeyPem, algorithm });
      const got = verifyRepositoryTrust({ fqrn, manifestBytes, whitelistBytes, certPem: certText, masterPublicKeysPem: [master.publicKeyPem], now: new Date() });
      assert.deepEqual(got, fields);
    }
    await writeRepositoryKeys(join(dir, 'keys'), fqrn, { master, repository: other, certPem: certText });
    assert.equal((await stat(join(dir, 'keys', `${fqrn}.masterkey`))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'keys', `${fqrn}.pub`))).mode & 0o777, 0o644);
    assert.equal(publicKeyPemOf(readFileSync(join(dir, 'keys', `${fqrn}.key`))), other.publicKeyPem);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('breadcrumbs round-trip and old ones without a revision still parse', () => {
  const catalogHash = parseObjectId('6ed3d49a5c64f21f36936ab350d49aaf57585b9a');
  const text = formatBreadcrumb({ catalogHash, timestamp: 1445428515, revision: 2 });
  assert.equal(text, '6ed3d49a5c64f21f36936ab350d49aaf57585b9aT1445428515R2');
  assert.deepEqual(parseBreadcrumb(`${text}\n`), { catalogHash, timestamp: 1445428515, revision: 2 });
  assert.deepEqual(parseBreadcrumb('6ed3d49a5c64f21f36936ab350d49aaf57585b9aT5'), { catalogHash, timestamp: 5, revision: 0 });
  assert.equal(parseBreadcrumb('garbage'), undefined);
});
