// The HTTP face of a repository root: GET/HEAD for /cvmfs/<path> mapped onto DIR/srv/<path>, with
// CVMFS caching headers (spec §1.4), ETag/304, single ranges, and refusal of anything outside srv/.
// Read-only; it never lists directories and never writes. What it remembers between requests (resolved
// paths, small files' bytes) is checked against the file on every request (file-table.ts).
import { createReadStream, lstatSync, realpathSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, sep } from 'node:path';
import { ERROR_TABLE, GridboxError, q } from '../errors.js';
import { FileTable, type FileVersion } from './file-table.js';

/** Seconds a short-lived file (manifest, whitelist, JSON) may be cached: Apache's CVMFS config uses 61. */
export const SHORT_MAX_AGE_S = 61;
/** Content-addressed objects never change; 3 days as the stock Apache config, marked immutable. */
export const LONG_MAX_AGE_S = 3 * 24 * 3600;
const URL_PREFIX = '/cvmfs/';

export interface SrvHandlerOptions {
  /** The directory served as /cvmfs/ (a repository root's srv/). */
  srvDir: string;
  /** Called once per request after the response ends, for logs, metrics and tests. */
  onRequest?: (info: RequestInfo) => void;
  /** Bytes of small files kept in memory across requests (default DEFAULT_MEMORY_CACHE_BYTES); 0 keeps none. */
  memoryCacheBytes?: number;
  /** Answers requests outside /cvmfs/ (such as /metrics) before the file routes; true when it answered. */
  extraRoute?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

export interface RequestInfo {
  method: string;
  url: string;
  status: number;
  /** Body bytes sent. */
  bytes: number;
  /** From the request's arrival to the last byte handed to the kernel. */
  seconds: number;
  remote?: string;
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** Directories whose real paths a resolver remembers at most (a repository has a few hundred). */
export const MAX_RESOLVED_DIRS = 100_000;

/**
 * Maps request paths to files under srvDir, or throws SERVER_FORBIDDEN_PATH / NOT_FOUND. Each directory's
 * real path is found once (realpath) and remembered; a file is then one lstat, with a full realpath only
 * when it is itself a symlink. Remembered paths trust that nobody swaps a directory inside srv/ for a
 * symlink while serving: whoever can do that controls what is served anyway.
 */
export class SrvResolver {
  private root: string | undefined;
  private readonly dirs = new Map<string, string>();

  constructor(private readonly srvDir: string) {}

