// `gridbox publish <fqrn> <source-dir> --root DIR [--at /path] [--tag NAME]`: one revision from a directory.
import { publishDirectory } from '../../publish/publisher.js';
import { readSettings, repoLayout } from '../../publish/repo-layout.js';
import { addContentFlags, applyContentFlags, crashHook, newCommand, parseCommand, say, type ContentFlags } from '../options.js';

export const summary = 'publish a directory tree as a new revision';

export async function run(argv: string[]): Promise<number> {
  let code = 0;
  const cmd = addContentFlags(newCommand('gridbox publish', summary))
    .argument('<fqrn>').argument('<source-dir>')
    .requiredOption('--root <dir>', 'repository root directory')
    .option('--at <path>', 'repository path the source becomes', '/')
    .option('--tag <name>', 'tag the new revision')
    .option('--tag-description <text>', 'description of the tag')
    .option('--no-xattrs', 'do not read extended attributes')
    .option('--workers <n>', 'worker threads (default: cores)', (v) => Number(v))
    .action(async (fqrn: string, source: string, o: ContentFlags & { root: string; at: string; tag?: string; tagDescription?: string; xattrs: boolean; workers?: number }) => {
      const layout = repoLayout(o.root, fqrn);
      const settings = applyContentFlags(await readSettings(layout), o);
      const point = crashHook();
      const r = await publishDirectory(source, {
        layout, settings, at: o.at, tag: o.tag, tagDescription: o.tagDescription, workers: o.workers,
        xattrs: o.xattrs ? 'auto' : false, hooks: { point, log: say },
      });
      code = r.revision > 0 ? 0 : 1;
    });
  await parseCommand(cmd, argv);
  return code;
}
