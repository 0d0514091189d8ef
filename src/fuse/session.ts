// The FUSE request loop over a /dev/fuse fd: reads requests (epoll through a libuv pipe handle, or
// threadpool reads as a fallback), dispatches them to async FuseOps handlers, writes each reply once.
// It is the protocol layer only: no paths, no inode table, no caching policy — that lives in the ops.
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import { edgeOf, isGridboxError } from '../errors.js';
import {
  type AttrOut, type DirEntry, type DirEntryPlus, type EntryOut, type InitOut, type OpenOut, type Statfs,
  IN_HEADER_SIZE, InitFlag, InitFlag2, Opcode, decodeInHeader, decodeInitIn, encodeAttrOut, encodeDirents,
  encodeDirentsPlus, encodeEntryOut, encodeInitOut, encodeOpenOut, encodeOutHeader, encodeStatfs,
  encodeXattrNames, encodeXattrReply, negotiateInit, opcodeName, readCString, readU64,
} from './protocol.js';

type Awaitable<T> = T | Promise<T>;

/** Who asked, and whether the kernel gave up on the request (INTERRUPT: the caller got a signal). */
export interface RequestContext {
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  /** Aborted when the kernel interrupts this request; the session has then already answered EINTR. */
  readonly signal: AbortSignal;
}

/**
 * The filesystem behind the mount. Every member is optional: a missing one answers ENOSYS (the kernel
 * then stops asking for GETXATTR/LISTXATTR/ACCESS/OPENDIR-less opens). Handlers may run concurrently,
 * in any number; each returns plain data or fails with an errno (a number like 2, an object whose `code`
 * is an errno name such as Node's fs errors, or a GridboxError mapped through edgeOf()).
 *
 * nodeid lifetime: nodeid 1 is the root and lives as long as the mount. Any other nodeid comes into
 * existence when the filesystem hands it out in an EntryOut (lookup, readdirplus) and that answer reaches
 * the kernel: each such delivery adds 1 to the node's lookup count (nlookup). forget(nodeid, n) subtracts
 * n; at 0 the kernel holds no more references and the nodeid may be dropped (and later reused with a new
 * `generation`). Answers that never reach the kernel (interrupted request, entry that did not fit in the
 * READDIRPLUS buffer, "." and "..") are forgotten by the session itself, so the rule is simply:
 * every EntryOut with nodeid != 0 you return is balanced by forget() calls totalling 1.
 * GETATTR/OPEN/READ... may name any nodeid with nlookup > 0 (or the root).
 */