  resolve(rawPath: string): { file: string; rel: string } {
    const forbidden = (why: string): GridboxError => new GridboxError('SERVER_FORBIDDEN_PATH', `Refusing ${q(rawPath)}: ${why}`, { path: rawPath });
    const missing = (): GridboxError => new GridboxError('NOT_FOUND', `No such file ${q(rawPath)}`, { path: rawPath });
    const pathOnly = rawPath.split('?')[0];
    if (!pathOnly.startsWith(URL_PREFIX)) throw new GridboxError('NOT_FOUND', `Not below ${URL_PREFIX}: ${q(rawPath)}`, { path: rawPath });
    const segments: string[] = [];
    for (const raw of pathOnly.slice(URL_PREFIX.length).split('/')) {
      let seg: string;
      try { seg = decodeURIComponent(raw); } catch { throw forbidden('bad percent-encoding'); }
      if (seg === '' ) throw forbidden('empty path segment');
      if (seg === '.' || seg === '..') throw forbidden('dot segment');
      if (/[\0/\\]/.test(seg)) throw forbidden('separator or NUL inside a segment');
      segments.push(seg);
    }
    const rel = segments.join('/');
    if (/(^|\/)data\/txn(\/|$)/.test(rel)) throw forbidden('publisher staging area');
    const root = this.root ??= realpathSync.native(this.srvDir);
    const inside = (p: string): boolean => p === root || p.startsWith(root + sep);
    const dirRel = segments.slice(0, -1).join('/');
    let dir = this.dirs.get(dirRel);
    if (dir === undefined) {
      try { dir = realpathSync.native(join(root, ...segments.slice(0, -1))); } catch { throw missing(); }
      if (!inside(dir)) throw forbidden('resolves outside the served tree');
      if (this.dirs.size >= MAX_RESOLVED_DIRS) this.dirs.clear();
      this.dirs.set(dirRel, dir);
    }
    let file = join(dir, segments[segments.length - 1]);
    const st = lstatSync(file, { throwIfNoEntry: false });
    if (st === undefined) throw missing();
    if (st.isSymbolicLink()) {
      try { file = realpathSync.native(file); } catch { throw missing(); }
      if (!inside(file)) throw forbidden('resolves outside the served tree');
    }
    return { file, rel };
  }
}

/** One-shot form of SrvResolver.resolve. */
export async function resolveSrvPath(srvDir: string, rawPath: string): Promise<{ file: string; rel: string }> {
  return new SrvResolver(srvDir).resolve(rawPath);
}

function cacheHeaders(rel: string): { cacheControl: string; type: string } {
  const base = rel.split('/').pop() ?? '';
  const immutable = /(^|\/)data\/[0-9a-f]{2}\//.test(rel) || base.startsWith('.cvmfsalt-');
  if (immutable) return { cacheControl: `public, max-age=${LONG_MAX_AGE_S}, immutable`, type: 'application/octet-stream' };
  if (base.startsWith('.cvmfs')) return { cacheControl: `public, max-age=${SHORT_MAX_AGE_S}`, type: 'application/x-cvmfs' };
  if (base.endsWith('.json')) return { cacheControl: `public, max-age=${SHORT_MAX_AGE_S}`, type: 'application/json' };
  return { cacheControl: `public, max-age=${SHORT_MAX_AGE_S}`, type: 'application/octet-stream' };
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((t) => { const v = t.trim().replace(/^W\//, ''); return v === '*' || v === etag; });
}

/** Parses "bytes=a-b" (one range only); undefined means serve the whole file, null means unsatisfiable. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number, end: number;
  if (m[1] === '') { start = Math.max(0, size - Number(m[2])); end = size - 1; } else { start = Number(m[1]); end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1); }
  if (start >= size || start > end) return null;
  return { start, end };
}

/** Bytes of small files a handler keeps in memory by default (a CernVM-FS working set is many small objects). */
export const DEFAULT_MEMORY_CACHE_BYTES = 64 << 20;

interface Route { file: string; rel: string; cacheControl: string; type: string }

function etagOf(v: FileVersion): string {
  // Size, mtime and inode rather than the object name: a repaired (replaced) object must not
  // revalidate as unchanged in a proxy that cached the broken copy.
  return `"${v.size.toString(16)}-${Math.floor(v.mtimeMs).toString(16)}-${v.ino.toString(16)}"`;
}

export function createSrvHandler(o: SrvHandlerOptions): RequestHandler {
  const table = new FileTable<Route>({ maxCachedBytes: o.memoryCacheBytes ?? DEFAULT_MEMORY_CACHE_BYTES });
  const resolver = new SrvResolver(o.srvDir);
  // The ETag and Last-Modified strings of a file version, made once per version rather than per request.
  const tags = new WeakMap<FileVersion, { etag: string; lastModified: string }>();
  const onRequest = o.onRequest;

  const routeOf = (urlPath: string): Route => {
    const target = resolver.resolve(urlPath);
    const route = { ...target, ...cacheHeaders(target.rel) };
    table.rememberPath(urlPath, route);
    return route;
  };

  const serve = (req: IncomingMessage, res: ServerResponse, urlPath: string, counted: { bytes: number }): void => {
    let route = table.lookupPath(urlPath);
    let v = route === undefined ? undefined : table.open(route.file);
    if (v === undefined) {
      // Not seen before, or its file went away or became a symlink since: resolve the path afresh.
      table.forgetPath(urlPath);
      route = routeOf(urlPath);
      v = table.open(route.file);
    }
    if (v === undefined || route === undefined) { table.forgetPath(urlPath); sendError(res, new GridboxError('NOT_FOUND', `No such file ${q(urlPath)}`), counted); return; }
    if (v === 'not-file') { sendError(res, new GridboxError('NOT_FOUND', `Not a file: ${q(route.rel)}`), counted); return; }
    let t = tags.get(v);
    if (t === undefined) { t = { etag: etagOf(v), lastModified: v.mtime.toUTCString() }; tags.set(v, t); }
    const headers: Record<string, string> = {
      'content-type': route.type, 'cache-control': route.cacheControl, etag: t.etag, 'last-modified': t.lastModified, 'accept-ranges': 'bytes',
    };
    if (etagMatches(req.headers['if-none-match'], t.etag)) { res.writeHead(304, headers).end(); return; }
    const range = parseRange(req.headers.range, v.size);
    if (range === null) { res.writeHead(416, { ...headers, 'content-range': `bytes */${v.size}`, 'content-length': '0' }).end(); return; }
    const start = range?.start ?? 0;
    const end = range?.end ?? v.size - 1;
    const length = v.size === 0 ? 0 : end - start + 1;
    headers['content-length'] = String(length);
    if (range) headers['content-range'] = `bytes ${start}-${end}/${v.size}`;
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === 'HEAD' || length === 0) { res.end(); return; }
    if (v.body !== undefined) {
      counted.bytes = length;
      res.end(range ? v.body.subarray(start, end + 1) : v.body);
      return;
    }
    const stream = createReadStream(route.file, { start, end });
    stream.on('data', (c) => { counted.bytes += c.length; });
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  };

  return (req, res) => {
    const counted = { bytes: 0 };
    if (onRequest !== undefined) {
      const t0 = process.hrtime.bigint();
      res.once('finish', () => onRequest({
        method: req.method ?? '', url: req.url ?? '', status: res.statusCode, bytes: counted.bytes,
        seconds: Number(process.hrtime.bigint() - t0) / 1e9, remote: req.socket.remoteAddress,
      }));
    }
    try {
      if (o.extraRoute?.(req, res)) return;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-length': '0' }).end();
        return;
      }
      const rawUrl = req.url ?? '/';
      if (rawUrl.includes('\0')) { sendError(res, new GridboxError('SERVER_FORBIDDEN_PATH', 'Refusing a path with NUL'), counted); return; }
      const qm = rawUrl.indexOf('?');
      const urlPath = qm < 0 ? rawUrl : rawUrl.slice(0, qm);
      serve(req, res, urlPath, counted);
    } catch (e) {
      if (!res.headersSent) sendError(res, e, counted); else res.destroy();
    }
  };
}

function sendError(res: ServerResponse, e: unknown, counted?: { bytes: number }): void {
  const status = e instanceof GridboxError ? ERROR_TABLE[e.code].http : 500;
  const body = `${status === 404 ? 'Not Found' : status === 403 ? 'Forbidden' : 'Error'}\n`;
  if (counted !== undefined) counted.bytes = body.length;
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' }).end(body);
}

export interface RunningServer {
  server: Server;
  /** e.g. "http://127.0.0.1:8000/cvmfs/" */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Listens on host:port (port 0 picks a free one) and serves srvDir as /cvmfs/. */
export async function listenSrv(o: SrvHandlerOptions, host = '127.0.0.1', port = 0): Promise<RunningServer> {
  const server = createServer(createSrvHandler(o));
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, host, () => { server.off('error', reject); resolve(); }); });
  const addr = server.address() as AddressInfo;
  const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server, port: addr.port, url: `http://${h}:${addr.port}${URL_PREFIX}`,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}
