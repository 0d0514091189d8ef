// The bulk fetch path of a snapshot: HTTP/1.1 GETs pipelined over a few keep-alive connections to one
// origin (or one forward proxy). A first replication asks for tens of thousands of small objects; through
// node:http each cost a request object, a socket write that wakes the server, and a read, so a loaded
// machine spent more time scheduling than copying. Here one write carries up to `depth` requests and one
// read delivers every response that arrived, on the client and on the server side.
// Deliberately small: GET only, bodies framed by Content-Length. Anything else (chunked bodies, 1xx, a
// broken connection after retries, a timeout) rejects with PipelineUnsupported or a transport error, and
// the caller (fast-source.ts) fetches that object through the Downloader with all its policies instead.
// Responses come back in request order (RFC 9112 §9.3.2), which is what ties a response to its request.
// Written here because no fitting library does it: node:http never pipelines, and undici, which does, parses
// with WebAssembly whose address-space reservation fails under a site's `ulimit -v 4194304`.
import { connect, type Socket } from 'node:net';

export interface PipelineOptions {
  /** Base URL of the repository, e.g. "http://127.0.0.1:8000/cvmfs/sw.example.org". */
  baseUrl: string;
  /** Forward proxy ("http://host:3128"); requests then carry the absolute URI. Default: direct. */
  proxy?: string;
  /** Keep-alive connections. */
  connections: number;
  /** Requests written ahead on one connection before its first response arrived (1: no pipelining). */
  depth: number;
  /** No byte for this long while requests are outstanding: the connection is dropped. */
  timeoutMs: number;
  /** Cap on one body. */
  maxBodyBytes: number;
  userAgent: string;
}

export interface PipelineResponse {
  status: number;
  body: Buffer;
}

/** A response this client does not parse; the request should go through the full downloader. */
export class PipelineUnsupported extends Error {}

interface Pending {
  path: string;
  tries: number;
  resolve(r: PipelineResponse): void;
  reject(e: Error): void;
}

/** Times one request is re-sent after its connection broke before its response arrived. */
const MAX_TRIES = 3;
/** Connection attempts in a row that may fail before everything queued is rejected. */
const MAX_CONNECT_FAILURES = 3;
const CRLFCRLF = Buffer.from('\r\n\r\n');
const MAX_HEAD_BYTES = 64 * 1024;

export class HttpPipeline {
  private readonly queue: Pending[] = [];
  private queueHead = 0;
  private readonly conns = new Set<Connection>();
  private readonly host: string;
  private readonly port: number;
  private readonly hostHeader: string;
  private readonly prefix: string;
  private connectFailures = 0;
  private closed = false;
  private flushScheduled = false;

  constructor(readonly o: PipelineOptions) {
    const base = new URL(o.baseUrl);
    const via = o.proxy !== undefined ? new URL(o.proxy) : base;
    if (base.protocol !== 'http:' || via.protocol !== 'http:') throw new PipelineUnsupported(`only http:// is pipelined (${via.href})`);
    this.host = via.hostname.replace(/^\[(.*)\]$/, '$1');
    this.port = via.port === '' ? 80 : Number(via.port);
    this.hostHeader = base.host;
    const path = base.pathname.replace(/\/+$/, '');
    this.prefix = o.proxy !== undefined ? `${base.protocol}//${base.host}${path}/` : `${path}/`;
  }

