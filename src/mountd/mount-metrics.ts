// A mount daemon's Prometheus metrics: its status (cache hits and misses, bytes on the wire and inflated,
// failovers, errors per host, revision, ...) read at scrape time through prom-client collect callbacks, so
// nothing on the read path counts twice. Served by the control socket's "metrics" request and, with
// `gridbox mount --metrics-listen HOST:PORT`, on GET /metrics over HTTP. Not the status itself (control.ts).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GridboxError, q } from '../errors.js';
import { Counter, Gauge, METRICS_CONTENT_TYPE, newRegistry, type Registry } from '../metrics/registry.js';
import type { MountStatus } from './control.js';

/** Counters read from a status snapshot: prom-client counters only go up, so each scrape sets the total. */
function counter(registry: Registry, name: string, help: string, value: (s: MountStatus) => number | undefined, status: () => MountStatus): void {
  new Counter({
    name, help, labelNames: ['fqrn'] as const, registers: [registry],
    collect() { const s = status(); const v = value(s); this.reset(); if (v !== undefined) this.inc({ fqrn: s.fqrn }, v); },
  });
}

function gauge(registry: Registry, name: string, help: string, value: (s: MountStatus) => number | undefined, status: () => MountStatus): void {
  new Gauge({
    name, help, labelNames: ['fqrn'] as const, registers: [registry],
    collect() { const s = status(); const v = value(s); this.reset(); if (v !== undefined) this.set({ fqrn: s.fqrn }, v); },
  });
}

/** A registry whose every scrape reads `status()` once and answers all its metrics from that snapshot. */
export function createMountMetrics(readStatus: () => MountStatus): Registry {
  // status() is not free (the cache's size and object count come from its SQLite ledger) and a scrape
  // collects ~17 metrics one after another in one turn of the event loop: read it once per turn.
  let snapshot: MountStatus | undefined;
  const status = (): MountStatus => {
    if (snapshot === undefined) {
      snapshot = readStatus();
      setImmediate(() => { snapshot = undefined; });
    }
    return snapshot;
  };
  const r = newRegistry();
  counter(r, 'gridbox_mount_cache_hits_total', 'Objects found in the local cache', (s) => s.hits, status);
  counter(r, 'gridbox_mount_cache_misses_total', 'Objects downloaded because the cache lacked them', (s) => s.misses, status);
  counter(r, 'gridbox_mount_wire_bytes_total', 'Bytes received from servers and proxies (compressed, failed attempts included)', (s) => s.bytesOnWire, status);
  counter(r, 'gridbox_mount_inflated_bytes_total', 'Content bytes downloads produced after inflation', (s) => s.bytesInflated, status);
  counter(r, 'gridbox_mount_host_failovers_total', 'Switches to the next server (stratum 1)', (s) => s.hostFailovers, status);
  counter(r, 'gridbox_mount_proxy_failovers_total', 'Switches to another proxy', (s) => s.proxyFailovers, status);
  counter(r, 'gridbox_mount_io_errors_total', 'Reads answered with EIO', (s) => s.ioErrors, status);
  counter(r, 'gridbox_mount_revision_switches_total', 'Revisions switched to while mounted', (s) => s.revisionSwitches, status);
  counter(r, 'gridbox_mount_cache_evictions_total', 'Objects evicted from the cache by its quota', (s) => s.evictions, status);
  gauge(r, 'gridbox_mount_revision', 'Repository revision mounted now', (s) => s.revision, status);
  gauge(r, 'gridbox_mount_cache_bytes', 'Bytes in the local cache', (s) => s.cacheBytes, status);
  gauge(r, 'gridbox_mount_cache_limit_bytes', 'Cache quota in bytes', (s) => s.cacheLimit, status);
  gauge(r, 'gridbox_mount_open_files', 'Files open through the mount', (s) => s.openFiles, status);
  gauge(r, 'gridbox_mount_offline', '1 while no server answers (serving from the cache)', (s) => (s.offline ? 1 : 0), status);
  gauge(r, 'gridbox_mount_uptime_seconds', 'Seconds since the daemon mounted', (s) => s.uptimeS, status);
  new Counter({
    name: 'gridbox_mount_host_errors_total', help: 'Failed download attempts per server', labelNames: ['fqrn', 'host'] as const, registers: [r],
    collect() { const s = status(); this.reset(); for (const [host, n] of Object.entries(s.hostErrors ?? {})) this.inc({ fqrn: s.fqrn, host }, n); },
  });
  new Counter({
    name: 'gridbox_mount_fuse_requests_total', help: 'FUSE requests received, by opcode', labelNames: ['fqrn', 'opcode'] as const, registers: [r],
    collect() { const s = status(); this.reset(); for (const [opcode, n] of Object.entries(s.requests)) this.inc({ fqrn: s.fqrn, opcode }, n); },
  });
  return r;
}

/** `HOST:PORT` (IPv6 in brackets) → host and port; USAGE otherwise. */
export function parseListenAddress(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new GridboxError('USAGE', `--metrics-listen wants HOST:PORT, got ${q(text)}`);
  return { host: m[1] ?? m[2], port };
}

/** Serves GET /metrics from `registry` on `listen`; resolves with the server and its URL once listening. */
export async function listenMountMetrics(listen: string, registry: Registry): Promise<{ server: Server; url: string }> {
  const { host, port } = parseListenAddress(listen);
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') { res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found (try /metrics)\n'); return; }
    if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405, { 'content-type': 'text/plain' }).end('method not allowed\n'); return; }
    registry.metrics().then(
      (text) => { res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text) }).end(req.method === 'HEAD' ? undefined : text); },
      (e: unknown) => { res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics error: ${(e as Error).message}\n`); },
    );
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', (e) => fail(new GridboxError('MOUNT_FAILED', `Cannot listen for metrics on ${q(listen)}`, { cause: e })));
    server.listen(port, host, () => ok());
  });
  // The mount, not a scrape, decides when the daemon exits.
  server.unref();
  const a = server.address() as AddressInfo;
  return { server, url: `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/metrics` };
}
