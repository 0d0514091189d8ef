// Working directories owned by one process (txn-*, spool-*): the name carries the owner's identity, so a
// later run can tell a dead writer's leftovers (killed publish, crashed sync) from a live one's and remove
// only those. Not a lock: two live owners may each have their own directory under one parent.
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { formatIdentity, isAlive, parseIdentity, selfIdentity, type ProcessIdentity } from './process-identity.js';

/** Creates `<parent>/<prefix>-<identity>-<rand>` (parent too, if missing) and returns its path. */
export function makeOwnedDir(parent: string, prefix: string): string {
  mkdirSync(parent, { recursive: true });
  for (;;) {
    const dir = join(parent, `${prefix}-${formatIdentity(selfIdentity())}-${randomBytes(4).toString('hex')}`);
    try {
      mkdirSync(dir, { mode: 0o700 });
      return dir;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}

/**
 * The owner named by a directory name made by makeOwnedDir, or a bare pid for the older
 * `<prefix>-<pid>-…` shape; undefined when the name is neither (mkdtemp's `<prefix>-XXXXXX` included):
 * such a directory is left alone, since nothing says its owner is dead.
 */
export function ownerOfDir(name: string, prefix: string): ProcessIdentity | number | undefined {
  if (!name.startsWith(`${prefix}-`)) return undefined;
  const rest = name.slice(prefix.length + 1);
  const cut = rest.lastIndexOf('-');
  if (cut <= 0) return undefined;
  const owner = rest.slice(0, cut);
  const id = parseIdentity(owner);
  if (id !== undefined) return id;
  return /^\d{1,10}$/.test(owner) && Number(owner) > 0 ? Number(owner) : undefined;
}

/** Removes the `<prefix>-…` directories under `parent` whose owner is dead; returns their paths. Missing parent: nothing. */
export function removeDeadOwnedDirs(parent: string, prefix: string): string[] {
  let names: string[];
  try { names = readdirSync(parent); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const removed: string[] = [];
  for (const name of names) {
    const owner = ownerOfDir(name, prefix);
    if (owner === undefined || isAlive(owner)) continue;
    const dir = join(parent, name);
    rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}