export interface FuseOps {
  /** After INIT was negotiated and before its reply is sent; `info` holds the agreed parameters. */
  init?(info: InitOut): Awaitable<void>;
  /** DESTROY (sent at unmount for fuseblk only; a plain fuse session just sees ENODEV). */
  destroy?(): Awaitable<void>;
  /** Resolve `name` in directory `parent`. Throw ENOENT, or return nodeid 0 with entryTtl to cache the miss. */
  lookup?(ctx: RequestContext, parent: number, name: string): Awaitable<EntryOut>;
  /** Drop `nlookup` references; no reply, must not throw. Also called for batch forgets. */
  forget?(nodeid: number, nlookup: number): void;
  getattr?(ctx: RequestContext, nodeid: number, fh: number | undefined): Awaitable<AttrOut>;
  readlink?(ctx: RequestContext, nodeid: number): Awaitable<string | Buffer>;
  /** `flags` are the open(2) flags; the mount is read-only so the kernel rejects writes before us. */
  open?(ctx: RequestContext, nodeid: number, flags: number): Awaitable<OpenOut>;
  /** Up to `size` bytes at `offset`; shorter only at end of file (a short read is EOF to the kernel). */
  read?(ctx: RequestContext, nodeid: number, fh: number, offset: number, size: number): Awaitable<Uint8Array>;
  flush?(ctx: RequestContext, nodeid: number, fh: number): Awaitable<void>;
  /** Last close of a handle from open(); called exactly once per successful open. */
  release?(ctx: RequestContext, nodeid: number, fh: number): Awaitable<void>;
  opendir?(ctx: RequestContext, nodeid: number, flags: number): Awaitable<OpenOut>;
  /**
   * Entries after cookie `offset` (0 = from the start, include "." and ".."), in a stable order; each
   * entry's `off` is the cookie of the next one. Return at least what fits in `size` bytes (~32 B + name
   * each) — the session packs what fits and the kernel asks again from the last packed `off`; [] = end.
   */
  readdir?(ctx: RequestContext, nodeid: number, fh: number, offset: number, size: number): Awaitable<DirEntry[]>;
  /** Like readdir with lookup answers (~152 B + name each); enables FUSE_DO_READDIRPLUS when present. */
  readdirplus?(ctx: RequestContext, nodeid: number, fh: number, offset: number, size: number): Awaitable<DirEntryPlus[]>;
  releasedir?(ctx: RequestContext, nodeid: number, fh: number): Awaitable<void>;
  statfs?(ctx: RequestContext, nodeid: number): Awaitable<Statfs>;
  /** The value of xattr `name`; throw ENODATA if absent. The session does the size-probe protocol. */
  getxattr?(ctx: RequestContext, nodeid: number, name: string): Awaitable<Buffer | string>;
  listxattr?(ctx: RequestContext, nodeid: number): Awaitable<string[]>;
  /** Only sent without `default_permissions`; `mask` is R_OK|W_OK|X_OK or F_OK. */
  access?(ctx: RequestContext, nodeid: number, mask: number): Awaitable<void>;
}

export interface SessionOptions {
  /** 'epoll' (libuv pipe handle, no threadpool), 'threadpool' (fs.read), 'auto' = epoll if available. */
  loop?: 'auto' | 'epoll' | 'threadpool';
  /** Concurrent fs.read calls in threadpool mode; keep below UV_THREADPOOL_SIZE (see the spec notes). */
  threadpoolReaders?: number;
  /** 'auto' lets the kernel choose between READDIR and READDIRPLUS per call (READDIRPLUS_AUTO). */
  readdirplus?: boolean | 'auto';
  /** Largest READ in 4 KiB pages; 256 = 1 MiB (the kernel also caps it by bdi readahead). */
  maxPages?: number;
  maxReadahead?: number;
  maxBackground?: number;
  /**
   * Ask for FUSE passthrough at INIT (the filesystem then registers backing files through the
   * PassthroughPort of fuse/passthrough.ts and names them in OPEN replies). Granted only when offered.
   */
  passthrough?: boolean;
  /**
   * Offer FUSE_NO_OPEN_SUPPORT even though `open` exists: the filesystem may then answer an OPEN with ENOSYS
   * and the kernel opens every later file without asking (READs come with fh 0).
   */
  noOpen?: boolean;
  /**
   * Offered every raw READ request (header and fuse_read_in) before it is decoded: true when it wrote the reply
   * to the device itself (the addon's answer from a cache file, fuse/fast-read.ts); such READs reach no handler
   * and are not in `counts`.
   */
  answerRead?: (request: Buffer) => boolean;
  /** Handler failures that become EIO, and protocol problems; the errno still goes to the kernel. */
  onError?: (err: unknown, where: { opcode: string; nodeid: number }) => void;
}

export interface FuseSession {
  readonly loop: 'epoll' | 'threadpool';
  /** Resolves once the kernel connection is gone (ENODEV after unmount, or close()). */
  readonly closed: Promise<void>;
  /** The parameters agreed at INIT, once it happened. */
  readonly init: InitOut | undefined;
  /** Requests received per opcode name, for diagnostics and tests. */
  readonly counts: ReadonlyMap<string, number>;
  /** Requests whose handlers have not finished. */
  readonly inFlight: number;
  /**
   * Stop reading and close the fd. A still-mounted filesystem then answers ENOTCONN until unmounted.
   * In threadpool mode reads parked in the kernel only return at unmount, so prefer unmount + `closed`.
   */
  close(): void;
}

