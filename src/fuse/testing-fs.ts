// Test fixture: a small in-memory read-only filesystem behind FuseOps, and a script that serves it so
// tests touch the mount only from other processes. Not for production; it never frees nodes.
// Usage: node testing-fs.js serve <mnt> [--many N] [--big BYTES] [--loop epoll|threadpool]
//        node testing-fs.js cycle <mnt> <N>      (mount, stat from a child, unmount; N times; prints fd/child counts)
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GridboxError } from '../errors.js';
import { mountFuse, unmountFuse } from './mount.js';
import type { Attr, DirEntryPlus, EntryOut } from './protocol.js';
import { startSession, type FuseOps, type FuseSession, type SessionOptions } from './session.js';

const TTL_S = 60;
const S_IFDIR = 0o040000, S_IFREG = 0o100000, S_IFLNK = 0o120000;

interface Node {
  ino: number;
  mode: number;
  nlink: number;
  data?: Buffer;
  target?: string;
  children?: Map<string, Node>;
  xattrs?: Map<string, string>;
  /** read() fails with this code (checks errno mapping of GridboxError). */
  failWith?: 'STORE_HASH_MISMATCH';
  nlookup: number;
}

export interface TestTreeOptions {
  /** Size of /big.bin (default 10 MiB). */
  bigBytes?: number;
  /** Number of files in /many (default 0). */
  many?: number;
}

/** Deterministic pseudo-random bytes (xorshift32), so a reader can check the sha256 of big.bin. */
export function patternBytes(size: number, seed = 0x9e3779b9): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed >>> 0;
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  for (; i < size; i++) b[i] = i & 0xff;
  return b;
}

export const HELLO = 'hello from a TypeScript FUSE server\n';
export const MTIME = 1_700_000_000.25;

