// The concrete collaborators of a client: the downloader (download/), the posix cache with its LRU quota
// (cache/), the SQLite catalog reader (catalog/) and the manifest/whitelist trust check (manifest/),
// adapted to the client's ports. Takes settings and a cache directory; reads no config or environment.
import { basename, dirname } from 'node:path';
import { ObjectCache } from '../cache/object-cache.js';
import { openCatalog } from '../catalog/catalog-reader.js';
import { Downloader } from '../download/downloader.js';
import { parseSignedManifest } from '../manifest/manifest.js';
import { verifyRepositoryTrust } from '../manifest/trust.js';
import type { ClientSettings } from './client-config.js';
import type { OpenCatalog, RepositorySource } from './ports.js';
import type { ManifestInfo, TrustPort } from './repository.js';

/** Manifest fields the session needs, from the signed manifest parser. */
export function manifestInfoOf(bytes: Buffer): ManifestInfo {
  const f = parseSignedManifest(bytes).fields;
  return { rootId: f.C, revision: f.S, timestamp: f.T ?? 0, certId: f.X };
}

export const defaultTrust: TrustPort = {
  parseManifest: manifestInfoOf,
  verify: (input) => { verifyRepositoryTrust(input); },
};

/** A RepositorySource over the downloader, with the host and proxy in use for status and xattrs. */
export function downloaderSource(d: Downloader): RepositorySource {
  return {
    fetchFile: (rel) => d.fetchFile(rel),
    fetchObjectTo: (id, suffix, opts, open) => d.fetchObjectTo(id, suffix, opts, open),
    wireBytes: () => d.status().counters.bytes,
    downloadCounters: () => { const s = d.status(); return { hostFailovers: s.counters.hostFailovers, proxyFailovers: s.counters.proxyFailovers, hostErrors: d.hostErrorCounts() }; },
    currentHost: () => d.status().host,
    currentProxy: () => d.status().proxy,
  };
}

/**
 * `source` with downloads of `files` started now: the first fetchFile of each gets that download (a later
 * one fetches again, so a revision check never sees a stale copy). A failure surfaces at that first fetch.
 */
export function earlyFetched(source: RepositorySource, files: readonly string[]): RepositorySource {
  const started = new Map<string, Promise<Buffer>>();
  for (const f of files) {
    const p = source.fetchFile(f);
    p.catch(() => undefined);
    started.set(f, p);
  }
  return {
    ...source,
    fetchFile: (rel) => {
      const p = started.get(rel);
      if (p === undefined) return source.fetchFile(rel);
      started.delete(rel);
      return p;
    },
  };
}

export interface DefaultDeps {
  source: RepositorySource;
  cache: ObjectCache;
  openCatalog: OpenCatalog;
  trust: TrustPort;
  log?: (line: string) => void;
  onClose: (o?: { exiting?: boolean }) => Promise<void>;
}

/** Everything createClient needs except the master keys. */
export async function createClientDeps(settings: ClientSettings, o: { cacheDir: string; log?: (line: string) => void }): Promise<DefaultDeps> {
  const downloader = new Downloader({
    serverUrls: settings.serverUrls, proxyGroups: settings.proxyGroups, timeoutMs: settings.timeoutMs,
    timeoutDirectMs: settings.timeoutDirectMs, maxRetries: settings.maxRetries,
    backoffInitMs: settings.backoffInitMs, backoffMaxMs: settings.backoffMaxMs,
    hostOrder: settings.hostOrder, proxyShard: settings.proxyShard,
    // Content objects on a C thread (libcurl, hash, inflate, the cache file): a client reads many of them.
    nativeFetch: true,
    // A capped TTL also caps how old a manifest a proxy may hand out, or the cap would not hold behind squid.
    fileMaxAgeS: settings.maxTtlMs === undefined || settings.maxTtlMs <= 0 ? undefined : Math.max(1, Math.floor(settings.maxTtlMs / 1000)),
  });
  // The session's first requests go out before the cache (and its SQLite ledger) is opened, so the two overlap.
  const source = earlyFetched(downloaderSource(downloader), ['.cvmfspublished', '.cvmfswhitelist']);
  let cache: ObjectCache;
  try {
    cache = await ObjectCache.openDir(dirname(o.cacheDir), basename(o.cacheDir), settings.quotaLimitBytes);
  } catch (e) {
    await downloader.close();
    throw e;
  }
  return {
    // Catalogs in the client cache are content-addressed: never rewritten in place, so opened as immutable.
    source, cache, openCatalog: (file) => openCatalog(file, { immutable: true }), trust: defaultTrust, log: o.log,
    onClose: async (o) => { cache.close(o); await downloader.close(); },
  };
}