// A read-only filesystem never needs larger writes; it keeps every request within one 64 KiB read.
const MAX_WRITE = 4096;
const THREADPOOL_BUFFER = 64 * 1024 + 4096;

const ERRNO = osConstants.errno as Record<string, number>;
const { ENOSYS, EIO, EINTR, ERANGE, EPROTO } = ERRNO;

/** Errno for a handler failure; `log` says whether it was unexpected (not a deliberate errno). */
export function errnoOf(e: unknown): { errno: number; log: boolean } {
  if (typeof e === 'number' && Number.isInteger(e) && e > 0) return { errno: e, log: false };
  if (isGridboxError(e)) {
    const name = edgeOf(e).errno;
    return { errno: ERRNO[name] ?? EIO, log: name === 'EIO' };
  }
  if (typeof e === 'object' && e !== null) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && typeof ERRNO[code] === 'number') return { errno: ERRNO[code], log: code === 'EIO' };
  }
  return { errno: EIO, log: true };
}

class Context implements RequestContext {
  private controller: AbortController | undefined;
  constructor(readonly uid: number, readonly gid: number, readonly pid: number) {}
  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    return this.controller.signal;
  }
  abort(): void {
    this.controller ??= new AbortController();
    this.controller.abort(Object.assign(new Error('FUSE request interrupted'), { code: 'EINTR' }));
  }
}

interface Pending {
  ctx: Context;
  answered: boolean;
}

/** Starts serving `fd` (from mountFuse) with `ops`. The session owns the fd from now on. */
export function startSession(fd: number, ops: FuseOps, options: SessionOptions = {}): FuseSession {
  return new Session(fd, ops, options);
}

class Session implements FuseSession {
  readonly loop: 'epoll' | 'threadpool';
  readonly closed: Promise<void>;
  init: InitOut | undefined;
  /** Requests per opcode number; named only when someone asks (a Map update by name per request showed in profiles). */
  private readonly byOpcode: number[] = [];
  private readonly pending = new Map<bigint, Pending>();
  private resolveClosed!: () => void;
  private isClosed = false;
  private pipe: PipeReader | undefined;

  constructor(private readonly fd: number, private readonly ops: FuseOps, private readonly options: SessionOptions) {
    this.closed = new Promise((resolve) => { this.resolveClosed = resolve; });
    const want = options.loop ?? 'auto';
    let pipe: PipeReader | undefined;
    if (want !== 'threadpool') {
      try {
        pipe = openPipeReader(fd, (chunk) => this.onChunk(chunk), (errno) => this.shutdown(errno === UV_EOF || errno === -ERRNO.ENODEV ? undefined : uvError(errno)));
      } catch (e) {
        if (want === 'epoll') throw e;
      }
    }
    if (pipe) {
      this.loop = 'epoll';
      this.pipe = pipe;
    } else {
      this.loop = 'threadpool';
      const readers = Math.max(1, options.threadpoolReaders ?? 2);
      for (let i = 0; i < readers; i++) this.readLoop(Buffer.allocUnsafe(THREADPOOL_BUFFER));
    }
  }

  get counts(): ReadonlyMap<string, number> {
    const m = new Map<string, number>();
    this.byOpcode.forEach((n, op) => { if (n !== undefined) m.set(opcodeName(op), n); });
    return m;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  close(): void {
    this.shutdown();
  }

  private shutdown(err?: unknown): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (err !== undefined) this.options.onError?.(err, { opcode: 'read', nodeid: 0 });
    for (const p of this.pending.values()) p.ctx.abort();
    if (this.pipe) this.pipe.close(); // the pipe handle owns and closes the fd
    else fs.close(this.fd, () => undefined);
    this.resolveClosed();
  }

