// `gridbox stat <fqrn> <path>`: the attributes of one repository entry as the client sees them (stat(1)
// fields plus the CVMFS ones: content hash, chunks, compression, catalog, revision).
import { Command } from 'commander';
import { formatObjectId } from '../../hash/object-id.js';
import { addClientFlags, openClientFromFlags, type ClientFlags } from '../client-options.js';
import type { ClientNode } from '../../client/index.js';
import { modeString } from './ls.js';

export const summary = 'show the attributes of a repository entry';

export function formatStat(n: ClientNode, revision: number): string {
  const e = n.entry.entry;
  const lines: [string, string][] = [
    ['File', n.path === '' ? '/' : n.path],
    ['Type', e.type],
    ['Size', String(e.size)],
    ['Mode', `${(n.attr.mode & 0o7777).toString(8).padStart(4, '0')} (${modeString(e.type, e.mode)})`],
    ['Links', String(n.attr.nlink)],
    ['Inode', String(n.attr.ino)],
    ['Uid', String(e.uid)],
    ['Gid', String(e.gid)],
    ['Modify', `${new Date(e.mtime * 1000).toISOString().replace(/\.000Z$/, '')}.${String(e.mtimeNs).padStart(9, '0')}Z (${e.mtime})`],
  ];
  if (e.type === 'symlink') lines.push(['Target', e.target ?? '']);
  if (e.type === 'chardev' || e.type === 'blockdev') lines.push(['Device', `${(e.rdev ?? 0) >> 8},${(e.rdev ?? 0) & 0xff}`]);
  if (n.entry.id !== undefined) lines.push(['Hash', formatObjectId(n.entry.id)]);
  if (e.type === 'file') lines.push(['Compression', n.entry.compression]);
  if (n.entry.chunks !== undefined) lines.push(['Chunks', String(n.entry.chunks.length)]);
  if (n.entry.hardlinkGroup > 0) lines.push(['Hardlink group', String(n.entry.hardlinkGroup)]);
  if (e.xattrs !== undefined) lines.push(['Xattrs', Object.keys(e.xattrs).sort().join(' ')]);
  lines.push(['Catalog', n.catalog === '' ? '/' : n.catalog], ['Revision', String(revision)]);
  const w = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${(k + ':').padEnd(w + 1)} ${v}\n`).join('');
}

export async function run(argv: string[]): Promise<number> {
  const cmd = addClientFlags(new Command('gridbox stat').argument('<fqrn>').argument('<path>'))
    .option('-L, --dereference', 'follow a symlink in the last component (symlinks on the way are always followed)').exitOverride();
  cmd.parse(argv, { from: 'user' });
  const [fqrn, path] = cmd.processedArgs as [string, string];
  const client = await openClientFromFlags(fqrn, cmd.opts<ClientFlags>());
  try {
    process.stdout.write(formatStat(await client.stat(path, { follow: cmd.opts<{ dereference?: boolean }>().dereference }), client.revision()));
    return 0;
  } finally {
    await client.close();
  }
}
