// `gridbox mkfs <fqrn> --root DIR`: keys, whitelist, empty root catalog, history and the first manifest.
// Also writes the `.cvmfs_master_replica` marker (spec §1.1) that lets stratum-1s snapshot the repository.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
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
    .option('--no-master-replica', 'do not write .cvmfs_master_replica (stratum-1s cannot snapshot)')
    .action(async (fqrn: string, o: ContentFlags & { root: string; whitelistDays?: number; ttl?: number; masterReplica: boolean }) => {
      const layout = repoLayout(o.root, fqrn);
      const settings = applyContentFlags(DEFAULT_SETTINGS, o);
      if (o.whitelistDays !== undefined) settings.whitelistDays = o.whitelistDays;
      if (o.ttl !== undefined) settings.ttl = o.ttl;
      const head = await createRepository(layout, settings);
      if (o.masterReplica) await writeFile(join(layout.srv, '.cvmfs_master_replica'), '');
      say(`created ${fqrn}: revision ${head.revision}, root catalog ${formatObjectId(head.rootId)}, served from ${layout.srv}, keys in ${o.root}/keys`);
    });
  await parseCommand(cmd, argv);
  return 0;
}
