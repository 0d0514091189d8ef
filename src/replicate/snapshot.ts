// Stratum-1 snapshot (spec §8.5, `cvmfs_server snapshot` → `swissknife pull`): verify the source's manifest as a
// client would (§3.4), copy every object the revision and its tags reference, stored bytes exactly as served,
// then install the whitelist and the manifest last. Not a publisher, not a server. Invariant: a catalog (or history
// object) is stored only after all it references, so one found in the replica stands for its whole subtree.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { openCatalog } from '../catalog/catalog-reader.js';
import { formatObjectId, objectKey, parseObjectId, type ObjectId, type ObjectSuffix } from '../hash/object-id.js';
import { openHistory, type Tag } from '../history/history-db.js';
import { MAX_MANIFEST_BYTES, parseSignedManifest, type ManifestFields } from '../manifest/manifest.js';
import { verifyRepositoryTrust } from '../manifest/trust.js';
import { MAX_WHITELIST_BYTES } from '../manifest/whitelist.js';
import { FsStore } from '../store/fs-store.js';
import { decodeObjectBytes, verifyObjectBytes } from '../store/object-io.js';
import { catalogObjectRefs, type CatalogObjectRef } from './catalog-refs.js';
import { Limiter, ObjectCopier, PresentKeys, StatPresence, isMissingAtSource, objectFetchError, type SnapshotSource } from './object-copier.js';
import { ReplicaWritePool, SYNC_FIRST } from './replica-write-pool.js';
import { formatSnapshotTime, lockReplica, readIfPresent, replicaLayout, writeFileAtomic } from './replica-layout.js';

export type { SnapshotSource } from './object-copier.js';

/** Objects in flight at once by default: enough to hide a loopback or LAN round trip behind the writes. */
export const DEFAULT_SNAPSHOT_CONCURRENCY = 16;
/** Bulk path defaults (http-pipeline.ts): connections to the source, requests written ahead on each. */
export const DEFAULT_CONNECTIONS = 4;
export const DEFAULT_PIPELINE_DEPTH = 16;
/** Bodies above this go through the full downloader instead of being held whole by the bulk path. */
export const MAX_PIPELINED_BODY = 64 << 20;
/** Inflate caps for the meta-objects a snapshot must read. */
export const MAX_CATALOG_BYTES = 1 << 30;
export const MAX_HISTORY_BYTES = 256 << 20;
export const MAX_CERT_BYTES = 1 << 20;
/** A history chain longer than this is treated as a loop. */
export const MAX_HISTORY_CHAIN = 100_000;

export interface SnapshotOptions {
  fqrn: string;
  /** The stratum-0 (or another replica): relative paths below its repository base URL. */
  source: SnapshotSource;
  /** Shown in messages, e.g. "http://s0.example.org/cvmfs/sw.example.org". */
  sourceLabel?: string;
  /** Replica root: the replica is served from <root>/srv/<fqrn>/. */
  root: string;
  /** Master public keys; one must have signed the source's whitelist. */
  masterPublicKeysPem: (string | Buffer)[];
  concurrency?: number;
  now?: () => Date;
  log?: (line: string) => void;
}

export interface SnapshotReport {
  fqrn: string;
  revision: number;
  /** Revision the replica served before, if any. */
  previousRevision?: number;
  rootCatalog: string;
  /** Objects fetched and stored by this run (catalogs included) and their stored bytes. */
  objects: number;
  bytes: number;
  catalogs: number;
  /** Objects found already present and not fetched. */
  present: number;
  /** Tagged revisions whose catalogs were walked besides the current one. */
  tags: number;
}

