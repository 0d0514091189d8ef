// The accounting's two HTTP exchanges (report --post, report --server) with `gridbox serve --accounting-db`: a JSON POST and a GET.
// On Node's own http (not undici or fetch, whose WebAssembly parser fails under a site's `ulimit -v`).
// Bodies are bounded: an answer longer than MAX_ANSWER_BYTES is an error, not a memory hazard.
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import { tlsTrustOptions } from '../plumbing/extra-ca.js';

export const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

export interface TextAnswer { status: number; headers: IncomingHttpHeaders; text: string }

/** One request with an optional body; `timeoutMs` bounds each wait for the socket (connect, headers, body gaps). */
export function exchangeText(url: string, o: { method?: 'GET' | 'POST'; body?: string; contentType?: string; timeoutMs: number }): Promise<TextAnswer> {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return Promise.reject(new Error(`unsupported URL scheme ${u.protocol} in ${url}`));
  const body = o.body === undefined ? undefined : Buffer.from(o.body);
  const headers: Record<string, string> = {};
  if (body !== undefined) {
    headers['content-type'] = o.contentType ?? 'application/octet-stream';
    headers['content-length'] = String(body.length);
  }
  return new Promise((resolve, reject) => {
    const req = (u.protocol === 'https:' ? https : http).request(u, { method: o.method ?? 'GET', headers, ...(u.protocol === 'https:' ? tlsTrustOptions() : {}) }, (res) => {
      const parts: Buffer[] = [];
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (n > MAX_ANSWER_BYTES) { req.destroy(new Error(`answer from ${url} is longer than ${MAX_ANSWER_BYTES} bytes`)); return; }
        parts.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(parts).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(o.timeoutMs, () => req.destroy(Object.assign(new Error(`no answer from ${url} for ${o.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end(body);
  });
}
