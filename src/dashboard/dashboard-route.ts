// The dashboard's HTTP route for `gridbox serve`: GET /dashboard (the page) and its JSON and SVG data
// endpoints under /dashboard/. A route in the server's extraRoute shape: returns false for any other path,
// so the repository's fast path is untouched. Gathers data per request (a page view, not a hot path).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describeError } from '../errors.js';
import { renderSvg } from '../accounting/report.js';
import { collectDashboard, type DashboardData, type DashboardSources } from './dashboard-data.js';
import { renderDashboardPage } from './dashboard-page.js';

export const DASHBOARD_PATH = '/dashboard';

export type Route = (req: IncomingMessage, res: ServerResponse) => boolean;

const ENDPOINTS: Record<string, { type: string; body: (d: DashboardData) => string }> = {
  '': { type: 'text/html; charset=utf-8', body: renderDashboardPage },
  '/': { type: 'text/html; charset=utf-8', body: renderDashboardPage },
  '/data.json': { type: 'application/json', body: (d) => `${JSON.stringify(d)}\n` },
  '/repositories.json': { type: 'application/json', body: (d) => `${JSON.stringify(d.repositories)}\n` },
  '/starts.json': { type: 'application/json', body: (d) => `${JSON.stringify(d.starts ?? null)}\n` },
  '/replication.json': { type: 'application/json', body: (d) => `${JSON.stringify(d.stratum1)}\n` },
  '/starts.svg': { type: 'image/svg+xml', body: (d) => renderSvg(d.starts ?? { total: 0, nodes: 0, from: null, to: null, perDay: [], perImage: [] }, 'container starts (all nodes)') },
};

export function createDashboardRoute(src: DashboardSources): Route {
  return (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== DASHBOARD_PATH && !path.startsWith(`${DASHBOARD_PATH}/`)) return false;
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    const ep = ENDPOINTS[path.slice(DASHBOARD_PATH.length)];
    if (ep === undefined) { send(404, 'text/plain', 'Not Found\n'); return true; }
    if (req.method !== 'GET' && req.method !== 'HEAD') { send(405, 'text/plain', 'method not allowed\n'); return true; }
    collectDashboard(src).then(
      (d) => send(200, ep.type, ep.body(d)),
      (e: unknown) => { if (!res.headersSent) send(500, 'text/plain', `dashboard error: ${describeError(e)}\n`); },
    );
    return true;
  };
}
