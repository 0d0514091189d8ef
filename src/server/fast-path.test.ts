// The fast path (fast-path.ts) on raw TCP connections: byte-for-byte the answers node:http gives, pipelining,
// keep-alive, HTTP/1.0, requests split across segments, what it hands to node:http (ranges, bad or too large
// requests, other methods), a client leaving mid-answer, and files changed on disk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { makeRawObject, pseudoRandomBytes, writeRawObjects, type RawObject } from '../testing/raw-repo.js';
import { withTempDir } from '../testing/tmp.js';
import { MAX_HEADER_BYTES, parseRequestHead } from './fast-path.js';
import { listenSrv, type RequestInfo, type RunningServer } from './srv-handler.js';

const FQRN = 'fast.example.org';

interface RawReply { statusLine: string; headers: [string, string][]; body: Buffer }

/** A raw HTTP/1.x client: writes exactly the bytes given and parses the answers as they come. */
class RawConn {
  private readonly socket: Socket;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.setNoDelay(true);
    this.socket.on('data', (c: Buffer) => { this.buf = Buffer.concat([this.buf, c]); this.wake(); });
    this.socket.on('close', () => { this.closed = true; this.wake(); });
    this.socket.on('error', () => undefined);
  }

  private wake(): void { for (const w of this.waiters.splice(0)) w(); }
  private more(): Promise<void> { return new Promise((r) => this.waiters.push(r)); }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (e) => (e ? reject(e) : resolve())));
  }

  /** The next answer; `noBody` for HEAD and 304 (their Content-Length describes a body not sent). */
  async reply(noBody = false): Promise<RawReply> {
    let end: number;
    while ((end = this.buf.indexOf('\r\n\r\n')) < 0) {
      if (this.closed) throw new Error(`connection closed before an answer (got ${JSON.stringify(this.buf.toString('latin1'))})`);
      await this.more();
    }
    const lines = this.buf.toString('latin1', 0, end).split('\r\n');
    const headers = lines.slice(1).map((l): [string, string] => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]);
    const cl = headers.find(([k]) => k.toLowerCase() === 'content-length');
    const length = noBody || cl === undefined ? 0 : Number(cl[1]);
    while (this.buf.length < end + 4 + length) {
      if (this.closed) throw new Error('connection closed inside a body');
      await this.more();
    }
    const body = this.buf.subarray(end + 4, end + 4 + length);
    this.buf = this.buf.subarray(end + 4 + length);
    return { statusLine: lines[0], headers, body: Buffer.from(body) };
  }

  /** Resolves once the server has closed the connection; true when no more bytes came before that. */
  async untilClosed(): Promise<boolean> {
    while (!this.closed) await this.more();
    return this.buf.length === 0;
  }

  /** Reads until at least n bytes have arrived. */
  async atLeast(n: number): Promise<void> {
    while (this.buf.length < n && !this.closed) await this.more();
  }

  get isOpen(): boolean { return !this.closed; }
  destroy(): void { this.socket.destroy(); }
}

const header = (r: RawReply, name: string): string | undefined => r.headers.find(([k]) => k.toLowerCase() === name)?.[1];
/** An answer without its Date line, which may differ by a second between two servers. */
const comparable = (r: RawReply): string => [r.statusLine, ...r.headers.filter(([k]) => k !== 'Date').map(([k, v]) => `${k}: ${v}`), r.body.toString('base64')].join('\n');

async function makeTree(dir: string): Promise<{ srv: string; obj: RawObject; big: RawObject }> {
  const srv = join(dir, 'srv');
  const obj = makeRawObject(pseudoRandomBytes(70_000, 1));
  // Larger than the 1 MiB read whole, so it is streamed from the file.
  const big = makeRawObject(pseudoRandomBytes(3 << 20, 2), '', 'sha1', false);
  await writeRawObjects(srv, FQRN, [obj, big]);
  await writeFile(join(srv, FQRN, '.cvmfspublished'), 'Cabc\nNfast.example.org\n--\n');
  return { srv, obj, big };
}

async function withServers(fn: (fast: RunningServer, plain: RunningServer, t: { srv: string; obj: RawObject; big: RawObject; log: RequestInfo[] }) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const tree = await makeTree(dir);
    const log: RequestInfo[] = [];
    const fast = await listenSrv({ srvDir: tree.srv, onRequest: (i) => log.push(i) });
    const plain = await listenSrv({ srvDir: tree.srv, fastPath: false });
    try { await fn(fast, plain, { ...tree, log }); } finally { await fast.close(); await plain.close(); }
  });
}

