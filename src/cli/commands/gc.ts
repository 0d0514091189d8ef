// `gridbox gc <fqrn> --root DIR [--dry-run] [--verbose]`: delete objects no kept revision references.
import { collectGarbage } from '../../publish/maintenance.js';
import { repoLayout } from '../../publish/repo-layout.js';
import { newCommand, parseCommand, say } from '../options.js';

export const summary = 'delete objects that no kept (current or tagged) revision references';

export async function run(argv: string[]): Promise<number> {
  const cmd = newCommand('gridbox gc', summary)
    .argument('<fqrn>')
    .requiredOption('--root <dir>', 'repository root directory')
    .option('-n, --dry-run', 'only print what would be deleted')
    .option('-v, --verbose', 'print each object')
    .action(async (fqrn: string, o: { root: string; dryRun?: boolean; verbose?: boolean }) => {
      const r = await collectGarbage(repoLayout(o.root, fqrn), { dryRun: o.dryRun });
      if (o.dryRun || o.verbose) for (const k of r.keys) say(`${o.dryRun ? 'would delete' : 'deleted'} ${k}`);
      say(`gc ${fqrn}: ${r.keptRoots} kept revisions, ${r.referenced} objects referenced, ${r.deleted} objects (${r.bytes} bytes) ${o.dryRun ? 'would be deleted' : 'deleted'}`);
    });
  await parseCommand(cmd, argv);
  return 0;
}
