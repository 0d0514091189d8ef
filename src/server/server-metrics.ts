// What `gridbox serve` counts for Prometheus (requests by method and status, body bytes, latency) and the
// GET /metrics route that shows it. Labels stay few and bounded: no paths, no client addresses.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Histogram, METRICS_CONTENT_TYPE, type Registry } from '../metrics/registry.js';
import type { RequestInfo } from './srv-handler.js';

export const METRICS_PATH = '/metrics';
/** Seconds; from a memory hit on loopback (~100 µs) to a slow disk or a stalled client. */
export const LATENCY_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface ServerMetrics {
  /** Counts one finished request (the srv handler's onRequest). */
  record(info: RequestInfo): void;
}

export function createServerMetrics(registry: Registry): ServerMetrics {
  const requests = new Counter({ name: 'gridbox_http_requests_total', help: 'HTTP requests answered, by method and status code', labelNames: ['method', 'code'] as const, registers: [registry] });
  const bytes = new Counter({ name: 'gridbox_http_response_bytes_total', help: 'Response body bytes sent', labelNames: ['method'] as const, registers: [registry] });
  const latency = new Histogram({ name: 'gridbox_http_request_duration_seconds', help: 'Time from a request\'s arrival to its last byte handed to the kernel', labelNames: ['method'] as const, buckets: LATENCY_BUCKETS_S, registers: [registry] });
  // Labelled children made once per method and status: prom-client hashes a label object on every call.
  const perMethod = new Map<string, { bytes: Counter.Internal; latency: Histogram.Internal<'method'>; codes: Map<number, Counter.Internal> }>();
  return {
    record(i) {
      // Methods other than GET and HEAD are refused; one label value for all of them bounds the series.
      const method = i.method === 'GET' || i.method === 'HEAD' ? i.method : 'other';
      let m = perMethod.get(method);
      if (m === undefined) { m = { bytes: bytes.labels({ method }), latency: latency.labels({ method }), codes: new Map() }; perMethod.set(method, m); }
      let c = m.codes.get(i.status);
      if (c === undefined) { c = requests.labels({ method, code: String(i.status) }); m.codes.set(i.status, c); }
      c.inc();
      if (i.bytes > 0) m.bytes.inc(i.bytes);
      m.latency.observe(i.seconds);
    },
  };
}

export function isMetricsRequest(url: string): boolean {
  return url === METRICS_PATH || url.startsWith(`${METRICS_PATH}?`);
}

/** An srv-handler extraRoute answering GET/HEAD /metrics with `text()`; other paths fall through. */
export function metricsRoute(text: () => Promise<string>): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    if (!isMetricsRequest(req.url ?? '')) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-length': '0' }).end();
      return true;
    }
    text().then((body) => {
      res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    }, (e: unknown) => {
      const body = `Cannot collect metrics: ${e instanceof Error ? e.message : String(e)}\n`;
      res.writeHead(503, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' }).end(body);
    });
    return true;
  };
}
