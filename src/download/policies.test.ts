import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GridboxError, isGridboxError } from '../errors.js';
import { HostChain, ProxyChain, DIRECT } from './chains.js';
import { newCounters, withBadDataRetry, withHostFailover, withProxyFailover, withRetry, type RequestContext, type Step } from './policies.js';
import { fileSink } from './body-sinks.js';

const ctx = (): RequestContext<string> => ({ path: 'data/ab/cd', maxBytes: 100, host: '', proxy: DIRECT, noCache: false, retries: 0, attempts: [], makeSink: fileSink as never });
const timeout = (proxy: string): GridboxError => new GridboxError('DOWNLOAD_TIMEOUT', 'slow', { failure: proxy === DIRECT ? 'host' : 'proxy', transfer: true });

test('withRetry backs off randomly up to the initial delay, then doubles up to the maximum', async () => {
  const slept: number[] = [];
  const counters = newCounters();
  let calls = 0;
  const step = withRetry<string>(async (c) => { calls++; throw timeout(c.proxy); }, { maxRetries: 5, backoffInitMs: 100, backoffMaxMs: 300, counters,
    sleep: async (ms) => { slept.push(ms); }, random: () => 0.5 });
  await assert.rejects(step(ctx()), (e: unknown) => isGridboxError(e, 'DOWNLOAD_TIMEOUT'));
  assert.deepEqual(slept, [50, 100, 200, 300, 300]);
  assert.equal(calls, 6);
  assert.equal(counters.retries, 5);
  const c = ctx();
  c.noCache = true;
  calls = 0;
  await assert.rejects(step(c));
  assert.equal(calls, 1, 'no same-path retry once the request is no-cache');
});

test('a bad-data failure is retried once with no-cache; a second one moves to the next proxy, then the next host', async () => {
  const counters = newCounters();
  const seen: string[] = [];
  const bad = (): GridboxError => new GridboxError('STORE_HASH_MISMATCH', 'bad');
  // Corrupt everywhere except host h2 through proxy p2.
  const inner: Step<string> = async (c) => {
    seen.push(`${c.host}|${c.proxy}|${c.noCache ? 'nc' : ''}`);
    if (c.host === 'h2' && c.proxy === 'p2') return 'ok';
    throw bad();
  };
  const proxies = new ProxyChain([['p1'], ['p2']]);
  const step = withHostFailover(withProxyFailover(withBadDataRetry(inner, counters), proxies, counters), new HostChain(['h1', 'h2']), counters);
  assert.equal(await step(ctx()), 'ok');
  assert.deepEqual(seen, ['h1|p1|', 'h1|p1|nc', 'h1|p2|nc', 'h2|p1|nc', 'h2|p2|nc']);
  assert.equal(counters.noCacheRetries, 1);
  assert.equal(counters.hashMismatches, 4);
  assert.equal(counters.hostFailovers, 1);
});

test('status classification: 404/5xx/429 blame the host, other statuses and squid errors blame the proxy', async () => {
  const { transfer } = await import('./transfer.js');
  const { createAgents } = await import('./http-request.js');
  const { createServer } = await import('node:http');
  const server = createServer((req, res) => {
    const s = Number(req.url?.split('/').pop());
    res.writeHead(s, req.url?.includes('squid') ? { 'x-squid-error': 'ERR_READ_TIMEOUT 0' } : {}).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as import('node:net').AddressInfo).port;
  const d = createAgents();
  const kind = async (path: string, proxy: string): Promise<string> => {
    try {
      await transfer(d, { url: `http://127.0.0.1:${port}${path}`, proxy, noCache: false, timeoutMs: 1000, maxBytes: 10, sink: fileSink(), userAgent: 't' });
      return 'ok';
    } catch (e) { return `${(e as GridboxError).code}/${String((e as GridboxError).fields.failure)}`; }
  };
  const proxy = `http://127.0.0.1:${port}`; // answers absolute-form requests the same way, standing in for a proxy
  try {
    assert.equal(await kind('/200', DIRECT), 'ok');
    assert.equal(await kind('/404', proxy), 'DOWNLOAD_HOST/host');
    assert.equal(await kind('/503', proxy), 'DOWNLOAD_HOST/host');
    assert.equal(await kind('/429', proxy), 'DOWNLOAD_HOST/host');
    assert.equal(await kind('/403', proxy), 'DOWNLOAD_PROXY/proxy');
    assert.equal(await kind('/403', DIRECT), 'DOWNLOAD_HOST/host');
    assert.equal(await kind('/squid/503', proxy), 'DOWNLOAD_PROXY/proxy');
  } finally { d.close(); server.closeAllConnections(); server.close(); }
});
