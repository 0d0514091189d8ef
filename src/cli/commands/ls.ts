// `gridbox ls <fqrn> [path]`: an `ls -l` style listing of a repository directory (or one entry) through
// the verifying client. Output only; settings and keys come from client-options.ts.
import { Command } from 'commander';
import { addClientFlags, openClientFromFlags, type ClientFlags } from '../client-options.js';
import type { ClientNode } from '../../client/index.js';

export const summary = 'list a repository directory';

const TYPE_CHAR: Record<string, string> = { dir: 'd', file: '-', symlink: 'l', fifo: 'p', socket: 's', chardev: 'c', blockdev: 'b' };

/** "drwxr-xr-x" from an entry's type and permission bits (setuid/setgid/sticky shown as s/S, t/T). */
export function modeString(type: string, mode: number): string {
  const bit = (m: number, c: string): string => (mode & m ? c : '-');
  const x = (exec: number, special: number, on: string, off: string): string => (mode & special ? (mode & exec ? on : off) : bit(exec, 'x'));
  return (TYPE_CHAR[type] ?? '?')
    + bit(0o400, 'r') + bit(0o200, 'w') + x(0o100, 0o4000, 's', 'S')
    + bit(0o040, 'r') + bit(0o020, 'w') + x(0o010, 0o2000, 's', 'S')
    + bit(0o004, 'r') + bit(0o002, 'w') + x(0o001, 0o1000, 't', 'T');
}

function time(mtime: number): string {
  return new Date(mtime * 1000).toISOString().slice(0, 16).replace('T', ' ');
}

/** One line per node, columns aligned like `ls -l`. */
export function formatLong(nodes: ClientNode[]): string {
  const rows = nodes.map((n) => {
    const e = n.entry.entry;
    const size = e.type === 'chardev' || e.type === 'blockdev' ? `${(e.rdev ?? 0) >> 8}, ${(e.rdev ?? 0) & 0xff}` : String(e.size);
    const name = e.type === 'symlink' ? `${n.name} -> ${e.target ?? ''}` : n.name;
    return [modeString(e.type, e.mode), String(n.attr.nlink), String(e.uid), String(e.gid), size, time(e.mtime), name];
  });
  const width = (i: number): number => Math.max(0, ...rows.map((r) => r[i].length));
  const w = [0, 1, 2, 3, 4].map(width);
  return rows.map((r) => `${r[0]} ${r[1].padStart(w[1])} ${r[2].padEnd(w[2])} ${r[3].padEnd(w[3])} ${r[4].padStart(w[4])} ${r[5]} ${r[6]}\n`).join('');
}

export async function run(argv: string[]): Promise<number> {
  const cmd = addClientFlags(new Command('gridbox ls').argument('<fqrn>').argument('[path]', 'repository path', '/')).exitOverride();
  cmd.parse(argv, { from: 'user' });
  const [fqrn, path] = cmd.processedArgs as [string, string];
  const client = await openClientFromFlags(fqrn, cmd.opts<ClientFlags>());
  try {
    const node = await client.stat(path);
    const nodes = node.entry.entry.type === 'dir' ? await client.listing(path) : [node];
    process.stdout.write(formatLong(nodes));
    return 0;
  } finally {
    await client.close();
  }
}
