// `gridbox get <fqrn> <path> [dest]`: copies a repository file, or a directory recursively, to local disk
// with modes, symlinks, hardlinks (per inode) and mtimes preserved. Ownership is not applied; special
// files are skipped with a note (creating device nodes needs privileges a copy should not assume).
import { link, lutimes, mkdir, open, symlink, utimes, chmod, lstat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Command } from 'commander';
import { GridboxError, q } from '../../errors.js';
import { addClientFlags, openClientFromFlags, type ClientFlags } from '../client-options.js';
import type { Client, ClientNode } from '../../client/index.js';
import { copyOut } from './cat.js';

export const summary = 'copy a repository file or directory to local disk';

export interface GetResult { files: number; dirs: number; symlinks: number; hardlinks: number; bytes: number; skipped: string[] }

async function exists(p: string): Promise<boolean> {
  try { await lstat(p); return true; } catch { return false; }
}

/** Copies the node at `path` to `dest` (which must not exist). */
export async function getTree(client: Client, path: string, dest: string): Promise<GetResult> {
  const r: GetResult = { files: 0, dirs: 0, symlinks: 0, hardlinks: 0, bytes: 0, skipped: [] };
  const byInode = new Map<number, string>();
  const dirTimes: [string, number][] = [];
  if (await exists(dest)) throw new GridboxError('USAGE', `Destination ${q(dest)} exists; refusing to overwrite`, { path: dest });
  const copy = async (n: ClientNode, to: string): Promise<void> => {
    const e = n.entry.entry;
    switch (e.type) {
      case 'dir': {
        await mkdir(to, { mode: 0o700 });
        r.dirs++;
        for (const child of await client.listing(n.path)) await copy(child, join(to, child.name));
        // Modes and mtimes of directories last: writing children changes the mtime, and a read-only mode would block them.
        dirTimes.push([to, e.mtime + e.mtimeNs / 1e9]);
        await chmod(to, e.mode & 0o7777);
        return;
      }
      case 'symlink':
        await symlink(e.target ?? '', to);
        await lutimes(to, e.mtime, e.mtime + e.mtimeNs / 1e9).catch(() => undefined);
        r.symlinks++;
        return;
      case 'file': {
        const first = n.attr.nlink > 1 ? byInode.get(n.attr.ino) : undefined;
        if (first !== undefined) { await link(first, to); r.hardlinks++; return; }
        const fh = await open(to, 'wx', 0o600);
        try {
          r.bytes += await copyOut(client, n.path, async (b) => { await fh.write(b); });
        } finally {
          await fh.close();
        }
        await chmod(to, e.mode & 0o7777);
        await utimes(to, e.mtime, e.mtime + e.mtimeNs / 1e9);
        if (n.attr.nlink > 1) byInode.set(n.attr.ino, to);
        r.files++;
        return;
      }
      default:
        r.skipped.push(`${n.path} (${e.type})`);
    }
  };
  await copy(await client.stat(path, { follow: true }), dest); // a link named on the command line is followed (cp -H)
  for (const [d, t] of dirTimes.reverse()) await utimes(d, t, t);
  return r;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = addClientFlags(new Command('gridbox get').argument('<fqrn>').argument('<path>').argument('[dest]', 'local destination (default: the basename in the current directory)'))
    .option('--quiet', 'no summary on stderr').exitOverride();
  cmd.parse(argv, { from: 'user' });
  const [fqrn, path, destArg] = cmd.processedArgs as [string, string, string | undefined];
  const opts = cmd.opts<ClientFlags & { quiet?: boolean }>();
  // A tree copy reads one revision: a TTL running out half-way must not mix two revisions in `dest`.
  const client = await openClientFromFlags(fqrn, opts, undefined, { pinRevision: true });
  try {
    const dest = destArg ?? (basename(path.replace(/\/+$/, '')) || fqrn);
    const r = await getTree(client, path, dest);
    for (const s of r.skipped) process.stderr.write(`gridbox get: skipped special file ${s}\n`);
    if (!opts.quiet) {
      const st = client.stats();
      const from = st.host === undefined ? '' : ` from ${st.host}${st.proxy === undefined || st.proxy === 'DIRECT' ? '' : ` via ${st.proxy}`}`;
      process.stderr.write(`gridbox get: ${r.files} files, ${r.hardlinks} hardlinks, ${r.symlinks} symlinks, ${r.dirs} directories, ${r.bytes} bytes to ${dest} (revision ${client.revision()}${from})\n`);
    }
    return 0;
  } finally {
    await client.close();
  }
}
