// The aggregation endpoint `gridbox serve --accounting-db FILE` adds beside /cvmfs/: nodes POST their start
// records, anyone GETs the fleet-wide report (JSON, text table, SVG). Bodies are bounded and every record is
// checked field by field before anything is stored; a re-posted record is ignored (node + id are unique).
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { ingestRecords, listStarts, type AccountingDb } from './accounting-db.js';
import { renderSvg, renderTable, summarize } from './report.js';
import { invalidRecord, type StartRecord } from './start-record.js';

export const ACCOUNTING_PREFIX = '/gridbox/accounting/v1/';
export const MAX_POST_BYTES = 8 * 1024 * 1024;
export const MAX_RECORDS_PER_POST = 10_000;

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' }).end(body);
}

function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    // Past the limit the rest is read and dropped (memory stays bounded), so the client still gets its 413.
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n <= limit) chunks.push(c);
    });
    req.on('end', () => resolve(n > limit ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Answers requests under ACCOUNTING_PREFIX; returns false for any other path (left to the next handler). */
export function createAccountingHandler(db: AccountingDb): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (!url.pathname.startsWith(ACCOUNTING_PREFIX)) return false;
    const what = url.pathname.slice(ACCOUNTING_PREFIX.length);
    const since = Number(url.searchParams.get('since') ?? 0) || 0;
    void (async () => {
      try {
        if (what === 'starts' && req.method === 'POST') {
          const body = await readBody(req, MAX_POST_BYTES);
          if (body === undefined) return send(res, 413, 'text/plain', `body larger than ${MAX_POST_BYTES} bytes\n`);
          let parsed: unknown;
          try { parsed = JSON.parse(body); } catch { return send(res, 400, 'text/plain', 'body is not JSON\n'); }
          const records = (parsed as { records?: unknown })?.records;
          if (!Array.isArray(records)) return send(res, 400, 'text/plain', 'expected {"records": [...]}\n');
          if (records.length > MAX_RECORDS_PER_POST) return send(res, 413, 'text/plain', `more than ${MAX_RECORDS_PER_POST} records\n`);
          for (let i = 0; i < records.length; i++) {
            const bad = invalidRecord(records[i]);
            if (bad) return send(res, 400, 'text/plain', `record ${i}: ${bad}\n`);
          }
          const added = ingestRecords(db, records as StartRecord[]);
          return send(res, 200, 'application/json', `${JSON.stringify({ received: records.length, added })}\n`);
        }
        if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n');
        const records = listStarts(db, since);
        if (what === 'starts') return send(res, 200, 'application/json', `${JSON.stringify({ records })}\n`);
        if (what === 'report.json') return send(res, 200, 'application/json', `${JSON.stringify(summarize(records))}\n`);
        if (what === 'report.txt') return send(res, 200, 'text/plain; charset=utf-8', renderTable(summarize(records)));
        if (what === 'report.svg') return send(res, 200, 'image/svg+xml', renderSvg(summarize(records), 'gridbox container starts (all nodes)'));
        return send(res, 404, 'text/plain', 'Not Found\n');
      } catch (e) {
        if (!res.headersSent) send(res, 500, 'text/plain', `accounting error: ${(e as Error).message}\n`);
      }
    })();
    return true;
  };
}

/** Puts the accounting handler in front of whatever already answers `server`'s requests. */
export function attachAccounting(server: Server, db: AccountingDb): void {
  const handle = createAccountingHandler(db);
  const previous = server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>;
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!handle(req, res)) for (const l of previous) l.call(server, req, res);
  });
}
