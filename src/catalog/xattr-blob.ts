// The catalog `xattr` BLOB (cvmfs-format.md §4.6, `XattrList::Serialize`): version byte, count byte, then
// per attribute 1-byte key length, 1-byte value length, key bytes, value bytes; keys in byte order.
// Pure encode/decode with the format's limits; which attributes to store is the publisher's business.
import { GridboxError, q } from '../errors.js';

export const XATTR_BLOB_VERSION = 1;
/** Key and value lengths are stored in one byte each. */
export const MAX_XATTR_KEY_BYTES = 255;
export const MAX_XATTR_VALUE_BYTES = 255;
/** The count is stored in one byte. */
export const MAX_XATTR_COUNT = 255;

/** Serialize attributes; returns null for none (the column is then NULL). Throws CATALOG_INVALID past a limit. */
export function serializeXattrs(xattrs: Record<string, Buffer> | undefined, path = ''): Buffer | null {
  if (!xattrs) return null;
  const items = Object.entries(xattrs).map(([k, v]) => [Buffer.from(k, 'utf8'), v] as const);
  if (items.length === 0) return null;
  if (items.length > MAX_XATTR_COUNT) {
    throw new GridboxError('CATALOG_INVALID', `Cannot store xattrs of ${q(path)}: ${items.length} attributes, limit ${MAX_XATTR_COUNT}`, { path });
  }
  items.sort((a, b) => Buffer.compare(a[0], b[0]));
  let total = 2;
  for (const [k, v] of items) {
    if (k.length === 0 || k.length > MAX_XATTR_KEY_BYTES) {
      throw new GridboxError('CATALOG_INVALID', `Cannot store xattr ${q(k.toString())} of ${q(path)}: name has ${k.length} bytes, allowed 1..${MAX_XATTR_KEY_BYTES}`, { path });
    }
    if (v.length > MAX_XATTR_VALUE_BYTES) {
      throw new GridboxError('CATALOG_INVALID', `Cannot store xattr ${q(k.toString())} of ${q(path)}: value has ${v.length} bytes, limit ${MAX_XATTR_VALUE_BYTES}`, { path });
    }
    total += 2 + k.length + v.length;
  }
  const out = Buffer.allocUnsafe(total);
  out[0] = XATTR_BLOB_VERSION;
  out[1] = items.length;
  let pos = 2;
  for (const [k, v] of items) {
    out[pos++] = k.length;
    out[pos++] = v.length;
    pos += k.copy(out, pos);
    pos += Buffer.from(v).copy(out, pos);
  }
  return out;
}

/** Parse a blob; every length is checked against the remaining bytes. Throws CATALOG_INVALID. */
export function parseXattrs(blob: Uint8Array, path = ''): Record<string, Buffer> {
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  const bad = (why: string): GridboxError =>
    new GridboxError('CATALOG_INVALID', `Cannot parse xattr blob of ${q(path)} (${buf.length} bytes): ${why}`, { path });
  if (buf.length < 2) throw bad('shorter than its 2-byte header');
  if (buf[0] !== XATTR_BLOB_VERSION) throw bad(`version ${buf[0]}, expected ${XATTR_BLOB_VERSION}`);
  const count = buf[1];
  const out: Record<string, Buffer> = {};
  let pos = 2;
  for (let i = 0; i < count; i++) {
    if (pos + 2 > buf.length) throw bad(`attribute ${i} header past the end`);
    const kl = buf[pos], vl = buf[pos + 1];
    pos += 2;
    if (pos + kl + vl > buf.length) throw bad(`attribute ${i} data (${kl}+${vl} bytes) past the end`);
    const key = buf.toString('utf8', pos, pos + kl);
    out[key] = Buffer.from(buf.subarray(pos + kl, pos + kl + vl));
    pos += kl + vl;
  }
  if (pos !== buf.length) throw bad(`${buf.length - pos} trailing bytes`);
  return out;
}
