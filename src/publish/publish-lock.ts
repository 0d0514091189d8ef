// The per-repository publish lock: an O_EXCL lock file holding the owner's pid. A lock whose pid no
// longer runs (a publish killed with SIGKILL) is stale and is taken over. Not a cross-host lock.
import { open, readFile, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { GridboxError, q } from '../errors.js';

export interface PublishLock {
  path: string;
  /** Removes the lock file; safe to call twice. */
  release(): Promise<void>;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock or throws PUBLISH_LOCKED naming the holder; `action` is used in the message. */
export async function acquirePublishLock(path: string, fqrn: string, action = 'publish'): Promise<PublishLock> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o644);
      await fh.writeFile(JSON.stringify({ pid: process.pid, host: hostname(), action, since: new Date().toISOString() }) + '\n');
      await fh.close();
      let released = false;
      return {
        path,
        release: async () => {
          if (released) return;
          released = true;
          await unlink(path).catch(() => undefined);
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new GridboxError('PUBLISH_FAILED', `Cannot create lock file ${q(path)}`, { path, cause: e });
    }
    let holder: { pid?: number; host?: string; action?: string; since?: string } = {};
    try {
      holder = JSON.parse(await readFile(path, 'utf8')) as typeof holder;
    } catch {
      // Written but not yet filled by its owner, or half-written by a killed process: judge by age below.
    }
    const sameHost = holder.host === undefined || holder.host === hostname();
    if (typeof holder.pid === 'number' && sameHost && !pidAlive(holder.pid)) {
      await unlink(path).catch(() => undefined);
      continue;
    }
    if (holder.pid === undefined && attempt < 2) {
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    throw new GridboxError('PUBLISH_LOCKED',
      `Cannot ${action} ${q(fqrn)}: another ${holder.action ?? 'publish'} holds the lock (pid ${holder.pid ?? '?'} on ${holder.host ?? '?'} since ${holder.since ?? '?'}); lock file ${q(path)}`,
      { path });
  }
  throw new GridboxError('PUBLISH_LOCKED', `Cannot ${action} ${q(fqrn)}: lock file ${q(path)} keeps reappearing`, { path });
}
