// `gridbox mkfs <fqrn> --root DIR`: keys, whitelist, empty root catalog, history and the first manifest.
import { formatObjectId } from '../../hash/object-id.js';
import { createRepository } from '../../publish/create-repository.js';
import { DEFAULT_SETTINGS, repoLayout } from '../../publish/repo-layout.js';
import { addContentFlags, applyContentFlags, intArg, newCommand, parseCommand, say, type ContentFlags } from '../options.js';

export const summary = 'create a repository';

export async function run(argv: string[]): Promise<number> {
  const cmd = addContentFlags(newCommand('gridbox mkfs', summary))
    .argument('<fqrn>')
    .requiredOption('--root <dir>', 'repository root directory')
    .option('--whitelist-days <n>', 'whitelist validity in days', intArg('--whitelist-days'))
    .option('--ttl <seconds>', 'catalog TTL', intArg('--ttl'))
    .action(async (fqrn: string, o: ContentFlags & { root: string; whitelistDays?: number; ttl?: number }) => {
      const layout = repoLayout(o.root, fqrn);
      const settings = applyContentFlags(DEFAULT_SETTINGS, o);
      if (o.whitelistDays !== undefined) settings.whitelistDays = o.whitelistDays;
      if (o.ttl !== undefined) settings.ttl = o.ttl;
      const head = await createRepository(layout, settings);
      say(`created ${fqrn}: revision ${head.revision}, root catalog ${formatObjectId(head.rootId)}, served from ${layout.srv}, keys in ${o.root}/keys`);
    });
  await parseCommand(cmd, argv);
  return 0;
}
