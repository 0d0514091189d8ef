// `gridbox check <fqrn> --root DIR [--shallow]`: signatures, catalogs, counters and every object.
import { checkRepository } from '../../publish/check.js';
import { repoLayout } from '../../publish/repo-layout.js';
import { newCommand, parseCommand, say } from '../options.js';

export const summary = 'verify a repository: signatures, catalogs, counters, objects';

export async function run(argv: string[]): Promise<number> {
  const cmd = newCommand('gridbox check', summary)
    .argument('<fqrn>')
    .requiredOption('--root <dir>', 'repository root directory')
    .option('--shallow', 'skip reading data objects')
    .action(async (fqrn: string, o: { root: string; shallow?: boolean }) => {
      const r = await checkRepository(repoLayout(o.root, fqrn), { deep: !o.shallow, log: (l) => process.stderr.write(l + '\n') });
      say(`check ${fqrn} revision ${r.revision}: ok, ${r.catalogs} catalogs, ${r.objects} objects (${r.bytes} bytes) verified`);
    });
  await parseCommand(cmd, argv);
  return 0;
}
