// Test helpers for external servers: a free loopback port (bound then released, so another
// process may race for it: callers retry on EADDRINUSE) and waiting until a port accepts.
import { createServer, connect, type AddressInfo } from 'node:net';

export async function freeLoopbackPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r, j) => { s.once('error', j); s.listen(0, '127.0.0.1', r); });
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Resolves once 127.0.0.1:port accepts a connection; rejects after timeoutMs or when `alive()` turns false. */
export async function waitForPort(port: number, timeoutMs: number, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error(`server for port ${port} exited before listening`);
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
