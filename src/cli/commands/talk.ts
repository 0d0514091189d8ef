// `gridbox talk <fqrn|mountpoint> <command...>`: cvmfs_talk for gridbox mounts, over the control socket of
// the daemon serving the repository (its own mount, or the on-demand /cvmfs listing it). `cleanup <MB>`
// runs here on the repository's cache directory (the ledger is shared with the running mount).
import { resolve } from 'node:path';
import { GridboxError, q } from '../../errors.js';
import { isAlive } from '../../plumbing/process-identity.js';
import { AUTOMOUNT_FQRN, callControl, daemonFor } from '../../mountd/control.js';
import { readMountRecord, runDir } from '../../mountd/run-dir.js';
import { loadClientSettings, type ClientFlags } from '../client-options.js';
import { newCommand, parseCommand, say } from '../options.js';

export const summary = 'send a cvmfs_talk command to the daemon serving a repository';

const COMMANDS = 'host info, proxy info, cache size, revision, root hash, pid, mountpoint, open files, remount, cleanup <MB>, internal affairs; for an on-demand /cvmfs (repository "*"): repositories, attached, release idle';

export async function run(argv: string[]): Promise<number> {
  const cmd = newCommand('gridbox talk', summary)
    .option('-i, --instance <fqrn>', 'the repository (cvmfs_talk -i); else the first argument')
    .option('--cache <dir>', 'cache base for cleanup (default from the configuration)')
    .option('--config <file>', 'extra config file for cleanup\'s cache location')
    .argument('<words...>', `[fqrn|mountpoint] command: ${COMMANDS}`)
    .action(async (words: string[], o: { instance?: string; cache?: string; config?: string }) => {
      const target = o.instance ?? words.shift();
      if (target === undefined || words.length === 0) throw new GridboxError('USAGE', `usage: gridbox talk <fqrn|mountpoint> <command> (${COMMANDS})`);
      const command = words.join(' ');
      if (words[0] === 'cleanup') { await cleanup(target, words[1], o); return; }
      const dir = runDir(process.env);
      const byPath = target.startsWith('/') || target.startsWith('.');
      const rec = byPath ? await readMountRecord(dir, resolve(target)) : await daemonFor(dir, target);
      if (rec === undefined || !isAlive(rec.pid)) throw new GridboxError('NOT_FOUND', `No gridbox mount serves ${q(target)} (run dir ${q(dir)})`);
      const fqrn = byPath ? (rec.fqrn === AUTOMOUNT_FQRN ? undefined : rec.fqrn) : target;
      const r = await callControl(rec.socket, { op: 'talk', fqrn, command }, 60_000);
      if (!r.ok) throw new GridboxError('USAGE', r.error ?? 'the daemon refused the command');
      say(r.text ?? '');
    });
  await parseCommand(cmd, argv);
  return 0;
}

async function cleanup(fqrn: string, mbArg: string | undefined, o: ClientFlags): Promise<void> {
  const mb = Number(mbArg);
  if (mbArg === undefined || !Number.isFinite(mb) || mb < 0) throw new GridboxError('USAGE', `cleanup needs a size in MB, got ${q(mbArg ?? '')}`);
  const settings = await loadClientSettings(fqrn, { cache: o.cache, config: o.config });
  const { cleanupCache } = await import('../../mountd/cache-cleanup.js');
  const r = await cleanupCache(settings.cacheBase, settings.sharedCache ? 'shared' : fqrn, mb * 1048576);
  const full = r.after <= mb * 1048576;
  say(full ? `OK (${r.evicted} objects evicted, ${Math.round(r.after / 1048576)}MB left)`
    : `Not fully cleaned (there might be pinned chunks): ${Math.round(r.after / 1048576)}MB left, ${Math.round(r.pinnedBytes / 1048576)}MB pinned`);
}
