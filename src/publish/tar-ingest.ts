// `ingest`: publishes a tar stream at a repository path without extracting it to disk (spec §8.3).
// Entries come from tar/tar-reader.ts (path normalisation and limits; unsafe names refused); file bytes
// go to the transaction's ingest as they stream past (large files are cut into pieces on the way, never
// held whole). Ownership is kept from the archive (images need it).
import type { Readable } from 'node:stream';
import { GridboxError, q } from '../errors.js';
import { parentPath, type Entry } from '../fstree/entry.js';
import { readTar } from '../tar/tar-reader.js';
import { publishItems, settleAll, type PublishOptions, type PublishReport, type SourceItem } from './publisher.js';
import type { FileContent } from './tree.js';

export async function ingestTar(input: AsyncIterable<Uint8Array> | Readable, opts: PublishOptions & { label?: string }): Promise<PublishReport> {
  const label = opts.label ?? 'tar stream';
  return publishItems(opts, async (ctx) => {
    const items = new Map<string, SourceItem>();
    const pending: Promise<void>[] = [];
    const contents = new Map<string, Promise<FileContent>>();
    const now = Math.floor(Date.now() / 1000);
    for await (const t of readTar(input, { strict: true, label })) {
      const entry: Entry = { ...t.entry };
      if (t.linkTo !== undefined) {
        const target = items.get(t.linkTo);
        const content = contents.get(t.linkTo);
        if (target === undefined || content === undefined) throw new GridboxError('TAR_INVALID', `Hard link ${q(entry.path)} points to ${q(t.linkTo)}, which is not an earlier regular file`, { path: entry.path });
        // CVMFS hard links exist only within one directory (§4.5); elsewhere the link becomes a copy.
        Object.assign(entry, { ...target.entry, path: entry.path });
        if (parentPath(t.linkTo) === parentPath(entry.path)) {
          target.entry.hardlinkKey ??= `tar:${t.linkTo}`;
          entry.hardlinkKey = target.entry.hardlinkKey;
        } else delete entry.hardlinkKey;
        const item: SourceItem = { entry };
        items.set(entry.path, item);
        contents.set(entry.path, content);
        pending.push(content.then((c) => { item.content = c; }));
        continue;
      }
      const item: SourceItem = { entry };
      items.set(entry.path, item);
      if (entry.type === 'file') {
        // Resolves once the entry's bytes were read (the archive moves on); `stored` once they are objects.
        const { stored } = await ctx.ingest.put({ kind: 'stream', stream: t.content ?? emptyStream(), label: `${label}: ${entry.path}` }, entry.size);
        const p = stored.then((r) => r.content);
        p.catch(() => undefined);
        contents.set(entry.path, p);
        pending.push(p.then((c) => { item.content = c; }));
      }
    }
    ctx.ingest.flush();
    await settleAll(pending);
    // Archives may omit the root and parent directories: add them as 0755 directories.
    const dir = (path: string): SourceItem => ({ entry: { path, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 4096, mtime: now, mtimeNs: 0 } });
    for (const p of [...items.keys()]) {
      for (let d = parentPath(p); ; d = parentPath(d)) {
        const existing = items.get(d);
        if (existing === undefined) items.set(d, dir(d));
        else if (existing.entry.type !== 'dir') throw new GridboxError('TAR_INVALID', `Tar entry ${q(p)} lies below ${q(d)}, which is not a directory`, { path: p });
        if (d === '') break;
      }
    }
    if (!items.has('')) items.set('', dir(''));
    return [...items.values()];
  });
}

async function* emptyStream(): AsyncGenerator<Uint8Array> { /* a file entry without content */ }
