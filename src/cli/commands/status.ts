// `gridbox status <mountpoint>`: the mount daemon's revision, cache use, hits/misses, bytes received (on the wire and inflated),
// host and proxy, asked over its control socket. `--json` prints the raw record.
import { newCommand, parseCommand, say } from '../options.js';
import { resolve } from 'node:path';
import { daemonStatus } from '../../mountd/control.js';
import { readMountRecord, runDir } from '../../mountd/run-dir.js';

export const summary = 'show the state of a gridbox mount';

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

export async function run(argv: string[]): Promise<number> {
  const cmd = newCommand('gridbox status', summary)
    .argument('<mountpoint>')
    .option('--json', 'print JSON')
    .action(async (mountpoint: string, o: { json?: boolean }) => {
      const mnt = resolve(mountpoint), dir = runDir(process.env);
      const s = await daemonStatus(dir, await readMountRecord(dir, mnt), mnt);
      if (o.json) { say(JSON.stringify(s)); return; }
      const rows: [string, string][] = [
        ['repository', s.fqrn],
        ['mountpoint', `${s.mountpoint}${s.userns ? ' (in the user namespace of pid ' + s.pid + ')' : ''}`],
        ['revision', `${s.revision} (root catalog ${s.rootHash})${s.offline ? ' OFFLINE: serving what is cached' : ''}`],
        ['host', s.host ?? '-'],
        ['proxy', s.proxy ?? 'DIRECT'],
        ['cache', `${mib(s.cacheBytes)} of ${mib(s.cacheLimit)}, ${s.cacheObjects} objects, ${s.evictions} evicted`],
        ['hits/misses', `${s.hits}/${s.misses}`],
        ['received', `${s.bytesOnWire} bytes on the wire, ${s.bytesInflated} bytes after inflation`],
        ['open files', String(s.openFiles)],
        ['io errors', String(s.ioErrors)],
        ['daemon', `pid ${s.pid}, up ${s.uptimeS} s, ${s.revisionSwitches} revision switches`],
      ];
      for (const [k, v] of rows) say(`${k.padEnd(12)} ${v}`);
    });
  await parseCommand(cmd, argv);
  return 0;
}
