// The on-demand /cvmfs view: one FUSE filesystem whose root lists the configured repositories and
// attaches each (opens its client, wraps it in a RepositoryFs) on the first lookup of its name, and
// releases it again once idle: no open file, no request for `idleMs`, and, after its entry was dropped
// from the kernel's cache (invalidate), no node the kernel still holds (a process's cwd keeps its inode).
// What autofs and `mount -t cvmfs` do for CernVM-FS, without autofs or root.
// Nodeids: the root is 1; every attachment gets a fresh slot and its nodes are slot·2^32 + the inner
// RepositoryFs nodeid, so a nodeid of a released attachment never names a node of a later one (ESTALE).
import { constants as osConstants } from 'node:os';
import { GridboxError, q } from '../errors.js';
import type { Client } from '../client/index.js';
import type { Attr, DirEntry, DirEntryPlus, EntryOut, Statfs } from '../fuse/protocol.js';
import { FUSE_ROOT_ID } from '../fuse/protocol.js';
import type { FuseOps, RequestContext } from '../fuse/session.js';
import { createRepositoryFs, type RepositoryFsOptions, type RepositoryFsStats } from './repository-fs.js';

const { ENOENT, ESTALE, ENODATA } = osConstants.errno;
const SLOT = 2 ** 32;
/** st_ino of repository n is offset by n·2^40, so two repositories' inodes never look alike to `find`/`tar`. */
const INO_SPACE = 2 ** 40;
const S_IFDIR = 0o040000;
/** Names under the root are looked up again this often (a repository added by reload shows up). */
const ROOT_ENTRY_TTL_S = 60;
const NEGATIVE_TTL_S = 1;
/** Top-level names of a repository invalidated per idle pass (a repository root rarely has more). */
const MAX_INVALIDATED_NAMES = 4096;

export interface AutomountFsOptions {
  /** The repositories the root lists and may attach (read again on each lookup/listing of the root). */
  repositories: () => readonly string[];
  /** Opens a repository's client (configuration, keys, cache); called once per attachment. */
  openClient: (fqrn: string) => Promise<Client>;
  /** Options of each repository's view (log, passthrough, xattrs). */
  fsOptions?: (fqrn: string) => RepositoryFsOptions;
  log?: (line: string) => void;
}

/** One attached repository, as status and talk show it. */
export interface AttachedRepository {
  fqrn: string;
  client: Client;
  attachedAt: number;
  lastActive: number;
  fsStats(): RepositoryFsStats;
}

interface Attachment extends AttachedRepository {
  slot: number;
  index: number;
  fs: FuseOps & { stats(): RepositoryFsStats };
  /** Lookups of the repository's root entry the kernel holds (the inner view does not count its root). */
  rootLookups: number;
  /** When its entry was dropped from the kernel's cache; a request after that makes it active again. */
  invalidatedAt?: number;
}

export interface AutomountFs extends FuseOps {
  attached(): AttachedRepository[];
  /** Counts since start: attachments made, released, failed. */
  counters(): { attaches: number; releases: number; failures: number };
  /**
   * One idle pass at `now`: asks `invalidate` to drop the entry of each repository idle for `idleMs`, and
   * releases those whose nodes the kernel has forgotten since. Returns the names released.
   */
  sweep(now: number, idleMs: number, invalidate: (parent: number, name: string) => Promise<void>): Promise<string[]>;
  /** Closes every client (the mount is gone). */
  closeAll(): Promise<void>;
}

