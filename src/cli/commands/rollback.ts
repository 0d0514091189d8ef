// `gridbox rollback <fqrn> --root DIR --tag NAME`: republish a tagged tree as a new revision.
import { formatObjectId } from '../../hash/object-id.js';
import { rollback } from '../../publish/maintenance.js';
import { repoLayout } from '../../publish/repo-layout.js';
import { newCommand, parseCommand, say } from '../options.js';

export const summary = 'republish a tagged revision as a new revision';

export async function run(argv: string[]): Promise<number> {
  const cmd = newCommand('gridbox rollback', summary)
    .argument('<fqrn>')
    .requiredOption('--root <dir>', 'repository root directory')
    .option('-t, --tag <name>', 'tag to roll back to', 'trunk-previous')
    .action(async (fqrn: string, o: { root: string; tag: string }) => {
      const head = await rollback(repoLayout(o.root, fqrn), o.tag);
      say(`rolled ${fqrn} back to ${o.tag}: revision ${head.revision}, root catalog ${formatObjectId(head.rootId)}`);
    });
  await parseCommand(cmd, argv);
  return 0;
}
