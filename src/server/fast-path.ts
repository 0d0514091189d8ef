// The fast path of `gridbox serve`: plain GET and HEAD of /cvmfs/ paths answered on the connection
// itself. node:http builds an IncomingMessage, a ServerResponse, header maps and a handful of events per
// request, which costs more CPU than reading a 64 KiB object from memory and writing it out; here a
// request is one string split and one writev of pre-built header bytes, the Date/Connection lines and
// the body.
// It parses only what it answers. Anything else (other methods or paths such as /metrics and the
// accounting POST, ranges, request bodies, upgrades, anything malformed or larger than node:http allows)
// hands the connection, with the bytes not yet answered, to node:http for good, so every unusual case
// keeps the one behaviour node:http gives it (405, 400, 431, 206...). Requests are answered in order;
// the answers come from srv-handler's RawAnswerer, which makes the same headers node:http sends.
import { createReadStream, type ReadStream } from 'node:fs';
import type { Socket } from 'node:net';
import type { RawAnswer, RawAnswerer, RequestInfo } from './srv-handler.js';

/** Bytes of request head the fast path waits for: node:http's default --max-http-header-size. */
export const MAX_HEADER_BYTES = 16 * 1024;

export interface FastPathOptions {
  answer: RawAnswerer;
  /** Called once per answered request, as srv-handler's onRequest. */
  onRequest?: (info: RequestInfo) => void;
  /** node:http's keepAliveTimeout: idle connections close after it, and the Keep-Alive header says so. */
  keepAliveTimeoutMs: number;
  /** Gives the connection to node:http; the bytes it has not answered are unshifted back first. */
  handOff: (socket: Socket) => void;
}

/** One request the fast path answers. */
export interface FastRequest {
  method: 'GET' | 'HEAD';
  /** The request target as sent, query included (what logs show). */
  url: string;
  /** The target without its query. */
  urlPath: string;
  keepAlive: boolean;
  ifNoneMatch?: string;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Control characters other than tab: llhttp refuses them in header values. */
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
/** Origin-form targets below /cvmfs/ of visible ASCII only; anything else is node:http's to judge. */
const TARGET = /^\/cvmfs\/[\x21-\x7e]*$/;

/**
 * Parses a request head (the text before its blank line) that the fast path answers: GET or HEAD of a
 * /cvmfs/ target, HTTP/1.0 or 1.1, well-formed headers, no body, no range. undefined for anything else.
 */
export function parseRequestHead(text: string): FastRequest | undefined {
  const lines = text.split('\r\n');
  const line = lines[0];
  const sp1 = line.indexOf(' ');
  const method = line.slice(0, sp1);
  if (method !== 'GET' && method !== 'HEAD') return undefined;
  const sp2 = line.indexOf(' ', sp1 + 1);
  if (sp2 < 0) return undefined;
  const version = line.slice(sp2 + 1);
  const v11 = version === 'HTTP/1.1';
  if (!v11 && version !== 'HTTP/1.0') return undefined;
  const url = line.slice(sp1 + 1, sp2);
  if (!TARGET.test(url)) return undefined;
  let host = false;
  let close = false;
  let keep = false;
  let ifNoneMatch: string | undefined;
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i];
    const colon = l.indexOf(':');
    if (colon <= 0) return undefined;
    const name = l.slice(0, colon);
    if (!TOKEN.test(name)) return undefined;
    const raw = l.slice(colon + 1);
    if (BAD_VALUE.test(raw)) return undefined;
    switch (name.toLowerCase()) {
      case 'host':
        if (host) return undefined;
        host = true;
        break;
      case 'connection':
        for (const t of raw.split(',')) {
          const token = t.trim().toLowerCase();
          if (token === 'close') close = true;
          else if (token === 'keep-alive') keep = true;
          else if (token === 'upgrade') return undefined;
        }
        break;
      case 'if-none-match':
        // node:http joins repeated headers with ", "; the ETag check splits on commas.
        ifNoneMatch = ifNoneMatch === undefined ? raw.trim() : `${ifNoneMatch}, ${raw.trim()}`;
        break;
      case 'range': case 'if-range': case 'content-length': case 'transfer-encoding': case 'expect': case 'upgrade':
        return undefined;
      default:
        break;
    }
  }
  // node:http answers 400 to an HTTP/1.1 request without Host (requireHostHeader).
  if (v11 && !host) return undefined;
  const qm = url.indexOf('?');
  // llhttp's rule: 1.1 stays open unless "close"; 1.0 only with "keep-alive".
  return { method, url, urlPath: qm < 0 ? url : url.slice(0, qm), keepAlive: v11 ? !close : keep, ifNoneMatch };
}