/** The fixture tree as FuseOps, plus the lookup counts it saw (for forget-balance checks). */
export function createTestFs(opts: TestTreeOptions = {}): FuseOps & { root: Node; outstandingLookups(): number } {
  let nextIno = 1;
  const mk = (mode: number, extra: Partial<Node> = {}): Node => ({ ino: nextIno++, mode, nlink: 1, nlookup: 0, ...extra });
  const dir = (entries: [string, Node][]): Node => {
    const d = mk(S_IFDIR | 0o755, { children: new Map(entries) });
    d.nlink = 2 + entries.filter(([, n]) => n.children).length;
    return d;
  };
  const root = mk(S_IFDIR | 0o755, { children: new Map() });
  const hello = mk(S_IFREG | 0o644, { data: Buffer.from(HELLO), xattrs: new Map([['user.hash', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4'], ['user.fqrn', 'test.example.org']]) });
  const shared = mk(S_IFREG | 0o644, { data: Buffer.from('one inode, two names\n'), nlink: 2 });
  const nested = mk(S_IFREG | 0o600, { data: Buffer.from('nested\n') });
  const sub = dir([['nested.txt', nested], ['hard.txt', shared]]);
  const many = dir([]);
  for (let i = 0; i < (opts.many ?? 0); i++) {
    many.children!.set(`f${String(i).padStart(5, '0')}`, mk(S_IFREG | 0o644, { data: Buffer.from(`${i}\n`) }));
  }
  const entries: [string, Node][] = [
    ['hello.txt', hello],
    ['big.bin', mk(S_IFREG | 0o644, { data: patternBytes(opts.bigBytes ?? 10 * 1024 * 1024) })],
    ['link', mk(S_IFLNK | 0o777, { target: 'hello.txt' })],
    ['shared.txt', shared],
    ['sub', sub],
    ['many', many],
    ['broken', mk(S_IFREG | 0o644, { data: Buffer.from('never readable\n'), failWith: 'STORE_HASH_MISMATCH' })],
  ];
  for (const [k, v] of entries) root.children!.set(k, v);
  root.nlink = 4;
  const byIno = new Map<number, Node>();
  const index = (n: Node): void => { byIno.set(n.ino, n); for (const c of n.children?.values() ?? []) index(c); };
  index(root);

  const get = (ino: number): Node => {
    const n = byIno.get(ino);
    if (!n) throw Object.assign(new Error(`no inode ${ino}`), { code: 'ENOENT' });
    return n;
  };
  const attr = (n: Node): Attr => ({
    ino: n.ino, size: n.data?.length ?? (n.target ? Buffer.byteLength(n.target) : 4096), atime: MTIME, mtime: MTIME, ctime: MTIME,
    mode: n.mode, nlink: n.nlink, uid: 0, gid: 0, blksize: 65536,
  });
  const entryOf = (n: Node): EntryOut => { n.nlookup++; return { nodeid: n.ino, generation: 1, entryTtl: TTL_S, attrTtl: TTL_S, attr: attr(n) }; };
  const listing = (d: Node): [string, Node | undefined][] => [['.', d], ['..', undefined], ...d.children!];

  return {
    root,
    outstandingLookups: () => [...byIno.values()].reduce((s, n) => s + n.nlookup, 0),
    async lookup(_ctx, parent, name) {
      // An unlisted name that answers late, whatever happens: lets tests interrupt a request and
      // check that the session forgets an entry the kernel never received.
      if (parent === 1 && name === 'slow') {
        await new Promise((r) => setTimeout(r, 1500));
        return entryOf(hello);
      }
      const child = get(parent).children?.get(name);
      if (!child) throw Object.assign(new Error(`no entry ${name}`), { code: 'ENOENT' });
      return entryOf(child);
    },
    forget(nodeid, nlookup) {
      const n = byIno.get(nodeid);
      if (n) n.nlookup -= nlookup;
    },
    getattr: (_ctx, nodeid) => ({ attrTtl: TTL_S, attr: attr(get(nodeid)) }),
    readlink(_ctx, nodeid) {
      const t = get(nodeid).target;
      if (t === undefined) throw Object.assign(new Error('not a symlink'), { code: 'EINVAL' });
      return t;
    },
    open(_ctx, nodeid) {
      if (get(nodeid).children) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      return { fh: nodeid, keepCache: true };
    },
    async read(_ctx, nodeid, _fh, offset, size) {
      const n = get(nodeid);
      if (n.failWith) throw new GridboxError(n.failWith, `Cannot verify object of inode ${nodeid}`);
      return n.data!.subarray(offset, offset + size);
    },
    opendir: (_ctx, nodeid) => {
      if (!get(nodeid).children) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      return { fh: 0, keepCache: true, cacheDir: true };
    },
    readdir(_ctx, nodeid, _fh, offset) {
      return listing(get(nodeid)).slice(offset).map(([name, n], i) => ({ name, ino: n?.ino ?? 1, mode: n?.mode ?? S_IFDIR, off: offset + i + 1 }));
    },
    readdirplus(_ctx, nodeid, _fh, offset, size) {
      // Only about as many as can fit; the session forgets the ones it could not send.
      const room = Math.ceil(size / 152) + 1;
      return listing(get(nodeid)).slice(offset, offset + room).map(([name, n], i): DirEntryPlus => ({
        name, ino: n?.ino ?? 1, mode: n?.mode ?? S_IFDIR, off: offset + i + 1,
        entry: n && name !== '.' ? entryOf(n) : undefined,
      }));
    },
    statfs: () => ({ blocks: 1 << 20, bfree: 0, bavail: 0, files: byIno.size, ffree: 0, bsize: 4096, namelen: 255 }),
    getxattr(_ctx, nodeid, name) {
      const v = get(nodeid).xattrs?.get(name);
      if (v === undefined) throw Object.assign(new Error(`no xattr ${name}`), { code: 'ENODATA' });
      return v;
    },
    listxattr: (_ctx, nodeid) => [...(get(nodeid).xattrs?.keys() ?? [])],
  };
}

/** Why mounting FUSE tests cannot run here, or undefined. */
export function fuseSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to mount FUSE';
  try {
    accessSync('/dev/fuse', fsConstants.R_OK | fsConstants.W_OK);
  } catch {
    return 'no usable /dev/fuse';
  }
  return undefined;
}

/** This script's path, for spawning it. */
export const FIXTURE_SCRIPT = fileURLToPath(import.meta.url);

export interface RunningFixture {
  child: ChildProcess;
  /** The first JSON line (ready, with the serving pid). */
  ready: { ready: boolean; pid: number; loop: string };
  /** Every JSON line printed so far. */
  lines: any[];
  /** Resolves with the exit code and every JSON line printed. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; lines: any[]; stderr: string }>;
}

/** Spawns `command args` (which runs this script) and waits for its ready line. */
export function startFixture(command: string, args: string[], timeoutMs = 20_000): Promise<RunningFixture> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: any[] = [];
  let stderr = '', buf = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; lines: any[]; stderr: string }>((res) =>
    child.on('close', (code, signal) => res({ code, signal, lines, stderr })));
  return new Promise((res, rej) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); rej(new Error(`fixture not ready after ${timeoutMs} ms: ${stderr}`)); }, timeoutMs);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try { lines.push(JSON.parse(line)); } catch { continue; }
        if (lines.length === 1) { clearTimeout(timer); res({ child, ready: lines[0], exited, lines }); }
      }
    });
    void exited.then((r) => { clearTimeout(timer); if (lines.length === 0) rej(new Error(`fixture exited ${r.code ?? r.signal} before ready: ${r.stderr}`)); });
  });
}

