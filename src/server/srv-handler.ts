// The HTTP face of a repository root: GET/HEAD for /cvmfs/<path> mapped onto DIR/srv/<path>, with
// CVMFS caching headers (spec §1.4), ETag/304, single ranges, and refusal of anything outside srv/.
// Read-only and stateless; it never lists directories and never writes.
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, sep } from 'node:path';
import { ERROR_TABLE, GridboxError, q } from '../errors.js';

/** Seconds a short-lived file (manifest, whitelist, JSON) may be cached: Apache's CVMFS config uses 61. */
export const SHORT_MAX_AGE_S = 61;
/** Content-addressed objects never change; 3 days as the stock Apache config, marked immutable. */
export const LONG_MAX_AGE_S = 3 * 24 * 3600;
const URL_PREFIX = '/cvmfs/';

export interface SrvHandlerOptions {
  /** The directory served as /cvmfs/ (a repository root's srv/). */
  srvDir: string;
  /** Called once per request after the response ends, for logs and tests. */
  onRequest?: (info: { method: string; url: string; status: number; bytes: number }) => void;
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** Resolves a request path to a file under srvDir, or throws SERVER_FORBIDDEN_PATH / NOT_FOUND. */
export async function resolveSrvPath(srvDir: string, rawPath: string): Promise<{ file: string; rel: string }> {
  const forbidden = (why: string): GridboxError => new GridboxError('SERVER_FORBIDDEN_PATH', `Refusing ${q(rawPath)}: ${why}`, { path: rawPath });
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
  const root = await realpath(srvDir);
  let file: string;
  try {
    file = await realpath(join(root, ...segments));
  } catch {
    throw new GridboxError('NOT_FOUND', `No such file ${q(rel)}`, { path: rawPath });
  }
  if (file !== root && !file.startsWith(root + sep)) throw forbidden('resolves outside the served tree');
  return { file, rel };
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

export function createSrvHandler(o: SrvHandlerOptions): RequestHandler {
  return (req, res) => {
    let bytes = 0;
    res.on('finish', () => o.onRequest?.({ method: req.method ?? '', url: req.url ?? '', status: res.statusCode, bytes }));
    void (async () => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-length': '0' }).end();
        return;
      }
      const rawUrl = req.url ?? '/';
      if (rawUrl.includes('\0')) { sendError(res, new GridboxError('SERVER_FORBIDDEN_PATH', 'Refusing a path with NUL')); return; }
      let target: { file: string; rel: string };
      try { target = await resolveSrvPath(o.srvDir, rawUrl); } catch (e) { sendError(res, e); return; }
      const st = await stat(target.file);
      if (!st.isFile()) { sendError(res, new GridboxError('NOT_FOUND', `Not a file: ${q(target.rel)}`)); return; }
      const { cacheControl, type } = cacheHeaders(target.rel);
      // Size, mtime and inode rather than the object name: a repaired (replaced) object must not
      // revalidate as unchanged in a proxy that cached the broken copy.
      const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}-${st.ino.toString(16)}"`;
      const headers: Record<string, string> = {
        'content-type': type, 'cache-control': cacheControl, etag, 'last-modified': st.mtime.toUTCString(), 'accept-ranges': 'bytes',
      };
      if (etagMatches(req.headers['if-none-match'], etag)) { res.writeHead(304, headers).end(); return; }
      const range = parseRange(req.headers.range, st.size);
      if (range === null) { res.writeHead(416, { ...headers, 'content-range': `bytes */${st.size}`, 'content-length': '0' }).end(); return; }
      const start = range?.start ?? 0;
      const end = range?.end ?? st.size - 1;
      const length = st.size === 0 ? 0 : end - start + 1;
      headers['content-length'] = String(length);
      if (range) headers['content-range'] = `bytes ${start}-${end}/${st.size}`;
      res.writeHead(range ? 206 : 200, headers);
      if (req.method === 'HEAD' || length === 0) { res.end(); return; }
      const stream = createReadStream(target.file, { start, end });
      stream.on('data', (c) => { bytes += c.length; });
      stream.on('error', () => res.destroy());
      stream.pipe(res);
    })().catch((e: unknown) => { if (!res.headersSent) sendError(res, e); else res.destroy(); });
  };
}

function sendError(res: ServerResponse, e: unknown): void {
  const status = e instanceof GridboxError ? ERROR_TABLE[e.code].http : 500;
  const body = `${status === 404 ? 'Not Found' : status === 403 ? 'Forbidden' : 'Error'}\n`;
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