test('parseRequestHead takes plain GET/HEAD of /cvmfs/ and leaves everything else to node:http', () => {
  const h = 'Host: x';
  assert.deepEqual(parseRequestHead(`GET /cvmfs/a/b?x=1 HTTP/1.1\r\n${h}`), { method: 'GET', url: '/cvmfs/a/b?x=1', urlPath: '/cvmfs/a/b', keepAlive: true, ifNoneMatch: undefined });
  assert.equal(parseRequestHead(`HEAD /cvmfs/a HTTP/1.0`)?.keepAlive, false);
  assert.equal(parseRequestHead(`HEAD /cvmfs/a HTTP/1.0\r\nConnection: Keep-Alive`)?.keepAlive, true);
  assert.equal(parseRequestHead(`GET /cvmfs/a HTTP/1.1\r\n${h}\r\nConnection: close`)?.keepAlive, false);
  assert.equal(parseRequestHead(`GET /cvmfs/a HTTP/1.1\r\n${h}\r\nIf-None-Match: "a"\r\nif-none-match: "b"`)?.ifNoneMatch, '"a", "b"');
  for (const bad of [
    `POST /cvmfs/a HTTP/1.1\r\n${h}`, `GET /metrics HTTP/1.1\r\n${h}`, `GET /cvmfs/a HTTP/2.0\r\n${h}`, 'GET /cvmfs/a HTTP/1.1',
    `GET /cvmfs/a HTTP/1.1\r\n${h}\r\nRange: bytes=0-1`, `GET /cvmfs/a HTTP/1.1\r\n${h}\r\nContent-Length: 3`,
    `GET /cvmfs/a HTTP/1.1\r\n${h}\r\nTransfer-Encoding: chunked`, `GET /cvmfs/a HTTP/1.1\r\n${h}\r\nConnection: Upgrade`,
    `GET /cvmfs/a HTTP/1.1\r\n${h}\r\nno colon`, `GET /cvmfs/a HTTP/1.1\r\n${h}\r\nBad Name: v`, `GET /cvmfs/a HTTP/1.1\r\n${h}\r\n${h}`,
    `GET /cvmfs/a\x01 HTTP/1.1\r\n${h}`, `GET  /cvmfs/a HTTP/1.1\r\n${h}`, `GET http://x/cvmfs/a HTTP/1.1\r\n${h}`,
  ]) assert.equal(parseRequestHead(bad), undefined, JSON.stringify(bad));
});