const HEAD_END = Buffer.from('\r\n\r\n');
const BARE_LF_END = Buffer.from('\n\n');

/** The Date and Connection lines node:http adds, made once a second. */
class Tails {
  private second = -1;
  private keep = Buffer.alloc(0);
  private close = Buffer.alloc(0);
  constructor(private readonly keepAliveS: number) {}
  get(keepAlive: boolean): Buffer {
    const now = Math.floor(Date.now() / 1000);
    if (now !== this.second) {
      this.second = now;
      const date = new Date(now * 1000).toUTCString();
      this.keep = Buffer.from(`Date: ${date}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=${this.keepAliveS}\r\n\r\n`, 'latin1');
      this.close = Buffer.from(`Date: ${date}\r\nConnection: close\r\n\r\n`, 'latin1');
    }
    return keepAlive ? this.keep : this.close;
  }
}

const tailsByTimeout = new Map<number, Tails>();

/**
 * Idle connections are closed by one sweep a second over all of them, as node:http checks its
 * connections, rather than by a socket timeout that re-arms a timer on every read and write.
 */
const open = new Set<FastConnection>();
let sweeper: NodeJS.Timeout | undefined;
const SWEEP_MS = 1000;

function sweep(): void {
  const now = Date.now();
  for (const c of open) c.closeIfIdle(now);
  if (open.size === 0 && sweeper !== undefined) { clearInterval(sweeper); sweeper = undefined; }
}

interface Pending { method: string; url: string; status: number; bytes: number; t0: bigint }

/** Serves `socket` on the fast path until it closes or is handed to node:http. */
export function acceptFast(socket: Socket, o: FastPathOptions): void {
  const s = Math.floor(o.keepAliveTimeoutMs / 1000);
  let tails = tailsByTimeout.get(s);
  if (tails === undefined) { tails = new Tails(s); tailsByTimeout.set(s, tails); }
  const c = new FastConnection(socket, o, tails);
  if (o.keepAliveTimeoutMs > 0) {
    open.add(c);
    if (sweeper === undefined) { sweeper = setInterval(sweep, SWEEP_MS); sweeper.unref(); }
  }
}

class FastConnection {
  /** Received bytes not yet answered (a partial request head, or pipelined requests waiting their turn). */
  private buf: Buffer | undefined;
  /** The last answer is still in the socket's queue: answer nothing more until it drains. */
  private waiting = false;
  private streaming: ReadStream | undefined;
  /** No more requests: "Connection: close" or HTTP/1.0 was answered. */
  private closing = false;
  private peerEnded = false;
  /** Handed to node:http, or closed. */
  private gone = false;
  /** One entry per answer in the socket's queue, in order; its write callback takes it off. */
  private readonly pending: (Pending | undefined)[] = [];
  private readonly remote: string | undefined;
  private lastActive = Date.now();

