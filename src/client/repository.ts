// A repository session (spec §7.3, §7.4): bootstrap from the breadcrumb and a verified manifest, the root
// catalog fetched into the cache and pinned, the TTL-driven revision check that swaps in a newer catalog
// tree, refusal of older manifests (MANIFEST_OUTDATED), and offline mode from cached catalogs.
// Signature checks are the trust port's (manifest/trust.ts), downloads the source's; this file sequences them.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GridboxError, isGridboxError, q } from '../errors.js';
import { writeFileAtomic } from '../plumbing/atomic-write.js';
import { formatObjectId, objectKey, type ObjectId } from '../hash/object-id.js';
import type { NestedCatalogRef } from '../catalog/types.js';
import { formatBreadcrumb, parseBreadcrumb, type Breadcrumb } from '../manifest/manifest.js';
import { CatalogTree, InodeAllocator } from './catalog-tree.js';
import type { Fetcher } from './fetcher.js';
import type { ObjectCache } from '../cache/object-cache.js';
import type { CatalogFile, OpenCatalog, RepositorySource } from './ports.js';

/** Catalog default when the root has no TTL property (Catalog::kDefaultTTL). */
export const DEFAULT_TTL_MS = 240_000;
/** How long a replaced revision's catalogs stay open for operations that started on it. */
export const RETIRE_GRACE_MS = 10_000;
/** Retry period after a failed revision check (kShortTermTTL). */
export const OFFLINE_RETRY_MS = 180_000;

/** What the client needs from a manifest. */
export interface ManifestInfo {
  rootId: ObjectId;
  revision: number;
  /** Publish time `T`, Unix seconds (0 when absent). */
  timestamp: number;
  /** Certificate object `X`. */
  certId?: ObjectId;
}

/** The manifest/ side: parse a manifest, and verify manifest + whitelist + certificate against master keys. */
export interface TrustPort {
  parseManifest(bytes: Buffer): ManifestInfo;
  /** Throws MANIFEST_... or WHITELIST_... errors; returning means verified. */
  verify(input: { fqrn: string; manifestBytes: Buffer; whitelistBytes: Buffer; certPem: string; masterPublicKeysPem: string[]; now: Date }): void;
}

export interface RepositoryOptions {
  fqrn: string;
  source: RepositorySource;
  cache: ObjectCache;
  /** Where the breadcrumb lives: the cache directory. */
  cacheDir: string;
  fetcher: Fetcher;
  trust: TrustPort;
  openCatalog: OpenCatalog;
  masterPublicKeysPem: string[];
  /** CVMFS_MAX_TTL caps the catalog TTL. */
  maxTtlMs?: number;
  now?: () => number;
  log?: (line: string) => void;
}

export interface UpdateResult {
  updated: boolean;
  revision: number;
  /** Why the check failed (the session is then offline). */
  error?: unknown;
}

function sameId(a: ObjectId, b: ObjectId): boolean {
  return a.hex === b.hex && a.algorithm === b.algorithm;
}

/** Download failures that mean "no server answered", as opposed to a server answering wrongly. */
function isUnreachable(e: unknown): boolean {
  return e instanceof GridboxError && e.code.startsWith('DOWNLOAD_');
}

export class RepositorySession {
  private current!: { tree: CatalogTree; rootId: ObjectId; revision: number; timestamp: number; pinned: Map<string, ObjectId> };
  private readonly alloc = new InodeAllocator();
  private readonly now: () => number;
  private checkDueAt = 0;
  private readonly retiring = new Map<RepositorySession['current'], NodeJS.Timeout>();
  private checking: Promise<UpdateResult> | undefined;
  /** A root catalog download started before its manifest was verified (fetchVerifiedManifest), for loadCatalog. */
  private earlyRoot: { id: ObjectId; path: Promise<string> } | undefined;
  /** True while the last contact with the servers failed; the session serves what it has. */
  offline = false;
  lastError: unknown;