  private readLoop(buf: Buffer): void {
    if (this.isClosed) return;
    fs.read(this.fd, buf, 0, buf.length, null, (err, n) => {
      if (this.isClosed) return;
      if (err) {
        // EINTR/EAGAIN: retry; ENOENT: the request we were reading was interrupted; ENODEV: unmounted.
        if (err.code === 'EINTR' || err.code === 'EAGAIN' || err.code === 'ENOENT') return this.readLoop(buf);
        return this.shutdown(err.code === 'ENODEV' ? undefined : err);
      }
      if (n === 0) return this.shutdown();
      // Handlers decode their arguments synchronously, so the buffer can be reused at once.
      this.onChunk(buf.subarray(0, n));
      this.readLoop(buf);
    });
  }

  private onChunk(chunk: Buffer): void {
    // One read(2) on /dev/fuse is one request; the loop guards against a stream ever merging chunks.
    let off = 0;
    while (chunk.length - off >= IN_HEADER_SIZE) {
      const len = chunk.readUInt32LE(off);
      if (len < IN_HEADER_SIZE || off + len > chunk.length) {
        this.options.onError?.(new Error(`malformed FUSE request: length ${len}, chunk ${chunk.length - off}`), { opcode: 'read', nodeid: 0 });
        return;
      }
      this.dispatch(chunk.subarray(off, off + len));
      off += len;
    }
  }

  private count(op: number): void {
    this.byOpcode[op] = (this.byOpcode[op] ?? 0) + 1;
  }

  /** Writes one reply; false if the kernel no longer wants it (interrupted → ENOENT) or is gone. */
  private write(unique: bigint, error: number, payload?: Uint8Array): boolean {
    if (this.isClosed) return false;
    const header = encodeOutHeader(payload ? payload.length : 0, error === 0 ? 0 : -error, unique);
    try {
      if (payload && payload.length > 0) fs.writevSync(this.fd, [header, payload]);
      else fs.writeSync(this.fd, header);
      return true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENODEV') this.shutdown();
      else if (code !== 'ENOENT') this.options.onError?.(e, { opcode: 'write', nodeid: 0 });
      return false;
    }
  }

  private forgetUndelivered(nodeid: number): void {
    if (nodeid !== 0) this.safeForget(nodeid, 1);
  }

  private safeForget(nodeid: number, nlookup: number): void {
    try {
      this.ops.forget?.(nodeid, nlookup);
    } catch (e) {
      this.options.onError?.(e, { opcode: 'FORGET', nodeid });
    }
  }

