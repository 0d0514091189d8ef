// The mount daemon's composition root: `node mountd-main.js mount FQRN MNT --foreground --ready-fd 3 ...`, the
// argv main.js takes, so that main.js can stand in for it (the bundle's fallback when the sources changed).
// `gridbox mount` starts the daemon from this file's CommonJS bundle (commands/mountd-bundle.ts): Node 20's
// ES module loader, over the ~200 modules a daemon needs, was most of a mount's time before the bundle.
import { describeError, edgeOf } from '../errors.js';
import { noteDeferredExtraCa } from '../plumbing/extra-ca.js';
import { loadNativeAddon } from '../plumbing/native-addon.js';
import { run } from './commands/mount.js';
import { restoreShimEnv } from './shim-env.js';

// bin/gridbox started node with NODE_EXTRA_CA_CERTS moved aside (plumbing/extra-ca.ts).
noteDeferredExtraCa();
restoreShimEnv(process.env);

const [name, ...rest] = process.argv.slice(2);
if (name !== 'mount') {
  process.stderr.write(`gridbox mount daemon: the first argument must be "mount", got ${JSON.stringify(name ?? '')}\n`);
  process.exit(2);
}
run(rest).then(
  // As main.js does for mount: exit at once, the daemon must be gone promptly after its unmount. run() resolves
  // once everything the daemon owns is closed (session, cache database, mount record, control socket, logs
  // written synchronously), so nothing is left for Node's own exit to do but its teardown and the exit handlers
  // of every library loaded (libcurl's ~30 among them): ~2 ms (5%) of the time umount(8)'s caller waits
  // (20 interleaved pairs), skipped by _exit(2) through the addon when it is built.
  (code) => (loadNativeAddon()?.exitNow ?? process.exit)(code),
  (e: unknown) => {
    const commanderCode = (e as { code?: unknown } | null)?.code;
    if (typeof commanderCode === 'string' && commanderCode.startsWith('commander.')) {
      // help was printed (0); a usage error was printed by commander itself (2).
      process.exit(commanderCode === 'commander.helpDisplayed' || commanderCode === 'commander.help' ? 0 : 2);
    }
    process.stderr.write(`gridbox: ${describeError(e)}\n`);
    process.exit(edgeOf(e).exit);
  },
);
