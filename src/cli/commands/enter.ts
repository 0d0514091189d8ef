// `gridbox enter <mountpoint> -- CMD...`: runs CMD where the mount is visible. For a mount that lives in
// a user+mount namespace (non-root gridbox mount) that is nsenter into the daemon's namespaces, keeping
// the caller's credentials; for a host mount it simply runs CMD. Returns CMD's exit status.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { GridboxError, q } from '../../errors.js';
import { isAlive } from '../../plumbing/process-identity.js';
import { enterCommand } from '../../fuse/mount.js';
import { readMountRecord, runDir as runDirOf } from '../../mountd/run-dir.js';

const runDir = (): string => runDirOf(process.env);

export const summary = 'run a command inside the namespace of a gridbox mount';

export async function run(argv: string[]): Promise<number> {
  const sep = argv.indexOf('--');
  const [mountpoint, ...extra] = sep < 0 ? argv.slice(0, 1) : argv.slice(0, sep);
  const command = sep < 0 ? argv.slice(1) : argv.slice(sep + 1);
  if (mountpoint === undefined || extra.length > 0 || command.length === 0) {
    throw new GridboxError('USAGE', 'usage: gridbox enter <mountpoint> -- COMMAND [ARG...]');
  }
  const rec = await readMountRecord(runDir(), resolve(mountpoint));
  if (rec === undefined || !isAlive(rec.pid)) throw new GridboxError('NOT_FOUND', `No gridbox mount daemon for ${q(resolve(mountpoint))}`, { path: mountpoint });
  const cl = rec.userns ? enterCommand(rec.pid, command) : { command: command[0], args: command.slice(1) };
  const child = spawn(cl.command, cl.args, { stdio: 'inherit' });
  return new Promise((ok, fail) => {
    child.on('error', (e) => fail(new GridboxError('NOT_FOUND', `Cannot run ${q(cl.command)}`, { cause: e })));
    child.on('exit', (code, sig) => ok(code ?? (sig ? 128 + 15 : 1)));
  });
}