  private dispatch(req: Buffer): void {
    if (this.options.answerRead !== undefined && req.readUInt32LE(4) === Opcode.READ && this.options.answerRead(req)) return;
    const h = decodeInHeader(req);
    const arg = req.subarray(IN_HEADER_SIZE);
    this.count(h.opcode);
    const ops = this.ops;
    switch (h.opcode) {
      case Opcode.FORGET:
        return this.safeForget(h.nodeid, readU64(arg, 0));
      case Opcode.BATCH_FORGET: {
        const n = arg.readUInt32LE(0);
        for (let i = 0; i < n; i++) this.safeForget(readU64(arg, 8 + i * 16), readU64(arg, 16 + i * 16));
        return;
      }
      case Opcode.INTERRUPT: {
        // No reply to INTERRUPT itself. The interrupted request is answered EINTR now; its handler's
        // late result is dropped (and any nodeid in it forgotten).
        const p = this.pending.get(arg.readBigUInt64LE(0));
        if (p && !p.answered) {
          p.answered = true;
          p.ctx.abort();
          this.write(arg.readBigUInt64LE(0), EINTR);
        }
        return;
      }
      case Opcode.INIT:
        return this.handle(h.unique, h, async () => this.onInit(arg));
    }
    const ctx = new Context(h.uid, h.gid, h.pid);
    const id = h.nodeid;
    switch (h.opcode) {
      case Opcode.LOOKUP: {
        const name = readCString(arg, 0);
        return this.run(h.unique, h, ctx, ops.lookup && (() => ops.lookup!(ctx, id, name)), encodeEntryOut, (e) => this.forgetUndelivered(e.nodeid));
      }
      case Opcode.GETATTR: {
        const fh = arg.readUInt32LE(0) & 1 ? readU64(arg, 8) : undefined; // FUSE_GETATTR_FH
        return this.run(h.unique, h, ctx, ops.getattr && (() => ops.getattr!(ctx, id, fh)), encodeAttrOut);
      }
      case Opcode.READLINK:
        return this.run(h.unique, h, ctx, ops.readlink && (() => ops.readlink!(ctx, id)), (v) => (typeof v === 'string' ? Buffer.from(v) : v));
      case Opcode.OPEN: {
        const flags = arg.readUInt32LE(0);
        return this.run(h.unique, h, ctx, ops.open && (() => ops.open!(ctx, id, flags)), encodeOpenOut, (o) => ops.release?.(ctx, id, o.fh));
      }
      case Opcode.OPENDIR: {
        const flags = arg.readUInt32LE(0);
        return this.run(h.unique, h, ctx, ops.opendir && (() => ops.opendir!(ctx, id, flags)), encodeOpenOut, (o) => ops.releasedir?.(ctx, id, o.fh));
      }
      case Opcode.READ: {
        const fh = readU64(arg, 0), offset = readU64(arg, 8), size = arg.readUInt32LE(16);
        return this.run(h.unique, h, ctx, ops.read && (() => ops.read!(ctx, id, fh, offset, size)), (b) => (b.length > size ? b.subarray(0, size) : b));
      }
      case Opcode.READDIR: {
        const fh = readU64(arg, 0), offset = readU64(arg, 8), size = arg.readUInt32LE(16);
        return this.run(h.unique, h, ctx, ops.readdir && (() => ops.readdir!(ctx, id, fh, offset, size)), (es) => encodeDirents(es, size).data);
      }
      case Opcode.READDIRPLUS: {
        const fh = readU64(arg, 0), offset = readU64(arg, 8), size = arg.readUInt32LE(16);
        return this.readdirplus(h.unique, h, ctx, fh, offset, size);
      }
      case Opcode.RELEASE:
      case Opcode.RELEASEDIR: {
        const fh = readU64(arg, 0);
        const fn = h.opcode === Opcode.RELEASE ? ops.release : ops.releasedir;
        // Always 0 for release: the kernel ignores the error, and ENOSYS here would mean nothing.
        return this.run(h.unique, h, ctx, () => fn?.call(ops, ctx, id, fh), () => undefined);
      }
      case Opcode.FLUSH: {
        const fh = readU64(arg, 0);
        return this.run(h.unique, h, ctx, ops.flush && (() => ops.flush!(ctx, id, fh)), () => undefined);
      }
      case Opcode.STATFS:
        return this.run(h.unique, h, ctx, ops.statfs && (() => ops.statfs!(ctx, id)), encodeStatfs);
      case Opcode.ACCESS: {
        const mask = arg.readUInt32LE(0);
        return this.run(h.unique, h, ctx, ops.access && (() => ops.access!(ctx, id, mask)), () => undefined);
      }
      case Opcode.GETXATTR: {
        const size = arg.readUInt32LE(0), name = readCString(arg, 8);
        return this.run(h.unique, h, ctx, ops.getxattr && (() => ops.getxattr!(ctx, id, name)),
          (v) => encodeXattrReply(typeof v === 'string' ? Buffer.from(v) : v, size));
      }
      case Opcode.LISTXATTR: {
        const size = arg.readUInt32LE(0);
        return this.run(h.unique, h, ctx, ops.listxattr && (() => ops.listxattr!(ctx, id)), (names) => encodeXattrReply(encodeXattrNames(names), size));
      }
      case Opcode.DESTROY:
        return this.run(h.unique, h, ctx, () => ops.destroy?.(), () => undefined);
      default:
        this.write(h.unique, ENOSYS);
    }
  }