  /** GET `<baseUrl>/<rel>`; resolves with any status (the caller decides), rejects on transport failure. */
  get(rel: string): Promise<PipelineResponse> {
    if (this.closed) return Promise.reject(new Error('pipeline closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ path: this.prefix + rel, tries: 0, resolve, reject });
      // Requests made in one turn of the event loop (typically: one per response just read) go out
      // together, one write per connection, instead of one write and one server wake-up each.
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => { this.flushScheduled = false; this.pump(); });
      }
    });
  }

  close(): void {
    this.closed = true;
    for (const c of this.conns) c.destroy();
    this.failQueued(new Error('pipeline closed'));
  }

  /** @internal Next request to send, or undefined. */
  take(): Pending | undefined {
    if (this.queueHead >= this.queue.length) return undefined;
    const p = this.queue[this.queueHead];
    this.queue[this.queueHead++] = undefined as unknown as Pending;
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
    return p;
  }

  /**
   * @internal A connection is gone: requests it did not answer go back in front of the queue (or fail, once
   * tried too often); connections that never connected, MAX_CONNECT_FAILURES in a row, fail the whole queue.
   */
  lost(c: Connection, connected: boolean, unanswered: Pending[], e: Error): void {
    this.conns.delete(c);
    const again = unanswered.filter((p) => {
      if (++p.tries < MAX_TRIES) return true;
      p.reject(e);
      return false;
    });
    if (again.length > 0) this.queue.splice(this.queueHead, 0, ...again);
    if (!connected && ++this.connectFailures >= MAX_CONNECT_FAILURES) {
      this.connectFailures = 0;
      this.failQueued(e);
      return;
    }
    this.pump();
  }

  /** @internal */
  connected(): void {
    this.connectFailures = 0;
  }

  /** @internal The request bytes for one path. */
  requestText(path: string): string {
    return `GET ${path} HTTP/1.1\r\nHost: ${this.hostHeader}\r\nUser-Agent: ${this.o.userAgent}\r\nConnection: keep-alive\r\n\r\n`;
  }

  /** Fills every connection up to `depth`, opening connections while there is queued work. */
  pump(): void {
    if (this.closed) return;
    for (const c of this.conns) {
      if (this.queueHead >= this.queue.length) return;
      c.fill();
    }
    while (this.queueHead < this.queue.length && this.conns.size < this.o.connections) {
      const c = new Connection(this, this.host, this.port);
      this.conns.add(c);
      c.fill();
    }
  }

  private failQueued(e: Error): void {
    for (let p = this.take(); p !== undefined; p = this.take()) p.reject(e);
  }
}

/** One keep-alive connection: requests written in batches, responses parsed as they stream in. */
class Connection {
  private readonly socket: Socket;
  /** Sent, not yet answered, in order. */
  private readonly sent: Pending[] = [];
  private sentHead = 0;
  private isConnected = false;
  private gone = false;
  /** The start of a response head split across reads. */
  private headPart: Buffer | undefined;
  /** The body being read when it spans reads, and how much of it arrived. */
  private body: Buffer | undefined;
  private bodyFilled = 0;
  /** Parsed head of the response whose body is being read. */
  private head: { status: number; length: number; close: boolean } | undefined;