function arg(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

async function serve(mnt: string, argv: string[]): Promise<void> {
  const ops = createTestFs({ many: Number(arg(argv, '--many') ?? 0), bigBytes: arg(argv, '--big') ? Number(arg(argv, '--big')) : undefined });
  const m = await mountFuse(mnt, { fsname: 'gridbox-test', subtype: 'gridboxtest', allowOther: true });
  const errors: string[] = [];
  const session = startSession(m.fd, ops, {
    loop: (arg(argv, '--loop') as SessionOptions['loop']) ?? 'auto',
    onError: (e, w) => errors.push(`${w.opcode}: ${e instanceof Error ? e.message : String(e)}`),
  });
  let stopping = false;
  process.on('SIGTERM', () => {
    if (stopping) return;
    stopping = true;
    m.unmount().catch((e) => { process.stderr.write(`unmount failed: ${String(e)}\n`); process.exit(3); });
  });
  process.on('SIGUSR2', () => {
    process.stdout.write(`${JSON.stringify({ lookups: ops.outstandingLookups(), counts: Object.fromEntries(session.counts), inFlight: session.inFlight })}\n`);
  });
  process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid, loop: session.loop })}\n`);
  await session.closed;
  process.stdout.write(`${JSON.stringify({ closed: true, counts: Object.fromEntries(session.counts), init: session.init, errors })}\n`);
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((res, rej) => execFile(cmd, args, (e, out) => (e ? rej(e) : res(out))));
}

/** Children of this process still alive (none should outlive a mount/unmount cycle). */
function childPids(): string[] {
  const out: string[] = [];
  for (const t of readdirSync('/proc/self/task')) out.push(...readFileSync(`/proc/self/task/${t}/children`, 'utf8').split(' ').filter(Boolean));
  return out;
}

async function cycle(mnt: string, n: number): Promise<void> {
  const ops = createTestFs({ bigBytes: 4096 });
  // Counted after the first cycle: the first spawn() creates libuv's lasting SIGCHLD pipe.
  let fdsBefore = -1;
  let session: FuseSession | undefined;
  for (let i = 0; i < n; i++) {
    if (i === 1) fdsBefore = readdirSync('/proc/self/fd').length;
    const m = await mountFuse(mnt, { fsname: 'gridbox-test', subtype: 'gridboxtest' });
    session = startSession(m.fd, ops);
    const size = await run('stat', ['-c', '%s', `${mnt}/hello.txt`]);
    if (Number(size) !== Buffer.byteLength(HELLO)) throw new Error(`cycle ${i}: stat said ${size}`);
    await m.unmount();
    await session.closed;
  }
  // Let the closed handles' fds be released by libuv before counting.
  await new Promise((r) => setTimeout(r, 50));
  process.stdout.write(`${JSON.stringify({ cycles: n, fdsBefore, fdsAfter: readdirSync('/proc/self/fd').length, children: childPids(), loop: session?.loop })}\n`);
}

async function main(argv: string[]): Promise<void> {
  const [mode, mnt] = argv;
  if (mode === 'serve' && mnt) return serve(mnt, argv.slice(2));
  if (mode === 'cycle' && mnt) return cycle(mnt, Number(argv[2] ?? 1));
  throw new Error('usage: testing-fs.js serve <mnt> [--many N] [--big BYTES] [--loop epoll|threadpool] | cycle <mnt> <N>');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e) => {
    process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  });
}
