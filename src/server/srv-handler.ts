// The HTTP face of a repository root: GET/HEAD for /cvmfs/<path> mapped onto DIR/srv/<path>, with
// CVMFS caching headers (spec §1.4), ETag/304, single ranges, and refusal of anything outside srv/.
// Read-only; it never lists directories and never writes. What it remembers between requests (resolved
// paths, small files' bytes) is checked against the file on every request (file-table.ts).
import { createReadStream, lstatSync, realpathSync } from 'node:fs';
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join, sep } from 'node:path';
import { ERROR_TABLE, GridboxError, q } from '../errors.js';
import { acceptFast } from './fast-path.js';
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
  /**
   * Answer plain GET/HEAD of /cvmfs/ paths on the connection itself, without node:http's per-request
   * objects (fast-path.ts); default true. false sends every request through node:http.
   */
  fastPath?: boolean;
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

export function etagMatches(header: string | undefined, etag: string): boolean {
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

function etagOf(v: FileVersion): string {
  // Size, mtime and inode rather than the object name: a repaired (replaced) object must not
  // revalidate as unchanged in a proxy that cached the broken copy.
  return `"${v.size.toString(16)}-${Math.floor(v.mtimeMs).toString(16)}-${v.ino.toString(16)}"`;
}

/** What a GET or HEAD of one URL path finds: a file version with its response headers, or an error. */
export type SrvLookup =
  | { ok: true; route: SrvRoute; v: FileVersion; headers: Record<string, string> }
  | { ok: false; error: unknown };

export interface SrvRoute { file: string; rel: string; cacheControl: string; type: string }

/** The files side of serving, shared by the node:http handler and the fast path (fast-path.ts). */
export interface SrvFiles {
  /** Resolves and opens `urlPath` (no query string); never throws. */
  lookup(urlPath: string): SrvLookup;
}

export function createSrvFiles(o: Pick<SrvHandlerOptions, 'srvDir' | 'memoryCacheBytes'>): SrvFiles {
  const table = new FileTable<SrvRoute>({ maxCachedBytes: o.memoryCacheBytes ?? DEFAULT_MEMORY_CACHE_BYTES });
  const resolver = new SrvResolver(o.srvDir);
  // The headers of a file version, made once per version rather than per request. Keyed by the route
  // too: two URL paths (a symlink inside srv/) may name one file with different caching rules.
  const made = new WeakMap<SrvRoute, { v: FileVersion; headers: Record<string, string> }>();

  const routeOf = (urlPath: string): SrvRoute => {
    const target = resolver.resolve(urlPath);
    const route = { ...target, ...cacheHeaders(target.rel) };
    table.rememberPath(urlPath, route);
    return route;
  };

  return {
    lookup(urlPath) {
      try {
        let route = table.lookupPath(urlPath);
        let v = route === undefined ? undefined : table.open(route.file);
        if (v === undefined) {
          // Not seen before, or its file went away or became a symlink since: resolve the path afresh.
          table.forgetPath(urlPath);
          route = routeOf(urlPath);
          v = table.open(route.file);
        }
        if (v === undefined || route === undefined) { table.forgetPath(urlPath); return { ok: false, error: new GridboxError('NOT_FOUND', `No such file ${q(urlPath)}`) }; }
        if (v === 'not-file') return { ok: false, error: new GridboxError('NOT_FOUND', `Not a file: ${q(route.rel)}`) };
        let m = made.get(route);
        if (m === undefined || m.v !== v) {
          m = { v, headers: { 'content-type': route.type, 'cache-control': route.cacheControl, etag: etagOf(v), 'last-modified': v.mtime.toUTCString(), 'accept-ranges': 'bytes' } };
          made.set(route, m);
        }
        return { ok: true, route, v, headers: m.headers };
      } catch (error) {
        return { ok: false, error };
      }
    },
  };
}

export function createSrvHandler(o: SrvHandlerOptions, files: SrvFiles = createSrvFiles(o)): RequestHandler {
  const onRequest = o.onRequest;

  const serve = (req: IncomingMessage, res: ServerResponse, urlPath: string, counted: { bytes: number }): void => {
    const found = files.lookup(urlPath);
    if (!found.ok) { sendError(res, found.error, counted); return; }
    const { route, v } = found;
    const headers: Record<string, string> = { ...found.headers };
    if (etagMatches(req.headers['if-none-match'], headers.etag)) { res.writeHead(304, headers).end(); return; }
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

/** The status, headers and body of an error answer (the same from node:http and the fast path). */
export function errorReply(e: unknown): { status: number; headers: Record<string, string>; body: string } {
  const status = e instanceof GridboxError ? ERROR_TABLE[e.code].http : 500;
  const body = `${status === 404 ? 'Not Found' : status === 403 ? 'Forbidden' : 'Error'}\n`;
  return { status, body, headers: { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' } };
}

/** A fast-path answer (fast-path.ts writes it): the same status, headers and body node:http would send. */
export interface RawAnswer {
  status: number;
  /** Status line and headers as node:http writes them, without Date, Connection and the blank line. */
  head: Buffer;
  /** The body, when it is in memory (absent for HEAD). */
  body?: Buffer;
  /** A file to stream as the body, `length` bytes from its start, when it is not in memory (absent for HEAD). */
  file?: string;
  length: number;
  /** Body bytes as logs and metrics count them (node:http's path counts an error body even for HEAD). */
  bytes: number;
}

export type RawAnswerer = (headOnly: boolean, urlPath: string, ifNoneMatch: string | undefined) => RawAnswer;

/** Serializes a status and headers the way ServerResponse.writeHead does (names as given, in order). */
function rawHead(status: number, headers: Record<string, string>): Buffer {
  let text = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\n`;
  for (const [k, v] of Object.entries(headers)) text += `${k}: ${v}\r\n`;
  return Buffer.from(text, 'latin1');
}

/** The fast path's view of `files`: whole answers with their header bytes made once per file version. */
export function createRawAnswerer(files: SrvFiles): RawAnswerer {
  const heads = new WeakMap<Record<string, string>, Buffer>();
  return (headOnly, urlPath, ifNoneMatch) => {
    const found = files.lookup(urlPath);
    if (!found.ok) {
      const r = errorReply(found.error);
      const body = Buffer.from(r.body);
      return { status: r.status, head: rawHead(r.status, r.headers), body: headOnly ? undefined : body, length: body.length, bytes: body.length };
    }
    if (etagMatches(ifNoneMatch, found.headers.etag)) return { status: 304, head: rawHead(304, found.headers), length: 0, bytes: 0 };
    const { v } = found;
    let head = heads.get(found.headers);
    if (head === undefined) { head = rawHead(200, { ...found.headers, 'content-length': String(v.size) }); heads.set(found.headers, head); }
    if (headOnly || v.size === 0) return { status: 200, head, length: v.size, bytes: 0 };
    if (v.body !== undefined) return { status: 200, head, body: v.body, length: v.size, bytes: v.size };
    return { status: 200, head, file: found.route.file, length: v.size, bytes: v.size };
  };
}

function sendError(res: ServerResponse, e: unknown, counted?: { bytes: number }): void {
  const r = errorReply(e);
  if (counted !== undefined) counted.bytes = r.body.length;
  res.writeHead(r.status, r.headers).end(r.body);
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
  const files = createSrvFiles(o);
  const server = createServer(createSrvHandler(o, files));
  // Every connection, fast or handed to node:http, so close() ends them all.
  const sockets = new Set<Socket>();
  const track = (socket: Socket): void => { sockets.add(socket); socket.once('close', () => sockets.delete(socket)); };
  if (o.fastPath === false) {
    server.prependListener('connection', track);
  } else {
    // The fast path takes node:http's place as the connection listener and calls it for what it hands over.
    const httpListeners = server.listeners('connection') as ((socket: Socket) => void)[];
    server.removeAllListeners('connection');
    const answer = createRawAnswerer(files);
    server.on('connection', (socket: Socket) => {
      track(socket);
      acceptFast(socket, {
        answer, onRequest: o.onRequest, keepAliveTimeoutMs: server.keepAliveTimeout,
        handOff: (s) => { for (const l of httpListeners) l.call(server, s); },
      });
    });
  }
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, host, () => { server.off('error', reject); resolve(); }); });
  const addr = server.address() as AddressInfo;
  const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server, port: addr.port, url: `http://${h}:${addr.port}${URL_PREFIX}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
      for (const s of sockets) s.destroy();
    }),
  };
}
