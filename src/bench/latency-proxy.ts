// Lives in bench/ because bench code may not import testing/ (src/architecture.test.ts); testing/latency-proxy.ts
// re-exports it for tests.
// A TCP proxy on 127.0.0.1 that adds latency, so cold starts are measured as a site sees them (squid on the
// LAN, a stratum 1 across the WAN) while every byte stays on loopback. Two models:
// - 'request': each burst the client sends (an HTTP request) is held `delayMs` before it goes upstream;
// - 'round-trip': a connection costs one round trip before it opens, and each direction adds delayMs/2,
//   so a request/response exchange costs one `delayMs`.
// Order within a connection is kept. Not a traffic shaper (no bandwidth limit), not for production.
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export interface LatencyProxyOptions {
  /** Target host; must be in 127.0.0.0/8 (nothing here leaves the machine). */
  host?: string;
  port: number;
  delayMs: number;
  mode?: 'request' | 'round-trip';
}

export interface LatencyProxy {
  /** Port the proxy listens on (127.0.0.1). */
  readonly port: number;
  /** Replace the target URL's host:port with the proxy's. */
  url(target: string): string;
  stats(): { connections: number; delayedBursts: number };
  close(): Promise<void>;
}

function isLoopback(host: string): boolean {
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === 'localhost';
}

/**
 * Copies `from` to `to`, each chunk no earlier than `delayMs` after it arrived, in arrival order. One queue and
 * one timer at a time: a timer per chunk could fire out of order (timers of different durations armed in
 * different loop turns expire by the loop's clock, not by Date.now), which interleaved a response's bytes.
 */
function delayedPipe(from: Socket, to: Socket, delayMs: number, onBurst: () => void): void {
  const queue: Array<{ chunk: Buffer; due: number }> = [];
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const flush = (): void => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && queue[0].due <= now) {
      const { chunk } = queue.shift()!;
      if (!to.destroyed) to.write(chunk);
    }
    if (queue.length > 0) timer = setTimeout(flush, Math.max(1, Math.ceil(queue[0].due - now)));
    else if (ended) to.end();
  };
  from.on('data', (chunk: Buffer) => {
    onBurst();
    queue.push({ chunk, due: performance.now() + delayMs });
    timer ??= setTimeout(flush, delayMs);
  });
  from.on('end', () => { ended = true; if (queue.length === 0 && timer === undefined) to.end(); });
}

export async function startLatencyProxy(o: LatencyProxyOptions): Promise<LatencyProxy> {
  const host = o.host ?? '127.0.0.1';
  if (!isLoopback(host)) throw new Error(`latency proxy: target ${host} is not a loopback address`);
  const mode = o.mode ?? 'request';
  const up = mode === 'round-trip' ? o.delayMs / 2 : o.delayMs;
  const down = mode === 'round-trip' ? o.delayMs / 2 : 0;
  let connections = 0, delayedBursts = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    connections++;
    client.pause();
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    const open = (): void => {
      const upstream = connect(o.port, host);
      sockets.add(upstream);
      upstream.on('close', () => { sockets.delete(upstream); client.destroy(); });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      client.on('close', () => upstream.destroy());
      delayedPipe(client, upstream, up, () => { delayedBursts++; });
      if (down > 0) delayedPipe(upstream, client, down, () => undefined);
      else upstream.pipe(client);
      client.resume();
    };
    // A new TCP connection costs a round trip (SYN, SYN-ACK) before the first byte can go.
    if (mode === 'round-trip' && o.delayMs > 0) setTimeout(open, o.delayMs);
    else open();
  });
  await new Promise<void>((r, j) => { server.once('error', j); server.listen(0, '127.0.0.1', () => r()); });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: (target) => {
      const u = new URL(target);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString().replace(/\/$/, target.endsWith('/') ? '/' : '');
    },
    stats: () => ({ connections, delayedBursts }),
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}
