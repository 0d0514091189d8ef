// HttpPipeline against real servers on 127.0.0.1: node:http (keep-alive, pipelined requests answered in
// order), and raw TCP servers that split responses across writes, close the connection mid-pipeline,
// answer with chunked bodies or nothing at all. Plus PipelinedSource's fallback to the full source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { hashBytes, objectKey, type ObjectId } from '../hash/object-id.js';
import { HttpPipeline, PipelineUnsupported } from './http-pipeline.js';
import { PipelinedSource } from './fast-source.js';
import type { SnapshotSource } from './object-copier.js';

const opts = { connections: 2, depth: 8, timeoutMs: 5000, maxBodyBytes: 1 << 20, userAgent: 'test' };

async function listen(server: Server | ReturnType<typeof createNetServer>): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function close(server: Server | ReturnType<typeof createNetServer>): Promise<void> {
  (server as Server).closeAllConnections?.();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Body of path p: distinct per path and of varying size, some larger than one socket read. */
function bodyOf(path: string): Buffer {
  const n = Number(/(\d+)$/.exec(path)?.[1] ?? 0);
  return Buffer.alloc(100 + (n * 7919) % 150_000, path);
}

test('many requests over few keep-alive connections come back in order with the right bodies', async () => {
  const seen: string[] = [];
  const sockets = new Set<Socket>();
  const server = createHttpServer((req, res) => {
    seen.push(req.url!);
    sockets.add(req.socket);
    if (req.url!.endsWith('/missing')) { res.writeHead(404, { 'content-length': 0 }); res.end(); return; }
    const b = bodyOf(req.url!);
    res.writeHead(200, { 'content-length': b.length });
    res.end(b);
  });
  const port = await listen(server);
  const pipe = new HttpPipeline({ ...opts, baseUrl: `http://127.0.0.1:${port}/cvmfs/repo.test` });
  try {
    const paths = Array.from({ length: 300 }, (_, i) => `data/x${i}`);
    const rs = await Promise.all(paths.map((p) => pipe.get(p)));
    for (const [i, r] of rs.entries()) {
      assert.equal(r.status, 200);
      assert.ok(r.body.equals(bodyOf(`/cvmfs/repo.test/${paths[i]}`)), `body of ${paths[i]}`);
    }
    assert.equal(seen.length, 300);
    assert.ok(sockets.size <= 2, `at most 2 connections, saw ${sockets.size}`);
    const miss = await pipe.get('data/missing');
    assert.equal(miss.status, 404);
    assert.equal(miss.body.length, 0);
  } finally {
    pipe.close();
    await close(server);
  }
});

/** A raw HTTP server: `answer(path, socket)` writes whatever bytes it likes for each request line it reads. */
function rawServer(answer: (path: string, socket: Socket, n: number) => void) {
  let n = 0;
  return createNetServer((socket) => {
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        const path = /^GET (\S+)/.exec(buf)?.[1] ?? '';
        buf = buf.slice(end + 4);
        answer(path, socket, n++);
      }
    });
    socket.on('error', () => undefined);
  });
}

test('responses split at every byte boundary, and a server closing after some responses, still frame right', async () => {
  // Each response goes out one byte per write (heads and bodies straddle reads); every 5th response says
  // Connection: close and the server ends the socket, so the requests behind it are sent again.
  const server = rawServer((path, socket, n) => {
    const body = Buffer.from(`body of ${path}`);
    const close = n % 5 === 4;
    const bytes = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`), body]);
    if (socket.destroyed || socket.writableEnded) return;
    for (const b of bytes) socket.write(Buffer.from([b]));
    if (close) socket.end();
  });
  const port = await listen(server);
  const pipe = new HttpPipeline({ ...opts, connections: 1, depth: 4, baseUrl: `http://127.0.0.1:${port}/r` });
  try {
    const rs = await Promise.all(Array.from({ length: 12 }, (_, i) => pipe.get(`p${i}`)));
    for (const [i, r] of rs.entries()) assert.equal(r.body.toString(), `body of /r/p${i}`);
  } finally {
    pipe.close();
    await close(server);
  }
});

test('a chunked body is refused as PipelineUnsupported, and an unreachable origin rejects every request', async () => {
  const server = rawServer((_path, socket) => socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'));
  const port = await listen(server);
  const pipe = new HttpPipeline({ ...opts, baseUrl: `http://127.0.0.1:${port}/r` });
  try {
    await assert.rejects(pipe.get('x'), PipelineUnsupported);
  } finally {
    pipe.close();
    await close(server);
  }
  const gone = new HttpPipeline({ ...opts, baseUrl: `http://127.0.0.1:${port}/r` });
  try {
    const rs = await Promise.allSettled([gone.get('a'), gone.get('b'), gone.get('c')]);
    assert.deepEqual(rs.map((r) => r.status), ['rejected', 'rejected', 'rejected']);
  } finally {
    gone.close();
  }
});

test('PipelinedSource returns verified pipelined bytes and falls back to the full source for bad bytes and errors', async () => {
  const good = Buffer.from('good object');
  const bad = Buffer.from('tampered object');
  const goodId = hashBytes('sha1', good);
  const badId = hashBytes('sha1', Buffer.from('the real object'));
  const goneId = hashBytes('sha1', Buffer.from('only the full source has it'));
  const served = new Map<string, Buffer>([[objectKey(goodId, 'P'), good], [objectKey(badId, 'P'), bad]]);
  const server = createHttpServer((req, res) => {
    const key = req.url!.replace(/^\/r\/data\/(..)\//, '$1');
    const b = served.get(key);
    if (b === undefined) { res.writeHead(404, { 'content-length': 0 }); res.end(); return; }
    res.writeHead(200, { 'content-length': b.length });
    res.end(b);
  });
  const port = await listen(server);
  const fullCalls: string[] = [];
  const full: SnapshotSource = {
    async fetchFile() { throw new Error('not used'); },
    async fetchObject(id: ObjectId, suffix) {
      fullCalls.push(objectKey(id, suffix));
      return Buffer.from(`from the full source: ${objectKey(id, suffix)}`);
    },
  };
  const pipe = new HttpPipeline({ ...opts, baseUrl: `http://127.0.0.1:${port}/r` });
  const src = new PipelinedSource(full, pipe);
  try {
    assert.ok((await src.fetchObject(goodId, 'P', { compression: 'none' })).equals(good));
    assert.deepEqual(fullCalls, []);
    await src.fetchObject(badId, 'P', { compression: 'none' });
    await src.fetchObject(goneId, 'P', { compression: 'none' });
    assert.deepEqual(fullCalls, [objectKey(badId, 'P'), objectKey(goneId, 'P')], 'a hash mismatch and a 404 both go to the full source');
    assert.deepEqual(src.stats, { pipelined: 1, fallbacks: 2 });
  } finally {
    pipe.close();
    await close(server);
  }
});
