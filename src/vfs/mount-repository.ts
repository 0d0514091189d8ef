// The mount's composition root: a FUSE mount at a mountpoint served by createRepositoryFs over a client,
// resolved once the kernel's INIT is answered, and a clean unmount. Takes an open client; does not read
// configuration, daemonize or enter namespaces (the CLI does).
import { readFileSync, writeFileSync } from 'node:fs';
import { GridboxError, isGridboxError, q } from '../errors.js';
import type { Client } from '../client/index.js';
import { mountFuse, type FuseMount } from '../fuse/mount.js';
import { createPassthrough } from '../fuse/passthrough.js';
import { createFastRead } from '../fuse/fast-read.js';
import { InitFlag2, type InitOut } from '../fuse/protocol.js';
import { startSession, type FuseSession } from '../fuse/session.js';
import { createRepositoryFs, type RepositoryFsStats } from './repository-fs.js';
import { createStartProfiler } from './start-profile.js';
import { repositoryMountOptions } from './mount-options.js';

export interface MountRepositoryOptions {
  client: Client;
  mountpoint: string;
  /** Request loop (default auto = epoll). */
  loop?: 'auto' | 'epoll' | 'threadpool';
  log?: (line: string) => void;
  extraXattrs?: () => Record<string, string>;
  /** Where start-up profiles are kept (start-profile.ts); absent: no recording or prefetch. */
  profileDir?: string;
  /** FUSE passthrough for whole files cached locally (default true; off without the addon or privilege). */
  passthrough?: boolean;
  /** Where passthrough is off, let the kernel open files without asking (RepositoryFsOptions.openless; default true). */
  openless?: boolean;
  /** Openless without passthrough: READs of cached files answered by the addon, not in JavaScript (default true). */
  fastRead?: boolean;
  /**
   * Readahead of the mount's bdi in KiB (default 1024: with max_pages 256 the kernel then sends 1 MiB
   * READs instead of 128 KiB). Needs real root; in a user namespace the kernel default stays. 0 = leave it.
   */
  readAheadKb?: number;
  /**
   * A FUSE mount already made at `mountpoint` (mountFuse) whose session has not started: the caller mounted
   * while the client was opening, so mount(8) and the repository's network round trips overlap.
   */
  fuse?: FuseMount;
}

export { repositoryMountOptions } from './mount-options.js';

/** The mount's device ("0:NN") from /proc/self/mountinfo, read without sending the mount a request. */
function mountDevice(mountpoint: string): string | undefined {
  const esc = mountpoint.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  let dev: string | undefined;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[4] === esc) dev = f[2]; // the last one is the top of the stack
  }
  return dev;
}

/** Raises the bdi readahead of our mount; a failure (not root, userns) leaves the kernel default. */
function setReadAhead(mountpoint: string, kb: number, log?: (line: string) => void): void {
  if (kb <= 0) return;
  const dev = mountDevice(mountpoint);
  if (dev === undefined) return;
  try {
    writeFileSync(`/sys/class/bdi/${dev}/read_ahead_kb`, String(kb));
  } catch (e) {
    if (process.getuid?.() === 0 && (e as NodeJS.ErrnoException).code !== 'EACCES') log?.(`cannot set read_ahead_kb of ${q(mountpoint)} (${dev}): ${(e as Error).message}`);
  }
}

export interface MountedRepository {
  readonly mountpoint: string;
  readonly session: FuseSession;
  /** Resolves when the kernel connection is gone (our unmount, someone's umount, or abort). */
  readonly closed: Promise<void>;
  fsStats(): RepositoryFsStats;
  /** Unmounts (asynchronously: the session keeps answering umount's STATFS) and waits for the session to end. */
  unmount(opts?: { lazy?: boolean }): Promise<void>;
}

const INIT_TIMEOUT_MS = 15_000;

export async function mountRepository(o: MountRepositoryOptions): Promise<MountedRepository> {
  const m: FuseMount = o.fuse ?? await mountFuse(o.mountpoint, repositoryMountOptions(o.client.fqrn));
  const passthrough = o.passthrough === false ? undefined : createPassthrough(m.fd, o.log);
  const profiler = o.profileDir === undefined ? undefined : createStartProfiler({ dir: o.profileDir, client: o.client, log: o.log });
  // Openless without passthrough: a warm open of a cached file then costs no request at all.
  const openless = o.openless ?? true;
  const fastRead = openless && passthrough === undefined && o.fastRead !== false ? createFastRead(m.fd) : undefined;
  const fs = createRepositoryFs(o.client, { log: o.log, extraXattrs: o.extraXattrs, passthrough, profiler, openless, fastRead });
  let initDone!: () => void;
  const initSeen = new Promise<void>((resolve) => { initDone = resolve; });
  const ops = {
    ...fs,
    init: (info: InitOut) => {
      if (passthrough && !((info.flags2 ?? 0) & InitFlag2.PASSTHROUGH)) passthrough.disable('the kernel did not grant FUSE_PASSTHROUGH at INIT');
      initDone();
    },
  };
  const session = startSession(m.fd, ops, {
    loop: o.loop ?? 'auto',
    passthrough: passthrough !== undefined,
    noOpen: openless,
    answerRead: fastRead === undefined ? undefined : (request) => fastRead.serve(request),
    onError: (e, where) => {
      // Handler failures were already logged with their path by the filesystem view.
      if (!isGridboxError(e)) o.log?.(`FUSE ${where.opcode} nodeid ${where.nodeid}: ${e instanceof Error ? e.message : String(e)}`);
    },
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), INIT_TIMEOUT_MS); });
  const first = await Promise.race([initSeen.then(() => 'init' as const), session.closed.then(() => 'closed' as const), timeout]);
  clearTimeout(timer);
  if (first !== 'init') {
    await m.unmount({ lazy: true }).catch(() => undefined);
    session.close();
    throw new GridboxError('MOUNT_FAILED', `Mounted ${q(m.mountpoint)} but the kernel ${first === 'closed' ? 'closed the connection' : 'sent no INIT'}`, { path: m.mountpoint });
  }
  // After the INIT reply is written: the kernel lowers the bdi readahead to INIT's max_readahead then.
  await new Promise<void>((resolve) => setImmediate(resolve));
  setReadAhead(m.mountpoint, o.readAheadKb ?? 1024, o.log);
  // What the addon's READs read reaches the start profiles and the cache's LRU within a second.
  const drain = fastRead === undefined ? undefined : setInterval(() => fs.drainFastReads(), 1000);
  drain?.unref();
  // A start still recording when the mount ends keeps what it saw.
  const closed = session.closed.then(() => {
    clearInterval(drain);
    fs.drainFastReads();
    return profiler?.flush();
  });
  let unmounting: Promise<void> | undefined;
  return {
    mountpoint: m.mountpoint,
    session,
    closed,
    fsStats: () => {
      fs.drainFastReads();
      return fs.stats();
    },
    unmount(opts) {
      unmounting ??= (async () => {
        try {
          await m.unmount({ lazy: opts?.lazy });
        } catch (e) {
          // Busy (a process has its cwd inside): detach now, the kernel frees it when the last user leaves.
          if (opts?.lazy) throw e;
          await m.unmount({ lazy: true });
        }
        await closed;
      })();
      return unmounting;
    },
  };
}