/** Mirrors one repository revision into the replica at `o.root`; on any failure the replica keeps serving its previous revision. */
export async function snapshotRepository(o: SnapshotOptions): Promise<SnapshotReport> {
  const layout = replicaLayout(o.root, o.fqrn);
  const now = o.now ?? (() => new Date());
  const label = o.sourceLabel ?? o.fqrn;
  const release = await lockReplica(layout);
  let tmpDir: string | undefined;
  let writer: ReplicaWritePool | undefined;
  try {
    await requireMasterReplica(o.source, o.fqrn, label);
    const manifestBytes = await o.source.fetchFile('.cvmfspublished', { maxBytes: MAX_MANIFEST_BYTES });
    const whitelistBytes = await o.source.fetchFile('.cvmfswhitelist', { maxBytes: MAX_WHITELIST_BYTES });
    const pkcs7 = await fetchOptional(o.source, '.cvmfswhitelist.pkcs7', MAX_WHITELIST_BYTES);

    const store = await FsStore.create(layout.srv);
    // We hold the lock, so scratch dirs left by a killed snapshot are nobody's.
    for (const name of await readdir(layout.state)) if (name.startsWith('snapshot-')) await rm(join(layout.state, name), { recursive: true, force: true });
    tmpDir = await mkdtemp(join(layout.state, 'snapshot-'));
    const limiter = new Limiter(o.concurrency ?? DEFAULT_SNAPSHOT_CONCURRENCY);
    // A replica serving a revision is looked up object by object, and only where catalogs changed; one
    // that serves nothing yet is listed once (it is empty, or holds what a killed first snapshot stored).
    const currentBytes = await readIfPresent(layout.manifest);
    const current = currentBytes === undefined ? undefined : parseSignedManifest(currentBytes).fields;
    const presence = current !== undefined ? new StatPresence(store.dataDir) : await PresentKeys.of(store);
    // A writer thread only pays where cores are spare: on two cores, hashing, the network and the writes
    // (and a co-located origin) compete anyway, and the hand-over costs more than it frees.
    writer = new ReplicaWritePool(store.dataDir, availableParallelism() >= 4 ? SYNC_FIRST : Infinity);
    const copier = new ObjectCopier(o.source, store, limiter, presence, writer);

    // Trust first (spec §3.4): nothing is copied for a manifest that does not verify.
    const certId = parseSignedManifest(manifestBytes).fields.X;
    if (certId === undefined) throw new GridboxError('MANIFEST_INVALID', `Cannot snapshot ${q(o.fqrn)}: the source's manifest names no certificate (X)`);
    const cert = await localOrFetched(store, copier, certId, 'X');
    const certPem = decodeObjectBytes(cert.bytes, objectKey(certId, 'X'), { compression: 'zlib', maxBytes: MAX_CERT_BYTES });
    const fields = verifyRepositoryTrust({
      fqrn: o.fqrn, manifestBytes, whitelistBytes, certPem, masterPublicKeysPem: o.masterPublicKeysPem,
      now: now(), minTimestamp: current?.T,
    });
    if (current !== undefined && fields.S < current.S) {
      throw new GridboxError('MANIFEST_OUTDATED', `Cannot snapshot ${q(o.fqrn)}: the source serves revision ${fields.S}, older than revision ${current.S} in the replica`);
    }
    o.log?.(`${o.fqrn}: source at revision ${fields.S}${current ? `, replica at ${current.S}` : ', new replica'}`);

    const walk = new RevisionWalk(copier, store, tmpDir, limiter);
    await walk.all([
      cert.local ? Promise.resolve() : copier.put(objectKey(certId, 'X'), cert.bytes),
      fields.M !== undefined ? copier.copy(fields.M, 'M') : Promise.resolve(),
      walk.historyAndTags(fields),
      walk.catalogTree(fields.C, current?.C),
    ]);

    // Top-level files last, manifest very last (spec §8.5): until this rename, clients see the old revision.
    await writeFileAtomic(layout.txn, layout.whitelist, whitelistBytes);
    if (pkcs7 !== undefined) await writeFileAtomic(layout.txn, layout.whitelistPkcs7, pkcs7);
    else await rm(layout.whitelistPkcs7, { force: true });
    await writeFileAtomic(layout.txn, layout.manifest, manifestBytes);
    await writeFileAtomic(layout.txn, layout.lastSnapshot, Buffer.from(`${formatSnapshotTime(now())}\n`));
    return {
      fqrn: o.fqrn, revision: fields.S, previousRevision: current?.S, rootCatalog: formatObjectId(fields.C),
      objects: copier.stats.objects, bytes: copier.stats.bytes, present: copier.stats.present,
      catalogs: walk.catalogsCopied, tags: walk.tagsWalked,
    };
  } finally {
    await writer?.close();
    if (tmpDir !== undefined) await rm(tmpDir, { recursive: true, force: true });
    await release();
  }
}

/** Stock stratum-1s refuse a stratum-0 without `/.cvmfs_master_replica` (spec §1.1, §8.5). */
async function requireMasterReplica(source: SnapshotSource, fqrn: string, label: string): Promise<void> {
  const marker = await fetchOptional(source, '.cvmfs_master_replica', 64 * 1024);
  if (marker === undefined) {
    throw new GridboxError('REPLICA_NOT_ALLOWED',
      `Cannot snapshot ${q(fqrn)} from ${q(label)}: the source has no .cvmfs_master_replica marker, so it does not allow stratum-1 replication`);
  }
}