  private constructor(private readonly o: RepositoryOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Bootstraps a session (§7.3); falls back to the breadcrumb's revision when no server is reachable. */
  static async open(o: RepositoryOptions): Promise<RepositorySession> {
    const s = new RepositorySession(o);
    const crumb = await s.readBreadcrumb();
    let manifest: ManifestInfo;
    try {
      manifest = await s.fetchVerifiedManifest(crumb);
    } catch (e) {
      if (!isUnreachable(e) || crumb === undefined) throw e;
      // Every server is down: serve the revision the breadcrumb names, if its catalog is still cached.
      s.offline = true;
      s.lastError = e;
      o.log?.(`${o.fqrn}: servers unreachable, starting offline at revision ${crumb.revision}`);
      const rootId = crumb.catalogHash;
      const cached = await o.cache.lookup(rootId);
      await cached?.close();
      if (cached === null) {
        throw new GridboxError('DOWNLOAD_ALL_FAILED', `Cannot start ${q(o.fqrn)} offline: root catalog ${q(formatObjectId(rootId))} is not in the cache`, { cause: e });
      }
      await s.install({ rootId, revision: crumb.revision, timestamp: crumb.timestamp });
      s.checkDueAt = s.now() + OFFLINE_RETRY_MS;
      return s;
    }
    await s.install(manifest);
    await s.writeBreadcrumb();
    s.checkDueAt = s.now() + s.ttlMs();
    return s;
  }

  get fqrn(): string { return this.o.fqrn; }
  get tree(): CatalogTree { return this.current.tree; }
  get revision(): number { return this.current.revision; }
  get rootHash(): string { return formatObjectId(this.current.rootId); }
  get timestamp(): number { return this.current.timestamp; }
  /** When the next revision check is due (ms since the epoch). */
  get nextCheckAt(): number { return this.checkDueAt; }

  /** Effective TTL: the root catalog's TTL property (default 240 s), capped by maxTtlMs (§7.4). */
  ttlMs(): number {
    const raw = this.current.tree.rootFile.properties.ttl;
    const ttl = typeof raw === 'number' && Number.isFinite(raw) && raw > 0 ? raw * 1000 : DEFAULT_TTL_MS;
    return this.o.maxTtlMs !== undefined && this.o.maxTtlMs > 0 ? Math.min(ttl, this.o.maxTtlMs) : ttl;
  }

  /** Runs checkForUpdate when the TTL (or the offline retry period) has run out; cheap otherwise. */
  async maybeCheckForUpdate(): Promise<UpdateResult | undefined> {
    if (this.now() < this.checkDueAt) return undefined;
    return this.checkForUpdate();
  }

  /**
   * Fetches and verifies the manifest; a newer signed revision replaces the catalog tree. Any failure
   * keeps the current revision, marks the session offline and schedules a retry after 180 s.
   * Concurrent calls share one check.
   */
  checkForUpdate(): Promise<UpdateResult> {
    this.checking ??= this.doCheck().finally(() => { this.checking = undefined; });
    return this.checking;
  }

  private async doCheck(): Promise<UpdateResult> {
    const cur = this.current;
    try {
      const m = await this.fetchVerifiedManifest({ catalogHash: cur.rootId, timestamp: cur.timestamp, revision: cur.revision });
      this.offline = false;
      this.lastError = undefined;
      if (m.rootId.hex === cur.rootId.hex && m.rootId.algorithm === cur.rootId.algorithm) {
        this.checkDueAt = this.now() + this.ttlMs();
        return { updated: false, revision: cur.revision };
      }
      if (m.revision <= cur.revision) {
        throw new GridboxError('MANIFEST_OUTDATED', `Refusing manifest of ${q(this.o.fqrn)}: revision ${m.revision} with a new root catalog is not newer than revision ${cur.revision}`);
      }
      await this.install(m);
      await this.writeBreadcrumb();
      this.checkDueAt = this.now() + this.ttlMs();
      // Open files hold their own handles; operations still walking the old tree get a grace period
      // before its catalogs are closed and unpinned.
      this.retireLater(cur);
      this.o.log?.(`${this.o.fqrn}: now at revision ${m.revision}`);
      return { updated: true, revision: m.revision };
    } catch (e) {
      this.offline = true;
      this.lastError = e;
      this.checkDueAt = this.now() + OFFLINE_RETRY_MS;
      this.o.log?.(`${this.o.fqrn}: revision check failed, staying at revision ${cur.revision}: ${(e as Error).message}`);
      return { updated: false, revision: cur.revision, error: e };
    }
  }

  async close(): Promise<void> {
    for (const [state, timer] of this.retiring) { clearTimeout(timer); await this.retire(state); }
    this.retiring.clear();
    if (this.current !== undefined) await this.retire(this.current);
  }

  private retireLater(state: RepositorySession['current']): void {
    const timer = setTimeout(() => {
      this.retiring.delete(state);
      this.retire(state).catch((e: unknown) => this.o.log?.(`${this.o.fqrn}: closing old catalogs failed: ${(e as Error).message}`));
    }, RETIRE_GRACE_MS);
    timer.unref();
    this.retiring.set(state, timer);
  }

  /** §3.4: download, parse, refuse older than `seen`, fetch the certificate, verify signatures and whitelist. */
  private async fetchVerifiedManifest(seen: Breadcrumb | undefined): Promise<ManifestInfo> {
    const { fqrn, source, trust } = this.o;
    // The whitelist does not depend on the manifest: both downloads run at once (one round trip, not two).
    const whitelist = source.fetchFile('.cvmfswhitelist');
    whitelist.catch(() => undefined);
    const manifestBytes = await source.fetchFile('.cvmfspublished');
    const m = trust.parseManifest(manifestBytes);
    if (seen !== undefined && (m.timestamp < seen.timestamp || m.revision < seen.revision)) {
      throw new GridboxError('MANIFEST_OUTDATED',
        `Refusing manifest of ${q(fqrn)}: revision ${m.revision} published at ${m.timestamp} is older than revision ${seen.revision} published at ${seen.timestamp}, already seen`);
    }
    if (m.certId === undefined) throw new GridboxError('MANIFEST_INVALID', `Manifest of ${q(fqrn)} names no certificate (X)`);
    // A new root catalog is downloaded while the signatures are checked: objects are content-addressed and
    // verified against their own hash, so fetching one early trusts nothing; it is opened only after verify().
    if (this.current === undefined || !sameId(this.current.rootId, m.rootId)) {
      this.earlyRoot = { id: m.rootId, path: this.o.fetcher.objectPath(m.rootId, 'C', 'zlib') };
      this.earlyRoot.path.catch(() => undefined);
    }
    const [cert, whitelistBytes] = await Promise.all([this.o.fetcher.objectBytes(m.certId, 'X', 'zlib'), whitelist]);
    const certPem = cert.toString('utf8');
    trust.verify({ fqrn, manifestBytes, whitelistBytes, certPem, masterPublicKeysPem: this.o.masterPublicKeysPem, now: new Date(this.now()) });
    return m;
  }

  /** Fetches (or finds) the root catalog, pins it and makes it current. */
  private async install(m: ManifestInfo): Promise<void> {
    const pinned = new Map<string, ObjectId>();
    const rootFile = await this.loadCatalog(m.rootId, pinned, '');
    const tree = new CatalogTree(rootFile, (ref: NestedCatalogRef) => this.loadCatalog(ref.id, pinned, ref.path), this.alloc, { fqrn: this.o.fqrn });
    this.current = { tree, rootId: m.rootId, revision: m.revision, timestamp: m.timestamp, pinned };
  }

  private async loadCatalog(id: ObjectId, pinned: Map<string, ObjectId>, mountpoint: string): Promise<CatalogFile> {
    const key = objectKey(id, 'C');
    // Catalogs are fetched with no size check (§7.5); the hash over the compressed bytes is checked.
    pinned.set(key, id);
    const early = this.earlyRoot !== undefined && sameId(this.earlyRoot.id, id) ? this.earlyRoot.path : undefined;
    this.earlyRoot = undefined;
    const path = await (early ?? this.o.fetcher.objectPath(id, 'C', 'zlib'));
    try {
      return this.o.openCatalog(path);
    } catch (e) {
      if (isGridboxError(e)) throw e;
      throw new GridboxError('CATALOG_INVALID', `Cannot open catalog ${q(key)} of ${q(mountpoint || '/')}`, { objectId: key, cause: e });
    }
  }

  private async retire(state: RepositorySession['current']): Promise<void> {
    await state.tree.close();
    for (const [key, id] of state.pinned) {
      if (this.current !== state && this.current.pinned.has(key)) continue;
      this.o.cache.unpin(id);
    }
  }

  private breadcrumbPath(): string {
    return join(this.o.cacheDir, `cvmfschecksum.${this.o.fqrn}`);
  }

  private async readBreadcrumb(): Promise<Breadcrumb | undefined> {
    try {
      return parseBreadcrumb(await readFile(this.breadcrumbPath(), 'utf8'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new GridboxError('CACHE_IO', `Cannot read breadcrumb ${q(this.breadcrumbPath())}`, { cause: e });
    }
  }

  private async writeBreadcrumb(): Promise<void> {
    const c = this.current;
    const path = this.breadcrumbPath();
    try {
      await writeFileAtomic(path, formatBreadcrumb({ catalogHash: c.rootId, timestamp: c.timestamp, revision: c.revision }));
    } catch (e) {
      throw new GridboxError('CACHE_IO', `Cannot write breadcrumb ${q(path)}`, { cause: e });
    }
  }
}
