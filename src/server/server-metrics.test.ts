import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { newRegistry, processOrClusterMetrics } from '../metrics/registry.js';
import { makeRawObject, pseudoRandomBytes, writeRawObjects } from '../testing/raw-repo.js';
import { withTempDir } from '../testing/tmp.js';
import { createServerMetrics, metricsRoute } from './server-metrics.js';
import { listenSrv } from './srv-handler.js';

const FQRN = 'metrics.example.org';

/** One request on its own connection (so a cluster spreads them over its workers). */
function get(port: number, path: string, method = 'GET', headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The value of one sample line of the text format, e.g. `gridbox_http_requests_total{method="GET",code="200"}`. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

test('GET /metrics counts requests by status, body bytes and latency after real requests', () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const [obj] = await writeRawObjects(srv, FQRN, [makeRawObject(pseudoRandomBytes(20_000, 3))]);
  const registry = newRegistry();
  const m = createServerMetrics(registry);
  const s = await listenSrv({ srvDir: srv, onRequest: m.record, extraRoute: metricsRoute(() => processOrClusterMetrics([registry])) });
  try {
    const path = `/cvmfs/${FQRN}/${obj.relPath}`;
    for (let i = 0; i < 3; i++) assert.equal((await get(s.port, path)).status, 200);
    const etag = String((await get(s.port, path, 'HEAD')).headers.etag);
    assert.equal((await get(s.port, path, 'GET', { 'if-none-match': etag })).status, 304);
    assert.equal((await get(s.port, `/cvmfs/${FQRN}/missing`)).status, 404);
    assert.equal((await get(s.port, path, 'DELETE')).status, 405);
    const r = await get(s.port, '/metrics');
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const text = r.body.toString();
    assert.equal(sample(text, 'gridbox_http_requests_total{method="GET",code="200"}'), 3);
    assert.equal(sample(text, 'gridbox_http_requests_total{method="HEAD",code="200"}'), 1);
    assert.equal(sample(text, 'gridbox_http_requests_total{method="GET",code="304"}'), 1);
    assert.equal(sample(text, 'gridbox_http_requests_total{method="GET",code="404"}'), 1);
    assert.equal(sample(text, 'gridbox_http_requests_total{method="other",code="405"}'), 1);
    assert.equal(sample(text, 'gridbox_http_response_bytes_total{method="GET"}'), 3 * obj.stored.length + 'Not Found\n'.length, 'three bodies and one 404 page');
    assert.equal(sample(text, 'gridbox_http_request_duration_seconds_count{method="GET"}'), 5);
    assert.equal(sample(text, 'gridbox_http_request_duration_seconds_bucket{le="+Inf",method="GET"}'), 5);
    assert.ok((sample(text, 'gridbox_http_request_duration_seconds_sum{method="GET"}') ?? 0) > 0);
  } finally { await s.close(); }
}));

test('gridbox serve with two workers answers /metrics with the sum over both', { timeout: 60_000 }, () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const [obj] = await writeRawObjects(srv, FQRN, [makeRawObject(pseudoRandomBytes(5000, 4))]);
  const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
  const child = spawn(process.execPath, [main, 'serve', '--root', dir, '--listen', '127.0.0.1:0', '--workers', '2'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', resolve);
      child.once('exit', (c) => reject(new Error(`serve exited ${c}`)));
    });
    const port = Number(/:(\d+)\/cvmfs\/$/.exec(line)?.[1]);
    // Separate connections: the primary hands them to the workers in turn, so both serve some.
    for (let i = 0; i < 10; i++) assert.deepEqual((await get(port, `/cvmfs/${FQRN}/${obj.relPath}`)).body, obj.stored);
    for (let i = 0; i < 4; i++) {
      const text = (await get(port, '/metrics')).body.toString();
      assert.equal(sample(text, 'gridbox_http_requests_total{method="GET",code="200"}'), 10, `scrape ${i}:\n${text}`);
      assert.equal(sample(text, 'gridbox_http_response_bytes_total{method="GET"}'), 10 * obj.stored.length);
      assert.equal(sample(text, 'gridbox_http_request_duration_seconds_count{method="GET"}'), 10);
    }
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally { if (child.exitCode === null) child.kill('SIGKILL'); }
}));
