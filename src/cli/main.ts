// The CLI's composition root: picks the command from argv (or from the program name, so the
// `apptainer`/`singularity` shims reach the runtime CLI) and loads only that command's module,
// which keeps start-up cheap for `exec`. The only place that exits.
import { basename } from 'node:path';
import { describeError, edgeOf } from '../errors.js';

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
};

const USAGE = `usage: gridbox <command> [options]
repository: mkfs resign publish ingest tag rollback gc check serve snapshot
client:     ls stat cat get mount umount status enter
runtime:    exec run shell test inspect version install-shims (also callable as apptainer/singularity)
images:     sync
job:        pilot report
other:      demo`;

async function main(argv: string[]): Promise<number> {
  const prog = basename(process.env.GRIDBOX_ARGV0 ?? process.argv[1] ?? '');
  if (prog === 'apptainer' || prog === 'singularity') {
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
  const mod = (await import(`./commands/${file}.js`)) as CommandModule;
  // Runtime commands keep their own name as the first argument (apptainer-style parsing).
  return mod.run(file === 'apptainer' ? argv : rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
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