export function createAutomountFs(o: AutomountFsOptions): AutomountFs {
  const byName = new Map<string, Attachment>();
  const bySlot = new Map<number, Attachment>();
  const opening = new Map<string, Promise<Attachment>>();
  /** Stable per name for the life of the mount: inode numbers stay the same across re-attachments. */
  const indexOf = new Map<string, number>();
  let nextSlot = 1;
  let attaches = 0, releases = 0, failures = 0;
  const started = Date.now() / 1000;

  const repoIndex = (fqrn: string): number => {
    let i = indexOf.get(fqrn);
    if (i === undefined) { i = indexOf.size + 1; indexOf.set(fqrn, i); }
    return i;
  };
  const configured = (name: string): boolean => o.repositories().includes(name);

  const attach = (fqrn: string): Promise<Attachment> => {
    const have = byName.get(fqrn);
    if (have !== undefined) return Promise.resolve(have);
    let p = opening.get(fqrn);
    if (p === undefined) {
      p = (async () => {
        let client: Client;
        try {
          client = await o.openClient(fqrn);
        } catch (e) {
          failures++;
          o.log?.(`attaching ${fqrn} failed: ${(e as Error).message}`);
          throw e;
        }
        const now = Date.now();
        const a: Attachment = {
          fqrn, client, slot: nextSlot++, index: repoIndex(fqrn), rootLookups: 0, attachedAt: now, lastActive: now,
          fs: createRepositoryFs(client, o.fsOptions?.(fqrn) ?? { log: o.log }),
          fsStats: () => a.fs.stats(),
        };
        if (a.slot >= 2 ** 20) throw new GridboxError('INTERNAL', 'Too many attachments for one automount');
        byName.set(fqrn, a);
        bySlot.set(a.slot, a);
        attaches++;
        o.log?.(`attached ${fqrn} revision ${client.revision()}`);
        return a;
      })().finally(() => opening.delete(fqrn));
      opening.set(fqrn, p);
    }
    return p;
  };

  const release = async (a: Attachment, why: string): Promise<void> => {
    byName.delete(a.fqrn);
    bySlot.delete(a.slot);
    releases++;
    o.log?.(`released ${a.fqrn} (${why})`);
    await a.client.close().catch((e: unknown) => o.log?.(`closing ${a.fqrn}: ${(e as Error).message}`));
  };

  const outerAttr = (a: Attachment, attr: Attr): Attr => ({ ...attr, ino: attr.ino < INO_SPACE ? attr.ino + a.index * INO_SPACE : attr.ino });
  const outerEntry = (a: Attachment, e: EntryOut): EntryOut => {
    if (e.nodeid === 0) return e;
    if (e.nodeid >= SLOT) throw new GridboxError('INTERNAL', `Nodeid ${e.nodeid} of ${a.fqrn} does not fit its slot`);
    return { ...e, nodeid: a.slot * SLOT + e.nodeid, attr: outerAttr(a, e.attr) };
  };
  /** The attachment and inner nodeid of an outer nodeid; ESTALE for a released attachment. */
  const inner = (nodeid: number, active = true): [Attachment, number] => {
    const a = bySlot.get(Math.floor(nodeid / SLOT));
    if (a === undefined) throw ESTALE;
    if (active) { a.lastActive = Date.now(); a.invalidatedAt = undefined; }
    return [a, nodeid % SLOT];
  };
  const call = <K extends keyof FuseOps>(a: Attachment, k: K): NonNullable<FuseOps[K]> => {
    const f = a.fs[k];
    if (f === undefined) throw osConstants.errno.ENOSYS;
    return f as NonNullable<FuseOps[K]>;
  };

  const rootAttr = (): Attr => ({ ino: 1, size: 4096, atime: started, mtime: started, ctime: started, mode: S_IFDIR | 0o755, nlink: 2, uid: 0, gid: 0 });
  const rootListing = (): DirEntry[] => [
    { name: '.', ino: 1, mode: S_IFDIR, off: 1 }, { name: '..', ino: 1, mode: S_IFDIR, off: 2 },
    ...o.repositories().map((name, i) => ({ name, ino: repoIndex(name) * INO_SPACE + 256, mode: S_IFDIR, off: i + 3 })),
  ];

  const fs: AutomountFs = {
    async lookup(ctx: RequestContext, parent: number, name: string): Promise<EntryOut> {
      if (parent === FUSE_ROOT_ID) {
        if (!configured(name)) return { nodeid: 0, entryTtl: NEGATIVE_TTL_S, attrTtl: 0, attr: { ...rootAttr(), ino: 0, mode: 0 } };
        let a: Attachment;
        try {
          a = await attach(name);
        } catch {
          // As autofs: a repository that cannot be mounted is not there (the cause is in the log).
          throw ENOENT;
        }
        a.lastActive = Date.now();
        a.invalidatedAt = undefined;
        const out = await call(a, 'getattr')(ctx, FUSE_ROOT_ID, undefined);
        a.rootLookups++;
        return { nodeid: a.slot * SLOT + FUSE_ROOT_ID, entryTtl: ROOT_ENTRY_TTL_S, attrTtl: out.attrTtl, attr: outerAttr(a, out.attr) };
      }
      const [a, id] = inner(parent);
      return outerEntry(a, await call(a, 'lookup')(ctx, id, name));
    },

    forget(nodeid: number, nlookup: number): void {
      if (nodeid === FUSE_ROOT_ID) return;
      const a = bySlot.get(Math.floor(nodeid / SLOT));
      if (a === undefined) return; // a node of a released attachment
      const id = nodeid % SLOT;
      if (id === FUSE_ROOT_ID) a.rootLookups = Math.max(0, a.rootLookups - nlookup);
      else a.fs.forget?.(id, nlookup);
    },

    async getattr(ctx, nodeid, fh) {
      if (nodeid === FUSE_ROOT_ID) return { attrTtl: 1, attr: rootAttr() };
      const [a, id] = inner(nodeid);
      const out = await call(a, 'getattr')(ctx, id, fh);
      return { ...out, attr: outerAttr(a, out.attr) };
    },

    async readlink(ctx, nodeid) {
      const [a, id] = inner(nodeid);
      return call(a, 'readlink')(ctx, id);
    },

    async open(ctx, nodeid, flags) {
      const [a, id] = inner(nodeid);
      return call(a, 'open')(ctx, id, flags);
    },

    async read(ctx, nodeid, fh, offset, size) {
      const [a, id] = inner(nodeid);
      return call(a, 'read')(ctx, id, fh, offset, size);
    },

    async release(ctx, nodeid, fh) {
      // Handles keep their attachment: it is never released while a file is open.
      const [a, id] = inner(nodeid);
      return call(a, 'release')(ctx, id, fh);
    },

    async readdir(ctx, nodeid, fh, offset, size) {
      if (nodeid === FUSE_ROOT_ID) return rootListing().slice(offset);
      const [a, id] = inner(nodeid);
      return (await call(a, 'readdir')(ctx, id, fh, offset, size)).map((e) => ({ ...e, ino: e.ino + (e.ino < INO_SPACE ? a.index * INO_SPACE : 0) }));
    },

    async readdirplus(ctx, nodeid, fh, offset, size): Promise<DirEntryPlus[]> {
      // Listing /cvmfs attaches nothing: its entries carry no lookup (the kernel looks a name up on use).
      if (nodeid === FUSE_ROOT_ID) return rootListing().slice(offset);
      const [a, id] = inner(nodeid);
      const list = await call(a, 'readdirplus')(ctx, id, fh, offset, size);
      return list.map((e) => ({
        ...e, ino: e.ino + (e.ino < INO_SPACE ? a.index * INO_SPACE : 0),
        entry: e.entry === undefined ? undefined : outerEntry(a, e.entry),
      }));
    },

    async statfs(ctx, nodeid): Promise<Statfs> {
      if (nodeid === FUSE_ROOT_ID) {
        return { blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 };
      }
      const [a, id] = inner(nodeid, false);
      return call(a, 'statfs')(ctx, id);
    },

    async getxattr(ctx, nodeid, name) {
      if (nodeid === FUSE_ROOT_ID) throw ENODATA;
      const [a, id] = inner(nodeid);
      return call(a, 'getxattr')(ctx, id, name);
    },

    async listxattr(ctx, nodeid) {
      if (nodeid === FUSE_ROOT_ID) return [];
      const [a, id] = inner(nodeid);
      return call(a, 'listxattr')(ctx, id);
    },

    attached: () => [...byName.values()],
    counters: () => ({ attaches, releases, failures }),

    async sweep(now, idleMs, invalidate) {
      const released: string[] = [];
      for (const a of [...byName.values()]) {
        const s = a.fs.stats();
        if (s.openFiles > 0) { a.lastActive = now; a.invalidatedAt = undefined; continue; }
        if (now - a.lastActive < idleMs) continue;
        if (a.invalidatedAt === undefined) {
          // Drops the repository's dentries from the kernel's cache: the unused ones are forgotten (FORGET),
          // the ones a process still holds (its cwd) are not. The top-level names first: after an earlier
          // pass found the repository busy, its root entry is already gone from the cache while unused
          // dentries below it (the former cwd's) are still kept, reachable only through their parents.
          a.invalidatedAt = now;
          const names = await a.client.listing('/').then((l) => l.slice(0, MAX_INVALIDATED_NAMES).map((n) => n.name), () => []);
          for (const [parent, name] of [...names.map((n) => [a.slot * SLOT + FUSE_ROOT_ID, n] as const), [FUSE_ROOT_ID, a.fqrn] as const]) {
            try {
              await invalidate(parent, name);
            } catch (e) {
              // ENOENT: nothing cached under that name.
              if ((e as NodeJS.ErrnoException).code !== 'ENOENT') o.log?.(`cannot invalidate ${q(name)} of ${a.fqrn}: ${(e as Error).message}`);
            }
          }
          continue;
        }
        if (s.nodes <= 1 && a.rootLookups === 0) {
          await release(a, `idle ${Math.round((now - a.lastActive) / 1000)} s`);
          released.push(a.fqrn);
        } else {
          // Still held (a working directory inside): idle again from now, checked after another period.
          a.lastActive = now;
          a.invalidatedAt = undefined;
        }
      }
      return released;
    },

    async closeAll() {
      await Promise.allSettled([...opening.values()]);
      for (const a of [...byName.values()]) await release(a, 'unmounted');
    },
  };
  return fs;
}
