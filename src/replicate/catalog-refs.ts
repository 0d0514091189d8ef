// The content objects one catalog references, read in SQL rather than row by row: a software area's
// catalog holds tens of thousands of files, and building an entry object per row (catalog-reader's
// objectRefs) cost more than the whole incremental snapshot should. With an older catalog of the same
// subtree that the replica already holds, only the references the older one lacks come back: everything
// the older catalog references is in the replica (snapshot.ts stores a catalog after its subtree), so
// those need not even be looked up. Same selection as CatalogReader.objectRefs (cvmfs-format.md §4):
// regular files that are not external; a chunked file's chunks ("P") instead of its bulk hash, unless it
// has no chunk rows; all-zero hashes left out.
import { GridboxError, q } from '../errors.js';
import { FLAG_FILE_CHUNK, FLAG_FILE_EXTERNAL, FLAG_HASH_MASK, FLAG_POS_HASH } from '../catalog/flags.js';
import { openSqliteReadOnly } from '../catalog/sqlite.js';
import { DIGEST_BYTES, hashAlgorithmFromCode, type HashAlgorithm, type ObjectId } from '../hash/object-id.js';

export interface CatalogObjectRef {
  id: ObjectId;
  suffix: '' | 'P';
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const REGULAR = `(f.mode & ${S_IFMT}) = ${S_IFREG} AND (f.flags & ${FLAG_FILE_EXTERNAL}) = 0`;
/** Files read whole: not chunked, or flagged chunked without chunk rows (read whole, as the client does). */
const WHOLE = `((f.flags & ${FLAG_FILE_CHUNK}) = 0 OR NOT EXISTS (SELECT 1 FROM %S.chunks c WHERE c.md5path_1 = f.md5path_1 AND c.md5path_2 = f.md5path_2))`;
const ALGO = `(f.flags & ${FLAG_HASH_MASK})`;

function wholeFiles(schema: string): string {
  return `SELECT f.hash AS hash, ${ALGO} AS algo FROM ${schema}.catalog f WHERE ${REGULAR} AND ${WHOLE.replace('%S', schema)}` +
    ` AND f.hash IS NOT NULL AND f.hash != zeroblob(length(f.hash))`;
}

function chunks(schema: string): string {
  return `SELECT c.hash AS hash, ${ALGO} AS algo FROM ${schema}.chunks c JOIN ${schema}.catalog f ON f.md5path_1 = c.md5path_1 AND f.md5path_2 = c.md5path_2` +
    ` WHERE ${REGULAR} AND (f.flags & ${FLAG_FILE_CHUNK}) != 0`;
}

/**
 * Objects `file` (an inflated catalog) references; with `older` (an inflated catalog the replica holds
 * for the same subtree), only those `older` does not reference. Duplicates possible. The older side is
 * compared as (digest, algorithm) pairs of the same kind (whole file or chunk), so an object can only be
 * skipped when the older catalog referenced exactly that object.
 */
export function catalogObjectRefs(file: string, older?: string): CatalogObjectRef[] {
  const db = openSqliteReadOnly(file, 'CATALOG_INVALID');
  try {
    if (older !== undefined) db.prepare('ATTACH DATABASE ? AS old').run(older);
    // An uncorrelated IN (subquery) is built once into a temporary index: one pass over each catalog.
    const out: CatalogObjectRef[] = [];
    for (const suffix of ['', 'P'] as const) {
      const select = suffix === 'P' ? chunks : wholeFiles;
      const sql = older === undefined ? select('main') : `SELECT hash, algo FROM (${select('main')}) WHERE (hash, algo) NOT IN (${select('old')})`;
      // Hex text from SQLite: a Buffer per row through the driver costs ~20x more.
      const rows = db.prepare(`SELECT lower(hex(hash)), algo FROM (${sql})`).raw(true).all() as [string, number][];
      for (const [hex, algo] of rows) {
        if (hex.length !== 2 * DIGEST_BYTES) {
          throw new GridboxError('CATALOG_INVALID', `Cannot read catalog ${q(file)}: a ${suffix === 'P' ? 'chunk' : 'file'} hash has ${hex.length / 2} bytes, expected ${DIGEST_BYTES}`, { path: file });
        }
        out.push({ id: { algorithm: algorithmOf(algo), hex }, suffix });
      }
    }
    return out;
  } catch (e) {
    if (e instanceof GridboxError) throw e;
    throw new GridboxError('CATALOG_INVALID', `Cannot read the object references of catalog ${q(file)}: ${(e as Error).message}`, { path: file, cause: e });
  } finally {
    db.close();
  }
}

const ALGORITHMS = new Map<number, HashAlgorithm>();

/** CVMFS stores the algorithm as code − 1 in flag bits 8–10 (unset means SHA-1). */
function algorithmOf(bits: number): HashAlgorithm {
  let a = ALGORITHMS.get(bits);
  if (a === undefined) {
    a = hashAlgorithmFromCode((bits >> FLAG_POS_HASH) + 1);
    ALGORITHMS.set(bits, a);
  }
  return a;
}
