// The per-repository publish lock: a thin wrapper over plumbing/lock-file (a kernel-held lock, so a killed
// publish can neither leave it stuck nor let two publishers in). Adds only the repository's words to the
// error: PUBLISH_LOCKED naming the holder's pid, action and start. Not a cross-host lock.
import { GridboxError, isGridboxError, q } from '../errors.js';
import { acquireLock } from '../plumbing/lock-file.js';

export interface PublishLock {
  path: string;
  /** Gives the lock up; safe to call twice. */
  release(): Promise<void>;
}

/** Takes the lock or throws PUBLISH_LOCKED naming the holder; `action` is used in the message. */
export async function acquirePublishLock(path: string, fqrn: string, action = 'publish'): Promise<PublishLock> {
  try {
    const lock = await acquireLock(path, { purpose: action });
    return { path, release: async () => lock.release() };
  } catch (e) {
    if (!isGridboxError(e, 'LOCK_HELD')) throw e;
    const f = e.fields as { holderPid?: number; purpose?: string; since?: string };
    throw new GridboxError('PUBLISH_LOCKED',
      `Cannot ${action} ${q(fqrn)}: another ${f.purpose ?? 'publish'} holds the lock (pid ${f.holderPid ?? '?'}${f.since === undefined ? '' : ` since ${f.since}`}); lock file ${q(path)}`,
      { path, holderPid: f.holderPid, cause: e });
  }
}