/** Nested catalogs of an inflated catalog file; bind mountpoints name other repositories and are not copied. */
function nestedOf(file: string): { path: string; id: ObjectId }[] {
  const reader = openCatalog(file);
  try {
    return reader.nested().filter((n) => !n.bind).map((n) => ({ path: n.path, id: n.id }));
  } finally {
    reader.close();
  }
}

/** A top-level file that may be absent: undefined on HTTP 404, any other failure thrown. */
async function fetchOptional(source: SnapshotSource, rel: string, maxBytes: number): Promise<Buffer | undefined> {
  try {
    return await source.fetchFile(rel, { maxBytes });
  } catch (e) {
    if (isMissingAtSource(objectFetchError(e, rel))) return undefined;
    throw e;
  }
}

/** The replica's verified copy of an object when it has one, else the source's (verified while fetched, not stored). */
async function localOrFetched(store: FsStore, copier: ObjectCopier, id: ObjectId, suffix: ObjectSuffix): Promise<{ bytes: Buffer; local: boolean }> {
  const key = objectKey(id, suffix);
  if (await store.has(key)) {
    const bytes = await store.get(key);
    verifyObjectBytes(bytes, id, suffix);
    return { bytes, local: true };
  }
  return { bytes: await copier.fetch(id, suffix), local: false };
}

/** Walks the catalogs of a revision (and of its tags) and the history chain, copying what is missing. */
class RevisionWalk {
  catalogsCopied = 0;
  tagsWalked = 0;
  private firstError: unknown;
  private readonly catalogs = new Map<string, Promise<void>>();
  private seq = 0;

  constructor(private readonly copier: ObjectCopier, private readonly store: FsStore, private readonly tmpDir: string, private readonly limiter: Limiter) {}

  /**
   * Waits for every task to settle, then throws the first failure. The first failure also stops tasks
   * not yet started, so a run that has failed ends soon and leaves nothing running behind it.
   */
  async all(tasks: Promise<unknown>[]): Promise<void> {
    await Promise.allSettled(tasks.map((t) => t.catch((e: unknown) => {
      if (this.firstError === undefined) {
        this.firstError = e;
        this.limiter.stop(e);
      }
      throw e;
    })));
    if (this.firstError !== undefined) throw this.firstError;
  }

  /**
   * One catalog and everything below it; concurrent calls for one catalog share the work. `older` is the
   * catalog the replica's current revision has at the same place, if any: only what the new catalog adds
   * to it is looked up (catalog-refs.ts), and nested catalogs pair up with its nested catalogs by path.
   */
  catalogTree(id: ObjectId, older?: ObjectId): Promise<void> {
    const key = objectKey(id, 'C');
    let p = this.catalogs.get(key);
    if (p === undefined) {
      p = this.catalogTreeOnce(id, key, older);
      this.catalogs.set(key, p);
    }
    return p;
  }

  private async catalogTreeOnce(id: ObjectId, key: string, older: ObjectId | undefined): Promise<void> {
    // Present means its whole subtree is present (stored last): an unchanged nested catalog is never opened.
    if (await this.copier.has(key)) {
      this.copier.stats.present++;
      return;
    }
    const raw = await this.copier.fetch(id, 'C');
    // Keep the compressed bytes on disk while the subtree copies, so a deep tree does not pile up in memory.
    const rawFile = join(this.tmpDir, `${key}.raw`);
    await writeFile(rawFile, raw);
    const { objects, nested } = await this.readCatalog(raw, key, older);
    await this.all([
      ...objects.map((r) => this.copier.copy(r.id, r.suffix)),
      ...nested.map((n) => this.catalogTree(n.id, n.older)),
    ]);
    await this.copier.put(key, await readFile(rawFile));
    await rm(rawFile, { force: true });
    this.catalogsCopied++;
  }