  private async onInit(arg: Buffer): Promise<Buffer> {
    const offered = decodeInitIn(arg, 0);
    if (offered.major !== 7) {
      // A newer major: answer with ours only and the kernel retries INIT (fuse.h "INIT request and reply").
      if (offered.major > 7) return encodeInitOut({ major: 7, minor: 31, maxReadahead: 0, flags: 0, maxBackground: 0, congestionThreshold: 0, maxWrite: 0, timeGran: 0, maxPages: 0 });
      throw EPROTO;
    }
    const o = this.options;
    const rdp = this.ops.readdirplus ? (o.readdirplus ?? true) : false;
    let flags = InitFlag.ASYNC_READ | InitFlag.BIG_WRITES | InitFlag.MAX_PAGES | InitFlag.PARALLEL_DIROPS |
      InitFlag.CACHE_SYMLINKS | InitFlag.ASYNC_DIO;
    if (rdp) flags |= InitFlag.DO_READDIRPLUS | (rdp === 'auto' ? InitFlag.READDIRPLUS_AUTO : 0);
    // With these, an ENOSYS answer to OPEN/OPENDIR means "no state needed" and the kernel stops asking.
    if (!this.ops.open || o.noOpen) flags |= InitFlag.NO_OPEN_SUPPORT;
    if (!this.ops.opendir) flags |= InitFlag.NO_OPENDIR_SUPPORT;
    const info = negotiateInit(offered, {
      flags, flags2: o.passthrough ? InitFlag2.PASSTHROUGH : 0, maxStackDepth: 1, maxReadahead: o.maxReadahead ?? 1024 * 1024, maxPages: o.maxPages ?? 256,
      maxBackground: o.maxBackground ?? 64, congestionThreshold: Math.floor(((o.maxBackground ?? 64) * 3) / 4),
      maxWrite: MAX_WRITE, timeGran: 1,
    });
    await this.ops.init?.(info);
    this.init = info;
    return encodeInitOut(info);
  }

  private handle(unique: bigint, h: { opcode: number; nodeid: number }, fn: () => Promise<Buffer>): void {
    this.run(unique, h, new Context(0, 0, 0), fn, (b) => b);
  }

  /**
   * Runs one handler and answers once. `encode` turns the result into the reply payload; `undelivered`
   * gets a result that never reached the kernel (forget its nodeid, release its handle).
   */
  private run<T>(
    unique: bigint, h: { opcode: number; nodeid: number }, ctx: Context, fn: (() => Awaitable<T>) | undefined,
    encode: (v: T) => Uint8Array | 'ERANGE' | undefined, undelivered?: (v: T) => unknown,
  ): void {
    if (!fn) {
      this.write(unique, ENOSYS);
      return;
    }
    const p: Pending = { ctx, answered: false };
    const where = (): { opcode: string; nodeid: number } => ({ opcode: opcodeName(h.opcode), nodeid: h.nodeid });
    const fail = (e: unknown): void => {
      this.pending.delete(unique);
      if (p.answered) return;
      p.answered = true;
      const { errno, log } = errnoOf(e);
      if (log) this.options.onError?.(e, where());
      this.write(unique, errno);
    };
    const done = (v: T): void => {
      this.pending.delete(unique);
      let delivered = false;
      if (!p.answered) {
        let payload: Uint8Array | 'ERANGE' | undefined;
        try {
          payload = encode(v);
        } catch (e) {
          fail(e);
        }
        if (!p.answered) {
          p.answered = true;
          if (payload === 'ERANGE') this.write(unique, ERANGE);
          else delivered = this.write(unique, 0, payload);
        }
      }
      if (!delivered && undelivered) {
        Promise.resolve().then(() => undelivered(v)).catch((e) => this.options.onError?.(e, where()));
      }
    };
    let r: Awaitable<T>;
    try {
      r = fn();
    } catch (e) {
      fail(e);
      return;
    }
    if (r instanceof Promise) {
      this.pending.set(unique, p);
      r.then(done, fail);
    } else {
      done(r);
    }
  }

