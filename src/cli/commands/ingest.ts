// `gridbox ingest <fqrn> <tarball|-> --root DIR --at /path`: publish a tar stream without extracting it.
// Compressed tarballs (gzip, zstd) are recognised by their first bytes.
import { createReadStream } from 'node:fs';
import { decompressLayer } from '../../tar/decompress.js';
import { ingestTar } from '../../publish/tar-ingest.js';
import { readSettings, repoLayout } from '../../publish/repo-layout.js';
import { addContentFlags, applyContentFlags, crashHook, newCommand, parseCommand, say, type ContentFlags } from '../options.js';

export const summary = 'publish a tar stream at a repository path';

export async function run(argv: string[]): Promise<number> {
  const cmd = addContentFlags(newCommand('gridbox ingest', summary))
    .argument('<fqrn>').argument('<tarball>', 'tar file, or - for standard input')
    .requiredOption('--root <dir>', 'repository root directory')
    .requiredOption('--at <path>', 'repository path the archive becomes')
    .option('--tag <name>', 'tag the new revision')
    .action(async (fqrn: string, tarball: string, o: ContentFlags & { root: string; at: string; tag?: string }) => {
      const layout = repoLayout(o.root, fqrn);
      const settings = applyContentFlags(await readSettings(layout), o);
      const raw = tarball === '-' ? process.stdin : createReadStream(tarball);
      await ingestTar(decompressLayer(raw), { layout, settings, at: o.at, tag: o.tag, label: tarball, hooks: { point: crashHook(), log: say } });
    });
  await parseCommand(cmd, argv);
  return 0;
}