test('fast answers are byte for byte what node:http answers, Date aside', () => withServers(async (fast, plain, { obj }) => {
  const path = `/cvmfs/${FQRN}/${obj.relPath}`;
  const etagReply = await (async () => { const c = new RawConn(plain.port); await c.write(`HEAD ${path} HTTP/1.1\r\nHost: x\r\n\r\n`); const r = await c.reply(true); c.destroy(); return header(r, 'etag')!; })();
  const cases: [string, boolean][] = [
    [`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, false],
    [`HEAD ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, true],
    [`GET ${path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${etagReply}\r\n\r\n`, true],
    [`GET ${path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: "other"\r\n\r\n`, false],
    [`GET /cvmfs/${FQRN}/.cvmfspublished HTTP/1.1\r\nHost: x\r\n\r\n`, false],
    [`GET /cvmfs/${FQRN}/missing HTTP/1.1\r\nHost: x\r\n\r\n`, false],
    [`HEAD /cvmfs/${FQRN}/missing HTTP/1.1\r\nHost: x\r\n\r\n`, true],
    [`GET /cvmfs/${FQRN}/data HTTP/1.1\r\nHost: x\r\n\r\n`, false],
    [`GET /cvmfs/${FQRN}/%2e%2e/x HTTP/1.1\r\nHost: x\r\n\r\n`, false],
    [`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, false],
    [`GET ${path} HTTP/1.0\r\n\r\n`, false],
    [`GET ${path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n`, false],
  ];
  for (const [req, noBody] of cases) {
    const answers: string[] = [];
    for (const s of [fast, plain]) {
      const c = new RawConn(s.port);
      await c.write(req);
      answers.push(comparable(await c.reply(noBody)));
      c.destroy();
    }
    assert.equal(answers[0], answers[1], `answers to ${JSON.stringify(req)}`);
  }
}));

test('pipelined requests are answered in order on one connection, which stays open', () => withServers(async (fast, _plain, { obj, log }) => {
  const path = `/cvmfs/${FQRN}/${obj.relPath}`;
  const c = new RawConn(fast.port);
  try {
    await c.write([
      `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, `HEAD ${path} HTTP/1.1\r\nHost: x\r\n\r\n`,
      `GET /cvmfs/${FQRN}/missing HTTP/1.1\r\nHost: x\r\n\r\n`, `GET /cvmfs/${FQRN}/.cvmfspublished?x=1 HTTP/1.1\r\nHost: x\r\n\r\n`,
      `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`,
    ].join(''));
    const a = await c.reply();
    assert.equal(a.statusLine, 'HTTP/1.1 200 OK');
    assert.deepEqual(a.body, obj.stored);
    const b = await c.reply(true);
    assert.equal(b.statusLine, 'HTTP/1.1 200 OK');
    assert.equal(header(b, 'content-length'), String(obj.stored.length));
    assert.equal((await c.reply()).statusLine, 'HTTP/1.1 404 Not Found');
    assert.equal((await c.reply()).body.toString(), 'Cabc\nNfast.example.org\n--\n');
    assert.deepEqual((await c.reply()).body, obj.stored);
    // Keep-alive: later requests on the same connection are answered too.
    for (let i = 0; i < 3; i++) {
      await c.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      assert.deepEqual((await c.reply()).body, obj.stored);
    }
    assert.ok(c.isOpen);
    assert.deepEqual(log.map((i) => `${i.method} ${i.status} ${i.bytes}`), [
      `GET 200 ${obj.stored.length}`, 'HEAD 200 0', 'GET 404 10', 'GET 200 26', ...Array(4).fill(`GET 200 ${obj.stored.length}`),
    ]);
    assert.equal(log[3].url, `/cvmfs/${FQRN}/.cvmfspublished?x=1`);
    assert.equal(log[0].remote, '127.0.0.1');
  } finally { c.destroy(); }
}));

