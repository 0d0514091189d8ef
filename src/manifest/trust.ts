// The client's trust decision for one manifest, in the order of cvmfs-format.md §3.4 (DoVerify):
// parse → name/root → not outdated → manifest signature by the certificate → whitelist (master key,
// name, expiry) → blacklist → certificate fingerprint listed. Fetching (and the same-root shortcut) is the caller's.
import { X509Certificate } from 'node:crypto';
import { GridboxError, q } from '../errors.js';
import { parseSignedManifest, verifyManifestSignature, ROOT_PATH_MD5, type ManifestFields } from './manifest.js';
import { fingerprintListed, formatFingerprint, fingerprintOfDer, parseWhitelist, verifyWhitelist, type Blacklist } from './whitelist.js';

export interface RepositoryTrustInput {
  fqrn: string;
  /** `.cvmfspublished` as downloaded. */
  manifestBytes: Uint8Array;
  /** `.cvmfswhitelist` as downloaded. */
  whitelistBytes: Uint8Array;
  /** The certificate PEM: the manifest's X object, hash-verified and inflated by the caller. */
  certPem: string | Buffer;
  /** Master public keys; any one may have signed the whitelist. */
  masterPublicKeysPem: (string | Buffer)[];
  now: Date;
  /** Publish timestamp of the manifest already seen (breadcrumb or mounted); an older T is refused. */
  minTimestamp?: number;
  blacklist?: Blacklist;
}

/** Returns the manifest fields once every check passed; throws the first failing check's code. */
export function verifyRepositoryTrust(input: RepositoryTrustInput): ManifestFields {
  const manifest = parseSignedManifest(input.manifestBytes);
  const f = manifest.fields;
  if (f.N !== input.fqrn) {
    throw new GridboxError('MANIFEST_NAME_MISMATCH', `Cannot trust manifest: it names repository ${q(f.N ?? '')}, expected ${q(input.fqrn)}`);
  }
  if (f.R !== ROOT_PATH_MD5) throw new GridboxError('MANIFEST_ROOT_MISMATCH', `Cannot trust manifest: root path hash ${q(f.R)} is not md5("")`);
  if (input.minTimestamp !== undefined && (f.T ?? 0) < input.minTimestamp) {
    throw new GridboxError('MANIFEST_OUTDATED', `Cannot accept manifest of ${q(input.fqrn)}: published at ${f.T ?? 0}, older than ${input.minTimestamp} already seen`);
  }
  const minRevision = input.blacklist?.minRevisions.get(input.fqrn);
  if (minRevision !== undefined && f.S < minRevision) {
    throw new GridboxError('MANIFEST_OUTDATED', `Cannot accept revision ${f.S} of ${q(input.fqrn)}: the blacklist refuses revisions below ${minRevision}`);
  }
  verifyManifestSignature(manifest, input.certPem);

  const whitelist = verifyWhitelist(parseWhitelist(input.whitelistBytes), {
    fqrn: input.fqrn,
    now: input.now,
    masterPublicKeysPem: input.masterPublicKeysPem,
  });
  const der = new X509Certificate(input.certPem).raw;
  if (input.blacklist && fingerprintListed(der, input.blacklist.fingerprints)) {
    throw new GridboxError('CERT_BLACKLISTED', `Cannot trust certificate ${q(formatFingerprint(fingerprintOfDer(der)))} of ${q(input.fqrn)}: it is blacklisted`);
  }
  if (!fingerprintListed(der, whitelist.fingerprints)) {
    throw new GridboxError('WHITELIST_CERT_NOT_LISTED', `Cannot trust certificate ${q(formatFingerprint(fingerprintOfDer(der)))}: not in the whitelist of ${q(input.fqrn)}`);
  }
  return f;
}