  constructor(private readonly pipe: HttpPipeline, host: string, port: number) {
    this.socket = connect({ host, port, noDelay: true });
    this.socket.setTimeout(pipe.o.timeoutMs, () => this.fail(Object.assign(new Error(`no data for ${pipe.o.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    this.socket.once('connect', () => { this.isConnected = true; pipe.connected(); });
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (e) => this.fail(e));
    this.socket.on('close', () => this.fail(new Error('connection closed by the server')));
  }

  private get outstanding(): number {
    return this.sent.length - this.sentHead;
  }

  /** Sends queued requests until `depth` are outstanding, in one write. */
  fill(): void {
    if (this.gone) return;
    let text = '';
    while (this.outstanding < this.pipe.o.depth) {
      const p = this.pipe.take();
      if (p === undefined) break;
      this.sent.push(p);
      text += this.pipe.requestText(p.path);
    }
    if (text !== '') this.socket.write(text, 'latin1');
  }

  destroy(): void {
    this.fail(new Error('pipeline closed'));
  }

  private onData(chunk: Buffer): void {
    let buf = chunk;
    let off = 0;
    try {
      // A body that began in an earlier read is completed by copying just its own bytes; the rest of the
      // read is framed in place (a body wholly inside one read is handed on as a slice of it, no copy).
      if (this.body !== undefined) {
        const n = Math.min(this.body.length - this.bodyFilled, chunk.length);
        chunk.copy(this.body, this.bodyFilled, 0, n);
        this.bodyFilled += n;
        off = n;
        if (this.bodyFilled < this.body.length) return;
        const body = this.body;
        this.body = undefined;
        if (!this.respond(body)) return;
      } else if (this.headPart !== undefined) {
        // Heads are small: join the partial head with the start of this read only.
        const part = this.headPart;
        buf = Buffer.concat([part, chunk]);
        this.headPart = undefined;
        off = 0;
        const end = buf.indexOf(CRLFCRLF);
        if (end < 0) {
          if (buf.length > MAX_HEAD_BYTES) throw new PipelineUnsupported(`response head longer than ${MAX_HEAD_BYTES} bytes`);
          this.headPart = buf;
          return;
        }
        this.head = parseHead(buf.toString('latin1', 0, end), this.pipe.o.maxBodyBytes);
        // Continue in the read itself from where the head ended.
        off = end + 4 - part.length;
        buf = chunk;
      }
      while (off < buf.length && !this.gone) {
        if (this.head === undefined) {
          const end = buf.indexOf(CRLFCRLF, off);
          if (end < 0) {
            if (buf.length - off > MAX_HEAD_BYTES) throw new PipelineUnsupported(`response head longer than ${MAX_HEAD_BYTES} bytes`);
            this.headPart = Buffer.from(buf.subarray(off));
            break;
          }
          this.head = parseHead(buf.toString('latin1', off, end), this.pipe.o.maxBodyBytes);
          off = end + 4;
        }
        const { length } = this.head;
        if (buf.length - off < length) {
          this.body = Buffer.allocUnsafe(length);
          this.bodyFilled = buf.copy(this.body, 0, off);
          break;
        }
        const body = buf.subarray(off, off + length);
        off += length;
        if (!this.respond(body)) return;
      }
    } catch (e) {
      // The stream can no longer be framed: the request at the head gets the error itself (it is the one
      // this client cannot read), the rest are sent again on another connection.
      const p = this.sent[this.sentHead];
      if (p !== undefined) { this.sent[this.sentHead++] = undefined as unknown as Pending; p.reject(e as Error); }
      this.fail(e as Error);
      return;
    }
    if (this.sentHead > 256 && this.sentHead * 2 > this.sent.length) {
      this.sent.splice(0, this.sentHead);
      this.sentHead = 0;
    }
    this.fill();
  }

  /** Hands a complete response to its request; false when the connection is done (the server closes it). */
  private respond(body: Buffer): boolean {
    const done = this.head!;
    this.head = undefined;
    const p = this.sent[this.sentHead];
    if (p === undefined) throw new PipelineUnsupported('a response nobody asked for');
    this.sent[this.sentHead++] = undefined as unknown as Pending;
    p.resolve({ status: done.status, body });
    if (done.close) {
      this.fail(new Error('the server closed the connection after a response'));
      return false;
    }
    return true;
  }

  private fail(e: Error): void {
    if (this.gone) return;
    this.gone = true;
    this.socket.destroy();
    const unanswered = this.sent.slice(this.sentHead);
    this.sent.length = 0;
    this.sentHead = 0;
    this.pipe.lost(this, this.isConnected, unanswered, e);
  }
}

/** Status, body length and whether the server will close, from a response head (status line + headers). */
function parseHead(text: string, maxBody: number): { status: number; length: number; close: boolean } {
  const m = /^HTTP\/1\.([01]) (\d{3})/.exec(text);
  if (m === null) throw new PipelineUnsupported(`not an HTTP/1.x response: ${JSON.stringify(text.slice(0, 40))}`);
  const status = Number(m[2]);
  if (status < 200) throw new PipelineUnsupported(`interim response ${status}`);
  let length = -1;
  let close = m[1] === '0';
  for (const line of text.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-length') {
      if (!/^\d+$/.test(value) || (length >= 0 && Number(value) !== length)) throw new PipelineUnsupported(`bad Content-Length ${JSON.stringify(value)}`);
      length = Number(value);
    } else if (name === 'transfer-encoding') {
      throw new PipelineUnsupported(`Transfer-Encoding ${value} is not pipelined`);
    } else if (name === 'connection') {
      const v = value.toLowerCase();
      if (v.includes('close')) close = true;
      else if (v.includes('keep-alive')) close = false;
    }
  }
  if (length < 0) throw new PipelineUnsupported('no Content-Length');
  if (length > maxBody) throw new PipelineUnsupported(`body of ${length} bytes is over the cap of ${maxBody}`);
  return { status, length, close };
}
