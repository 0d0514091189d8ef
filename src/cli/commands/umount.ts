// `gridbox umount <mountpoint>`: asks the mount daemon to unmount and waits for it to exit; clears a
// mount left behind by a daemon that died (SIGKILL: "Transport endpoint is not connected").
import { resolve } from 'node:path';
import { GridboxError, q } from '../../errors.js';
import { isAlive } from '../../plumbing/process-identity.js';
import { clearStaleMount, fuseMountState, unmountFuse } from '../../fuse/mount.js';
import { stopDaemon } from '../../mountd/control.js';
import { readMountRecord, removeMountRecord, runDir as runDirOf } from '../../mountd/run-dir.js';
import { newCommand, parseCommand, say } from '../options.js';

const runDir = (): string => runDirOf(process.env);

export const summary = 'unmount a repository mounted with gridbox mount (also a stale one)';

const EXIT_WAIT_MS = 30_000;

export async function run(argv: string[]): Promise<number> {
  const cmd = newCommand('gridbox umount', summary)
    .argument('<mountpoint>')
    .option('--lazy', 'detach even if busy')
    .action(async (mountpoint: string, o: { lazy?: boolean }) => {
      const mnt = resolve(mountpoint);
      const dir = runDir();
      const rec = await readMountRecord(dir, mnt);
      let done = false;
      if (rec !== undefined && isAlive(rec.pid)) {
        await stopDaemon(rec, EXIT_WAIT_MS);
        done = true;
      }
      // What is left in this namespace: a stale mount of a killed daemon, or a live one we did not start.
      const state = await fuseMountState(mnt);
      if (state === 'stale') {
        await clearStaleMount(mnt);
        say(`cleared stale mount ${mnt}`);
        done = true;
      } else if (state === 'live' && (rec === undefined || !done)) {
        await unmountFuse(mnt, { lazy: o.lazy });
        done = true;
      }
      if (rec !== undefined) {
        await removeMountRecord(dir, mnt);
        done = true;
      }
      if (!done) throw new GridboxError('NOT_FOUND', `Nothing is mounted at ${q(mnt)}`, { path: mnt });
      say(`unmounted ${mnt}`);
    });
  await parseCommand(cmd, argv);
  return 0;
}