  private readdirplus(unique: bigint, h: { opcode: number; nodeid: number }, ctx: Context, fh: number, offset: number, size: number): void {
    const ops = this.ops;
    if (!ops.readdirplus) {
      // The kernel sends READDIRPLUS only when we asked for it; be safe anyway.
      this.write(unique, ENOSYS);
      return;
    }
    let counted: boolean[] | undefined;
    this.run(unique, h, ctx, () => ops.readdirplus!(ctx, h.nodeid, fh, offset, size), (es) => {
      const r = encodeDirentsPlus(es, size);
      counted = r.counted;
      // Entries that were not sent, or sent without a counted lookup ("." and ".."), are forgotten now.
      es.forEach((e, i) => { if (!r.counted[i] && e.entry) this.forgetUndelivered(e.entry.nodeid); });
      return r.data;
    }, (es) => {
      // The reply was lost or never sent: forget what the kernel did not count.
      es.forEach((e, i) => { if (e.entry && (counted === undefined || counted[i])) this.forgetUndelivered(e.entry.nodeid); });
    });
  }
}

/** A libuv pipe handle reading /dev/fuse (O_NONBLOCK + epoll, no threadpool thread parked on it), no net.Socket around it. */
interface PipeReader { close(): void }

const UV_EOF = -4095;

function uvError(errno: number): Error {
  const uv = (process as unknown as { binding(name: string): { errname(n: number): string } }).binding('uv');
  const code = uv.errname(errno);
  return Object.assign(new Error(`read of /dev/fuse failed: ${code}`), { code, errno });
}

/**
 * Reads the device with a libuv pipe handle (epoll, no threadpool) and hands each read to `onChunk` straight
 * from the handle's read callback. A net.Socket around the same handle put every request through the Readable
 * machinery (push, buffering, 'data' emit) first, ~20% of a small request's CPU in the daemon's profiles.
 * process.binding('pipe_wrap') and ('stream_wrap') are deprecated in docs only (DEP0111) and allow-listed in
 * Node 20; the threadpool loop is the fallback when they are unavailable (e.g. --permission). The handle calls
 * `onread` with the read's bytes in an ArrayBuffer, their count and offset in stream_wrap's shared state.
 */
function openPipeReader(fd: number, onChunk: (chunk: Buffer) => void, onEnd: (errno: number) => void): PipeReader {
  const bind = (name: string): any => (process as unknown as { binding(name: string): any }).binding(name);
  const pipeWrap = bind('pipe_wrap');
  const streamWrap = bind('stream_wrap');
  const state: Int32Array = streamWrap.streamBaseState;
  const NREAD: number = streamWrap.kReadBytesOrError;
  const OFFSET: number = streamWrap.kArrayBufferOffset;
  if (!(state instanceof Int32Array) || typeof NREAD !== 'number' || typeof OFFSET !== 'number') throw new Error('stream_wrap has no streamBaseState');
  const handle = new pipeWrap.Pipe(pipeWrap.constants.SOCKET);
  const err = handle.open(fd);
  if (typeof err === 'number' && err < 0) throw Object.assign(new Error(`uv_pipe_open(${fd}) failed: ${err}`), { errno: err });
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    handle.readStop();
    handle.close();
  };
  handle.onread = (ab: ArrayBuffer | undefined): void => {
    const nread = state[NREAD];
    if (nread > 0 && ab !== undefined) { onChunk(Buffer.from(ab, state[OFFSET], nread)); return; }
    if (nread === 0 || closed) return;
    close();
    onEnd(nread);
  };
  const started = handle.readStart();
  // Not closed on failure: closing the handle would close the fd, which the threadpool loop then reads instead.
  if (typeof started === 'number' && started < 0) throw Object.assign(new Error(`uv_read_start on fd ${fd} failed: ${started}`), { errno: started });
  return { close };
}