  constructor(private readonly socket: Socket, private readonly o: FastPathOptions, private readonly tails: Tails) {
    this.remote = socket.remoteAddress;
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.gone || this.closing) return;
    this.lastActive = Date.now();
    this.buf = this.buf === undefined ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.waiting || this.streaming !== undefined) {
      // A client pipelining faster than it reads: stop reading until the answers drain.
      if (this.buf.length > MAX_HEADER_BYTES) this.socket.pause();
      return;
    }
    this.pump();
  };

  /** Answers every complete request in the buffer, in order, until one needs the socket to drain first. */
  private pump(): void {
    while (this.buf !== undefined && !this.waiting && this.streaming === undefined && !this.closing && !this.gone) {
      const buf = this.buf;
      const end = buf.indexOf(HEAD_END);
      if (end < 0) {
        // Bare-LF line ends, or a head that can never fit: node:http gives these their 400 or 431.
        if (buf.length > MAX_HEADER_BYTES || buf.includes(BARE_LF_END)) this.handOff();
        return;
      }
      const req = end + 4 > MAX_HEADER_BYTES ? undefined : parseRequestHead(buf.toString('latin1', 0, end));
      if (req === undefined) { this.handOff(); return; }
      this.buf = end + 4 < buf.length ? buf.subarray(end + 4) : undefined;
      this.respond(req);
    }
    if (this.peerEnded && !this.waiting && this.streaming === undefined && !this.gone) this.socket.end();
  }

  private respond(req: FastRequest): void {
    const t0 = this.o.onRequest === undefined ? 0n : process.hrtime.bigint();
    const a = this.o.answer(req.method === 'HEAD', req.urlPath, req.ifNoneMatch);
    const s = this.socket;
    const p: Pending | undefined = this.o.onRequest === undefined ? undefined : { method: req.method, url: req.url, status: a.status, bytes: a.bytes, t0 };
    if (!req.keepAlive) this.closing = true;
    const tail = this.tails.get(req.keepAlive);
    s.cork();
    s.write(a.head);
    if (a.file !== undefined) {
      s.write(tail);
      s.uncork();
      this.stream(a, a.file, p);
      return;
    }
    this.pending.push(p);
    if (a.body !== undefined) { s.write(tail); s.write(a.body, this.afterWrite); } else s.write(tail, this.afterWrite);
    s.uncork();
    this.afterQueued();
  }

  /** After an answer is queued: close if it was the last, else wait for a drain if the kernel did not take it all. */
  private afterQueued(): void {
    if (this.closing) this.socket.end();
    else if (this.socket.writableLength > 0) this.waiting = true;
  }

  private stream(a: RawAnswer, file: string, p: Pending | undefined): void {
    const s = this.socket;
    const rs = createReadStream(file, { start: 0, end: a.length - 1 });
    this.streaming = rs;
    let sent = 0;
    // The last chunk is written with the answer's callback, so it is held back by one.
    let held: Buffer | undefined;
    const resume = (): void => { rs.resume(); };
    rs.on('data', (chunk: string | Buffer) => {
      const c = chunk as Buffer;
      if (held !== undefined && !s.write(held)) { rs.pause(); s.once('drain', resume); }
      held = c;
      sent += c.length;
    });
    rs.on('error', () => s.destroy());
    rs.on('end', () => {
      this.streaming = undefined;
      // The file shrank after its size was sent: the promised length cannot be kept, so the client must see a cut.
      if (held === undefined || sent !== a.length) { s.destroy(); return; }
      this.pending.push(p);
      s.write(held, this.afterWrite);
      this.afterQueued();
      if (!this.waiting) this.resumeReading();
    });
  }

  /** Write callback of each answer's last bytes: logs it, and answers more once the queue is empty. */
  private readonly afterWrite = (err?: Error | null): void => {
    const p = this.pending.shift();
    if (p !== undefined && (err === undefined || err === null)) {
      this.o.onRequest!({ method: p.method, url: p.url, status: p.status, bytes: p.bytes, seconds: Number(process.hrtime.bigint() - p.t0) / 1e9, remote: this.remote });
    }
    if (this.waiting && this.socket.writableLength === 0 && !this.gone) {
      this.waiting = false;
      this.resumeReading();
    }
  };

  private resumeReading(): void {
    if (this.socket.isPaused()) this.socket.resume();
    this.pump();
  }

  private handOff(): void {
    this.gone = true;
    const s = this.socket;
    s.off('data', this.onData);
    s.off('end', this.onEnd);
    s.off('error', this.onError);
    s.off('close', this.onClose);
    open.delete(this);
    if (this.peerEnded) {
      // The client sent its last bytes and half-closed; node:http never sees a connection begin after
      // its end, so the unusual tail goes unanswered, as if the client had not waited for it.
      s.end();
      return;
    }
    s.pause();
    if (this.buf !== undefined) s.unshift(this.buf);
    this.buf = undefined;
    this.o.handOff(s);
    s.resume();
  }

  private readonly onEnd = (): void => {
    this.peerEnded = true;
    if (!this.waiting && this.streaming === undefined) this.socket.end();
  };

  private readonly onError = (): void => { this.socket.destroy(); };

  private readonly onClose = (): void => {
    this.gone = true;
    open.delete(this);
    this.streaming?.destroy();
    this.streaming = undefined;
  };

  /**
   * Nothing received for keepAliveTimeoutMs: close, as node:http closes an idle keep-alive connection
   * (a partial request head counts as idle too). An answer still being written is left alone.
   */
  closeIfIdle(now: number): void {
    if (this.waiting || this.streaming !== undefined) this.lastActive = now;
    else if (now - this.lastActive >= this.o.keepAliveTimeoutMs) this.socket.destroy();
  }
}
