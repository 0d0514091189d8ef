// `gridbox snapshot <fqrn> --from URL --root DIR [--keys DIR|--key FILE] [--proxy URL]`: brings a
// stratum-1 replica of a repository up to the source's current revision (replicate/snapshot.ts) and prints
// one line with what it copied. Reads flags and key files only; the snapshot logic lives in replicate/.
import { Command } from 'commander';
import { describeError, GridboxError } from '../../errors.js';
import { Downloader } from '../../download/downloader.js';
import { parseProxyList, parseServerUrls } from '../../download/chains.js';
import { snapshotRepository, DEFAULT_SNAPSHOT_CONCURRENCY } from '../../replicate/snapshot.js';
import { expandServerFlag, loadMasterKeys } from '../client-options.js';
import { intArg, newCommand, parseCommand, say } from '../options.js';

export const summary = 'replicate a repository into a stratum-1 root';

interface SnapshotFlags {
  from: string;
  root: string;
  keys?: string;
  key?: string;
  proxy?: string;
  concurrency?: number;
  loop?: number;
  quiet?: boolean;
}

export async function run(argv: string[]): Promise<number> {
  // The work runs after parsing: parseCommand turns anything thrown inside an action into USAGE.
  const parsed: { fqrn: string; o: SnapshotFlags }[] = [];
  const cmd: Command = newCommand('gridbox snapshot', summary)
    .argument('<fqrn>')
    .requiredOption('--from <url>', 'source base URL(s), ";"-separated; a URL ending in /cvmfs gets /<fqrn> appended')
    .requiredOption('--root <dir>', 'replica root directory (served from DIR/srv/<fqrn>)')
    .option('--keys <dir>', 'directory of master public keys (*.pub)')
    .option('--key <file>', 'master public key file(s), ":"-separated')
    .option('--proxy <url>', 'HTTP proxy list (CVMFS_HTTP_PROXY syntax), default DIRECT')
    .option('--concurrency <n>', `objects in flight (default ${DEFAULT_SNAPSHOT_CONCURRENCY})`, intArg('--concurrency'))
    .option('--loop <seconds>', 'keep the replica in step: snapshot again this many seconds after each run ends, until SIGTERM/SIGINT; a failed run is reported and retried', intArg('--loop'))
    .option('--quiet', 'print nothing but errors')
    .action((fqrn: string, o: SnapshotFlags) => { parsed.push({ fqrn, o }); });
  if (!(await parseCommand(cmd, argv)) || parsed.length === 0) return 0;
  const { fqrn, o } = parsed[0];
  if (o.keys === undefined && o.key === undefined) throw new GridboxError('USAGE', 'Pass --keys DIR or --key FILE: the master public key the source\'s whitelist is signed with');
  const keys = await loadMasterKeys({ publicKeys: o.key?.split(':').filter((f) => f !== '') ?? [], keysDir: o.keys } as Parameters<typeof loadMasterKeys>[0]);
  const serverUrls = parseServerUrls(expandServerFlag(o.from, fqrn), fqrn);
  const downloader = new Downloader({ serverUrls, proxyGroups: parseProxyList(o.proxy ?? 'DIRECT'), backoffInitMs: 500, backoffMaxMs: 5000 });
  let stopped = false;
  let wake: (() => void) | undefined;
  const stop = (): void => { stopped = true; wake?.(); };
  if (o.loop !== undefined) { process.on('SIGTERM', stop); process.on('SIGINT', stop); }
  try {
    for (;;) {
      try {
        const r = await snapshotRepository({
          fqrn, source: downloader, sourceLabel: serverUrls.join(';'), root: o.root, masterPublicKeysPem: keys,
          concurrency: o.concurrency === undefined || o.concurrency === 0 ? undefined : o.concurrency,
        });
        if (!o.quiet) {
          const from = r.previousRevision === undefined ? 'new replica' : `from revision ${r.previousRevision}`;
          say(`snapshot ${fqrn}: revision ${r.revision} (${from}), copied ${r.objects} objects (${r.catalogs} catalogs), ${r.bytes} bytes; ${r.present} already present`);
        }
      } catch (e) {
        // One run's failure (source down, a bad revision) must not end a replica kept in step.
        if (o.loop === undefined) throw e;
        process.stderr.write(`gridbox snapshot: ${describeError(e)}\n`);
      }
      if (o.loop === undefined || stopped) break;
      await new Promise<void>((resolve) => { wake = resolve; setTimeout(resolve, o.loop! * 1000); });
      if (stopped) break;
    }
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    await downloader.close();
  }
  // With --loop, a stop by signal is a clean end whatever the last run did (its failure was reported).
  return 0;
}

