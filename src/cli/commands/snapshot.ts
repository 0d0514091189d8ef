// `gridbox snapshot <fqrn> --from URL --root DIR [--keys DIR|--key FILE] [--proxy URL]`: brings a
// stratum-1 replica of a repository up to the source's current revision (replicate/snapshot.ts) and prints
// one line with what it copied. Reads flags and key files only; the snapshot logic lives in replicate/.
import { Command } from 'commander';
import { describeError, GridboxError } from '../../errors.js';
import { Downloader } from '../../download/downloader.js';
import { DIRECT, parseProxyList, parseServerUrls } from '../../download/chains.js';
import { HttpPipeline } from '../../replicate/http-pipeline.js';
import { PipelinedSource } from '../../replicate/fast-source.js';
import { snapshotRepository, DEFAULT_CONNECTIONS, DEFAULT_PIPELINE_DEPTH, MAX_PIPELINED_BODY } from '../../replicate/snapshot.js';
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
  connections?: number;
  pipeline?: number;
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
    .option('--connections <n>', `keep-alive connections to the source (default ${DEFAULT_CONNECTIONS})`, intArg('--connections'))
    .option('--pipeline <n>', `requests pipelined on one connection (default ${DEFAULT_PIPELINE_DEPTH}; 0: no bulk path, every object through the full downloader)`, intArg('--pipeline'))
    .option('--concurrency <n>', 'objects in flight (default 2 x connections x pipeline)', intArg('--concurrency'))
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
        // The bulk path talks to the host and proxy the downloader would use now; whatever it cannot do
        // goes through the downloader, which fails over (fast-source.ts).
        const connections = o.connections || DEFAULT_CONNECTIONS;
        const depth = o.pipeline ?? DEFAULT_PIPELINE_DEPTH;
        const proxy = downloader.proxies.current();
        const pipeline = depth > 0 && /^http:/.test(downloader.hosts.current())
          ? new HttpPipeline({ baseUrl: downloader.hosts.current(), proxy: proxy === DIRECT ? undefined : proxy, connections, depth,
            timeoutMs: 10_000, maxBodyBytes: MAX_PIPELINED_BODY, userAgent: 'cvmfs gridbox 0.1' })
          : undefined;
        let r;
        try {
          r = await snapshotRepository({
            fqrn, source: pipeline !== undefined ? new PipelinedSource(downloader, pipeline) : downloader, sourceLabel: serverUrls.join(';'),
            root: o.root, masterPublicKeysPem: keys,
            // Twice what the connections carry, so a queue is waiting whenever responses free room.
            concurrency: o.concurrency || 2 * connections * Math.max(depth, 1),
          });
        } finally {
          pipeline?.close();
        }
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

