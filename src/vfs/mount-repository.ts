// The mount's composition root: a FUSE mount at a mountpoint served by createRepositoryFs over a client,
// resolved once the kernel's INIT is answered, and a clean unmount. Takes an open client; does not read
// configuration, daemonize or enter namespaces (the CLI does).
import { GridboxError, isGridboxError, q } from '../errors.js';
import type { Client } from '../client/index.js';
import { mountFuse, type FuseMount } from '../fuse/mount.js';
import { startSession, type FuseSession } from '../fuse/session.js';
import { createRepositoryFs, type RepositoryFsStats } from './repository-fs.js';

export interface MountRepositoryOptions {
  client: Client;
  mountpoint: string;
  /** Request loop (default auto = epoll). */
  loop?: 'auto' | 'epoll' | 'threadpool';
  log?: (line: string) => void;
  extraXattrs?: () => Record<string, string>;
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
  const fs = createRepositoryFs(o.client, { log: o.log, extraXattrs: o.extraXattrs });
  let initDone!: () => void;
  const initSeen = new Promise<void>((resolve) => { initDone = resolve; });
  const ops = { ...fs, init: () => { initDone(); } };
  const m: FuseMount = await mountFuse(o.mountpoint, { fsname: o.client.fqrn, subtype: 'gridbox', allowOther: true, readOnly: true });
  const session = startSession(m.fd, ops, {
    loop: o.loop ?? 'auto',
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
  let unmounting: Promise<void> | undefined;
  return {
    mountpoint: m.mountpoint,
    session,
    closed: session.closed,
    fsStats: () => fs.stats(),
    unmount(opts) {
      unmounting ??= (async () => {
        try {
          await m.unmount({ lazy: opts?.lazy });
        } catch (e) {
          // Busy (a process has its cwd inside): detach now, the kernel frees it when the last user leaves.
          if (opts?.lazy) throw e;
          await m.unmount({ lazy: true });
        }
        await session.closed;
      })();
      return unmounting;
    },
  };
}
