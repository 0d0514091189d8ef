// `gridbox cat <fqrn> <path>`: a repository file's verified content to stdout, read piece by piece so a
// chunked file never sits in memory whole.
import { once } from 'node:events';
import { Command } from 'commander';
import { addClientFlags, openClientFromFlags, type ClientFlags } from '../client-options.js';
import type { Client } from '../../client/index.js';

export const summary = 'print a repository file';

const PIECE_BYTES = 1 << 20;

/** Reads `path` through the client in pieces, handing each to `write` (which may apply backpressure). */
export async function copyOut(client: Client, path: string, write: (b: Buffer) => Promise<void>): Promise<number> {
  const h = await client.open(path);
  try {
    const size = (await client.getattr(path, { follow: true })).size;
    let offset = 0;
    while (offset < size) {
      const piece = await client.read(h, offset, Math.min(PIECE_BYTES, size - offset));
      if (piece.length === 0) break;
      await write(piece);
      offset += piece.length;
    }
    return offset;
  } finally {
    await client.release(h);
  }
}

export async function run(argv: string[]): Promise<number> {
  const cmd = addClientFlags(new Command('gridbox cat').argument('<fqrn>').argument('<path>')).exitOverride();
  cmd.parse(argv, { from: 'user' });
  const [fqrn, path] = cmd.processedArgs as [string, string];
  const client = await openClientFromFlags(fqrn, cmd.opts<ClientFlags>());
  try {
    await copyOut(client, path, async (b) => { if (!process.stdout.write(b)) await once(process.stdout, 'drain'); });
    return 0;
  } finally {
    await client.close();
  }
}
