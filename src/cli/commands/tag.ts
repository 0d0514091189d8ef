// `gridbox tag <fqrn> --root DIR [--add NAME [--description TEXT]] [--remove NAME…] [--list]`.
import { formatObjectId } from '../../hash/object-id.js';
import { editTags, listTags } from '../../publish/maintenance.js';
import { repoLayout } from '../../publish/repo-layout.js';
import { newCommand, parseCommand, say } from '../options.js';

export const summary = 'add, list or remove tags';

export async function run(argv: string[]): Promise<number> {
  const cmd = newCommand('gridbox tag', summary)
    .argument('<fqrn>')
    .requiredOption('--root <dir>', 'repository root directory')
    .option('-a, --add <name>', 'tag the current revision')
    .option('-m, --description <text>', 'description of the new tag')
    .option('-r, --remove <name...>', 'remove tags')
    .option('-l, --list', 'list tags (the default without --add/--remove)')
    .action(async (fqrn: string, o: { root: string; add?: string; description?: string; remove?: string[]; list?: boolean }) => {
      const layout = repoLayout(o.root, fqrn);
      if (o.add !== undefined || o.remove !== undefined) {
        const head = await editTags(layout, { add: o.add, description: o.description, remove: o.remove });
        if (o.add !== undefined) say(`tagged ${fqrn} revision ${head.revision} as ${o.add}`);
        for (const r of o.remove ?? []) say(`removed tag ${r} from ${fqrn}`);
      }
      if (o.list || (o.add === undefined && o.remove === undefined)) {
        for (const t of await listTags(layout)) say(`${t.name}\t${t.revision}\t${new Date(t.timestamp * 1000).toISOString()}\t${formatObjectId(t.id)}\t${t.description}`);
      }
    });
  await parseCommand(cmd, argv);
  return 0;
}
