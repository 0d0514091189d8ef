// The latency proxy forwards HTTP byte-exactly through 127.0.0.1, delays what it forwards, counts
// connections and bursts, and refuses targets outside loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startLatencyProxy } from './latency-proxy.js';

async function origin(): Promise<{ server: Server; url: string }> {
  const body = Buffer.alloc(300_000, 7);
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-length': body.length });
    res.end(req.url === '/big' ? body : body.subarray(0, 10));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

for (const mode of ['request', 'round-trip'] as const) {
  test(`the ${mode} latency proxy forwards bodies intact and holds each request back`, async () => {
    const o = await origin();
    const target = new URL(o.url);
    const proxy = await startLatencyProxy({ port: Number(target.port), delayMs: 60, mode });
    try {
      const t0 = process.hrtime.bigint();
      const r = await fetch(proxy.url(`${o.url}/big`));
      const got = Buffer.from(await r.arrayBuffer());
      const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
      assert.equal(got.length, 300_000);
      assert.ok(got.every((b) => b === 7));
      // A lower bound only (timers never fire early): the injected delay is the point of the proxy.
      assert.ok(elapsedMs >= 59, `the request was held back (${elapsedMs} ms)`);
      const s = proxy.stats();
      assert.equal(s.connections, 1);
      assert.ok(s.delayedBursts >= 1);
    } finally {
      await proxy.close();
      o.server.close();
    }
  });
}

test('the latency proxy refuses a target outside loopback', async () => {
  await assert.rejects(startLatencyProxy({ host: '192.0.2.1', port: 80, delayMs: 1 }), /not a loopback address/);
});
