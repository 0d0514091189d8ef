// The CLI's composition root: picks the command from argv (or from the program name, so the
// `apptainer`/`singularity` shims reach the runtime CLI) and loads only that command's module,
// which keeps start-up cheap for `exec`. The only place that exits.
import { describeError, edgeOf } from '../errors.js';
import { noteDeferredExtraCa } from '../plumbing/extra-ca.js';
import { restoreShimEnv } from './shim-env.js';

/** A command module exports `run`, which returns the process exit code. */
export interface CommandModule {
  run(argv: string[]): Promise<number>;
  summary?: string;
}

const COMMANDS: Record<string, string> = {
  demo: 'demo', mkfs: 'mkfs', resign: 'resign', publish: 'publish', ingest: 'ingest', tag: 'tag',
  rollback: 'rollback', gc: 'gc', check: 'check', serve: 'serve', ls: 'ls', stat: 'stat', cat: 'cat', get: 'get',
  exec: 'apptainer', run: 'apptainer', shell: 'apptainer', test: 'apptainer', inspect: 'apptainer',
  version: 'apptainer', 'install-shims': 'install-shims', mount: 'mount', umount: 'umount', status: 'status', enter: 'enter',
  sync: 'sync', pilot: 'pilot', snapshot: 'snapshot', report: 'report',
  automount: 'automount', config: 'config', talk: 'talk', 'mount-helper': 'mount-helper',
};

const USAGE = `usage: gridbox <command> [options]
repository: mkfs resign publish ingest tag rollback gc check serve snapshot
client:     ls stat cat get mount umount status enter
site:       automount config talk mount-helper (mount -t gridbox, autofs maps: gridbox config setup)
runtime:    exec run shell test inspect version install-shims (also callable as apptainer/singularity)
images:     sync
job:        pilot report
other:      demo`;

/**
 * Commands that exit as soon as they are done instead of tearing the environment down (heap, WebAssembly
 * reservations: 0.3-1.3 s for a mount daemon on a loaded machine). The runtime commands, which HTCondor and
 * GlideinWMS probes call several times per job, the mount commands, whose daemon must be gone promptly, and
 * snapshot, which a stratum 1 runs from cron or --loop every few minutes (its files are all written and renamed by then).
 */
const EXIT_AT_ONCE = new Set(['exec', 'run', 'shell', 'test', 'inspect', 'version', 'mount', 'umount', 'status', 'enter',
  'automount', 'talk', 'mount-helper', 'snapshot']);
let exitAtOnce = false;

async function main(argv: string[]): Promise<number> {
  const prog = (process.env.GRIDBOX_ARGV0 ?? process.argv[1] ?? '').replace(/^.*\//, '');
  if (prog === 'apptainer' || prog === 'singularity') {
    exitAtOnce = true;
    const runtime = 'apptainer';
    const mod = (await import(`./commands/${runtime}.js`)) as CommandModule;
    return mod.run(argv);
  }
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(USAGE + '\n');
    return name === undefined ? 2 : 0;
  }
  const file = COMMANDS[name];
  if (file === undefined) {
    process.stderr.write(`gridbox: unknown command "${name}"\n${USAGE}\n`);
    return 2;
  }
  exitAtOnce = EXIT_AT_ONCE.has(name);
  const mod = (await import(`./commands/${file}.js`)) as CommandModule;
  // Runtime commands keep their own name as the first argument (apptainer-style parsing).
  return mod.run(file === 'apptainer' ? argv : rest);
}

// bin/gridbox started node with NODE_EXTRA_CA_CERTS moved aside (plumbing/extra-ca.ts); commands and what they
// start see the caller's environment as it was.
noteDeferredExtraCa();
restoreShimEnv(process.env);

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // The command is done and stdout/stderr writes to files, pipes and ttys are synchronous on Linux.
    if (exitAtOnce) process.exit(code);
  },
  (e: unknown) => {
    // Commands parse with commander's exitOverride: help and version are thrown as "errors", and a
    // usage error has already been printed by commander itself.
    const commanderCode = (e as { code?: unknown } | null)?.code;
    if (typeof commanderCode === 'string' && commanderCode.startsWith('commander.')) {
      const done = commanderCode === 'commander.helpDisplayed' || commanderCode === 'commander.help' || commanderCode === 'commander.version';
      process.exitCode = done ? 0 : 2;
      return;
    }
    process.stderr.write(`gridbox: ${describeError(e)}\n`);
    process.exitCode = edgeOf(e).exit;
  },
);