  /** Data objects (whole files without a suffix, chunks `P`) and nested catalogs one catalog references. */
  private async readCatalog(raw: Buffer, key: string, older: ObjectId | undefined): Promise<{ objects: CatalogObjectRef[]; nested: { id: ObjectId; older?: ObjectId }[] }> {
    const file = join(this.tmpDir, `catalog-${this.seq++}.sqlite`);
    await writeFile(file, decodeObjectBytes(raw, key, { compression: 'zlib', maxBytes: MAX_CATALOG_BYTES }));
    const olderFile = older !== undefined ? await this.inflateLocal(older) : undefined;
    try {
      const olderNested = new Map<string, ObjectId>();
      if (olderFile !== undefined) for (const n of nestedOf(olderFile)) olderNested.set(n.path, n.id);
      const nested = nestedOf(file).map((n) => ({ id: n.id, older: olderNested.get(n.path) }));
      return { objects: catalogObjectRefs(file, olderFile), nested };
    } finally {
      await rm(file, { force: true });
      if (olderFile !== undefined) await rm(olderFile, { force: true });
    }
  }

  /**
   * The replica's own copy of a catalog, verified and inflated into a temp file; undefined when the
   * replica does not have it (then every reference of the new catalog is looked up, which is only slower).
   */
  private async inflateLocal(id: ObjectId): Promise<string | undefined> {
    const key = objectKey(id, 'C');
    if (!(await this.copier.has(key))) return undefined;
    const stored = await this.store.get(key);
    const file = join(this.tmpDir, `older-${this.seq++}.sqlite`);
    await writeFile(file, decodeObjectBytes(stored, key, { compression: 'zlib', maxBytes: MAX_CATALOG_BYTES }));
    return file;
  }

  /** The history object chain (as far back as the source has it), then the catalogs of every tagged revision. */
  async historyAndTags(fields: ManifestFields): Promise<void> {
    if (fields.H === undefined) return;
    const tags = await this.historyChain(fields.H);
    const roots = new Map<string, ObjectId>();
    for (const t of tags) roots.set(formatObjectId(t.id), t.id);
    roots.delete(formatObjectId(fields.C));
    this.tagsWalked = roots.size;
    await this.all([...roots.values()].map((id) => this.catalogTree(id)));
  }

  /**
   * Copies history objects newest to oldest following `previous_revision`, stopping at one the replica
   * has (its predecessors were stored before it) or the source no longer has (garbage-collected).
   * Stores them oldest first, so a stored history object always has its available chain behind it.
   * Returns the newest history's tags.
   */
  private async historyChain(newest: ObjectId): Promise<Tag[]> {
    const fetched: { key: string; file: string }[] = [];
    let tags: Tag[] | undefined;
    let cur: ObjectId | undefined = newest;
    const seen = new Set<string>();
    while (cur !== undefined) {
      const key = objectKey(cur, 'H');
      if (seen.has(key) || seen.size >= MAX_HISTORY_CHAIN) {
        throw new GridboxError('HISTORY_INVALID', `Cannot follow the history chain of the source: ${q(key)} loops back or the chain is longer than ${MAX_HISTORY_CHAIN}`, { objectId: key });
      }
      seen.add(key);
      const first = tags === undefined;
      if (await this.copier.has(key)) {
        if (first) {
          const local = await this.store.get(key);
          verifyObjectBytes(local, cur, 'H');
          tags = (await this.readHistory(local, key)).tags;
        }
        this.copier.stats.present++;
        break;
      }
      let raw: Buffer;
      try {
        raw = await this.copier.fetch(cur, 'H');
      } catch (e) {
        if (!first && isMissingAtSource(e)) break;
        throw e;
      }
      const h = await this.readHistory(raw, key);
      tags ??= h.tags;
      const file = join(this.tmpDir, `${key}.raw`);
      await writeFile(file, raw);
      fetched.push({ key, file });
      cur = h.previous;
    }
    for (const { key, file } of fetched.reverse()) {
      await this.copier.put(key, await readFile(file));
      await rm(file, { force: true });
    }
    return tags ?? [];
  }

  private async readHistory(raw: Buffer, key: string): Promise<{ tags: Tag[]; previous?: ObjectId }> {
    const file = join(this.tmpDir, `history-${this.seq++}.sqlite`);
    await writeFile(file, decodeObjectBytes(raw, key, { compression: 'zlib', maxBytes: MAX_HISTORY_BYTES }));
    try {
      const db = openHistory(file);
      try {
        const prev = db.previousRevision;
        let previous: ObjectId | undefined;
        if (prev !== undefined && prev !== '') {
          try {
            previous = parseObjectId(prev);
          } catch (cause) {
            throw new GridboxError('HISTORY_INVALID', `Cannot follow history ${q(key)}: previous_revision ${q(prev)} is not a hash`, { objectId: key, cause });
          }
        }
        return { tags: db.listTags(), previous };
      } finally {
        db.close();
      }
    } finally {
      await rm(file, { force: true });
    }
  }
}