test('HTTP/1.0 and Connection: close get one answer, then the server closes', () => withServers(async (fast, _plain, { obj }) => {
  const path = `/cvmfs/${FQRN}/${obj.relPath}`;
  for (const req of [`GET ${path} HTTP/1.0\r\n\r\n`, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`]) {
    const c = new RawConn(fast.port);
    // A second request after the last one is never answered.
    await c.write(req + `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    const r = await c.reply();
    assert.equal(header(r, 'connection'), 'close');
    assert.deepEqual(r.body, obj.stored);
    assert.equal(await c.untilClosed(), true, 'nothing after the last answer');
  }
}));

test('a request split across many segments is answered once it is whole', () => withServers(async (fast, _plain, { obj }) => {
  const path = `/cvmfs/${FQRN}/${obj.relPath}`;
  const c = new RawConn(fast.port);
  try {
    const req = `GET ${path} HTTP/1.1\r\nHost: x\r\nUser-Agent: split\r\n\r\nHEAD ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
    // Every split point a client may produce: mid-method, mid-path, between \r and \n, inside the blank line.
    for (const piece of req.match(/.{1,7}/gs)!) {
      await c.write(piece);
      await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual((await c.reply()).body, obj.stored);
    assert.equal((await c.reply(true)).statusLine, 'HTTP/1.1 200 OK');
  } finally { c.destroy(); }
}));

test('what the fast path does not parse goes to node:http, in order: ranges, other methods, bad and too large requests', () => withServers(async (fast, _plain, { obj }) => {
  const path = `/cvmfs/${FQRN}/${obj.relPath}`;
  const c = new RawConn(fast.port);
  try {
    await c.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\nGET ${path} HTTP/1.1\r\nHost: x\r\nRange: bytes=2-9\r\n\r\nGET ${path} HTTP/1.1\r\nHost: x\r\n\r\nDELETE ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.deepEqual((await c.reply()).body, obj.stored);
    const part = await c.reply();
    assert.equal(part.statusLine, 'HTTP/1.1 206 Partial Content');
    assert.deepEqual(part.body, obj.stored.subarray(2, 10));
    assert.deepEqual((await c.reply()).body, obj.stored, 'node:http goes on answering the connection');
    assert.equal((await c.reply()).statusLine, 'HTTP/1.1 405 Method Not Allowed');
  } finally { c.destroy(); }

  const malformed = new RawConn(fast.port);
  await malformed.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\nGET ${path} HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n`);
  assert.deepEqual((await malformed.reply()).body, obj.stored, 'the good request before it is answered');
  assert.equal((await malformed.reply()).statusLine, 'HTTP/1.1 400 Bad Request');
  await malformed.untilClosed();

  const noHost = new RawConn(fast.port);
  await noHost.write(`GET ${path} HTTP/1.1\r\n\r\n`);
  assert.equal((await noHost.reply()).statusLine, 'HTTP/1.1 400 Bad Request');
  await noHost.untilClosed();

  for (const huge of [`GET ${path} HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(MAX_HEADER_BYTES)}\r\n\r\n`, `GET /cvmfs/${'a'.repeat(MAX_HEADER_BYTES + 10)}`]) {
    const big = new RawConn(fast.port);
    await big.write(huge);
    assert.equal((await big.reply()).statusLine, 'HTTP/1.1 431 Request Header Fields Too Large');
    await big.untilClosed();
  }

  const metricsLike = new RawConn(fast.port);
  await metricsLike.write(`GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n`);
  assert.equal((await metricsLike.reply()).statusLine, 'HTTP/1.1 404 Not Found', 'paths outside /cvmfs/ reach node:http and its routes');
  metricsLike.destroy();
}));

test('large files are streamed in order with later requests, and a client leaving mid-answer costs no descriptor', () => withServers(async (fast, _plain, { obj, big }) => {
  const bigPath = `/cvmfs/${FQRN}/${big.relPath}`;
  const path = `/cvmfs/${FQRN}/${obj.relPath}`;
  const c = new RawConn(fast.port);
  try {
    await c.write(`GET ${bigPath} HTTP/1.1\r\nHost: x\r\n\r\nGET ${path} HTTP/1.1\r\nHost: x\r\n\r\nHEAD ${bigPath} HTTP/1.1\r\nHost: x\r\n\r\n`);
    const r = await c.reply();
    assert.equal(header(r, 'content-length'), String(big.stored.length));
    assert.ok(r.body.equals(big.stored));
    assert.deepEqual((await c.reply()).body, obj.stored);
    assert.equal((await c.reply(true)).statusLine, 'HTTP/1.1 200 OK');
  } finally { c.destroy(); }

  const fds = (): number => readdirSync('/proc/self/fd').length;
  const before = fds();
  for (let i = 0; i < 5; i++) {
    const leaver = new RawConn(fast.port);
    await leaver.write(`GET ${bigPath} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await leaver.atLeast(100_000);
    leaver.destroy();
  }
  // The streams of the abandoned answers close their files once the server sees the connections go.
  for (let i = 0; fds() > before && i < 200; i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(fds() <= before, `descriptors: ${fds()} after, ${before} before`);
  const after = new RawConn(fast.port);
  try {
    await after.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.deepEqual((await after.reply()).body, obj.stored, 'still serving');
  } finally { after.destroy(); }
}));

test('a file changed on disk is answered with its new bytes on a kept-alive connection', () => withServers(async (fast, _plain, { srv, obj }) => {
  const path = `/cvmfs/${FQRN}/${obj.relPath}`;
  const file = join(srv, FQRN, obj.relPath);
  const c = new RawConn(fast.port);
  try {
    const ask = async (): Promise<RawReply> => { await c.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`); return c.reply(); };
    const first = await ask();
    assert.deepEqual((await ask()).body, obj.stored, 'from memory');
    const patched = Buffer.from(obj.stored);
    patched[100] ^= 0xff;
    await writeFile(file, patched);
    assert.deepEqual((await ask()).body, patched, 'rewritten in place');
    await writeFile(`${file}.new`, obj.stored);
    await rename(`${file}.new`, file);
    const replaced = await ask();
    assert.deepEqual(replaced.body, obj.stored, 'replaced by rename');
    assert.notEqual(header(replaced, 'etag'), header(first, 'etag'));
    await writeFile(join(srv, FQRN, '.cvmfspublished'), 'Cdef\n');
    await c.write(`GET /cvmfs/${FQRN}/.cvmfspublished HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal((await c.reply()).body.toString(), 'Cdef\n');
  } finally { c.destroy(); }
}));
