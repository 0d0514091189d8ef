// `gridbox resign <fqrn> --root DIR [--days N]`: renew the whitelist with the master key.
import { resignWhitelist } from '../../publish/create-repository.js';
import { readSettings, repoLayout } from '../../publish/repo-layout.js';
import { intArg, newCommand, parseCommand, say } from '../options.js';

export const summary = 'renew the repository whitelist';

export async function run(argv: string[]): Promise<number> {
  const cmd = newCommand('gridbox resign', summary)
    .argument('<fqrn>')
    .requiredOption('--root <dir>', 'repository root directory')
    .option('--days <n>', 'validity in days (default: the repository setting, 30)', intArg('--days'))
    .action(async (fqrn: string, o: { root: string; days?: number }) => {
      const layout = repoLayout(o.root, fqrn);
      const settings = await readSettings(layout);
      const expires = await resignWhitelist(layout, o.days ?? settings.whitelistDays);
      say(`resigned whitelist of ${fqrn}: valid until ${expires.toISOString()}`);
    });
  await parseCommand(cmd, argv);
  return 0;
}
