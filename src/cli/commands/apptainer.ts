// The Apptainer-compatible runtime CLI (`gridbox exec|run|shell|test|inspect|version`, or called as apptainer /
// singularity): argv + environment → options → LaunchSpec → bwrap. Imports only the launcher and errors, to keep
// start-up lean; what only help, inspect or --nv need is imported when asked for (the runtime bundle then does not
// evaluate it on the way to a launch). Silent on success; runtime errors print one `FATAL:` line and exit 255
// (runtime-contract.md §3.7).
import { readFileSync } from 'node:fs';
import { basename, posix } from 'node:path';
import { GridboxError, describeError, edgeOf, isGridboxError, q } from '../../errors.js';
import { buildLaunchSpec } from '../../launcher/build-launch-spec.js';
import { BWRAP_PATH, executeLaunch } from '../../launcher/execute-launch.js';
import { createFsView, openImage } from '../../launcher/image-info.js';
import type { HostFacts, Message, MessageLevel, NvidiaDriver } from '../../launcher/launch-spec.js';
import { UsageError, parseApptainerArgs } from '../../launcher/parse-apptainer-args.js';
import { beginStart } from './report-meter.js';

/** The Apptainer release whose CLI behaviour we follow; `--version` reports it. */
export const APPTAINER_COMPAT_VERSION = '1.4.5';

const LEVEL_NUMBER: Record<MessageLevel, number> = { FATAL: -5, ERROR: -3, WARNING: -2, INFO: 1, VERBOSE: 4, DEBUG: 5 };

const USAGE = `Usage:
  apptainer [global options] exec|run|shell|test [exec options] <sandbox dir> [command] [args...]
  apptainer inspect [-l|-r|-t|-e|-H|-d|-j|--all] <sandbox dir>
  apptainer version | --version
Global options: -s/--silent -q/--quiet -v/--verbose -d/--debug
`;

function say(m: Message, level: number): void {
  if (LEVEL_NUMBER[m.level] <= level) process.stderr.write(`${`${m.level}:`.padEnd(8)} ${m.text}\n`);
}

function parseColonFile(path: string): string[][] {
  try { return readFileSync(path, 'utf8').split('\n').filter((l) => l !== '').map((l) => l.split(':')); } catch { return []; }
}

async function hostFacts(nv: boolean): Promise<HostFacts> {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const pw = parseColonFile('/etc/passwd').find((f) => f[2] === String(uid));
  const groupLines = parseColonFile('/etc/group');
  const gids = [gid, ...(process.getgroups?.() ?? []).filter((g) => g !== gid)];
  const groups = gids.flatMap((g) => {
    const line = groupLines.find((f) => f[2] === String(g));
    return line ? [{ name: line[0], gid: g }] : [];
  });
  let nvidia: NvidiaDriver = { libs: [], bins: [], devices: [] };
  if (nv) {
    // GRIDBOX_NV_ROOT points driver discovery at another root (a fake driver layout in tests).
    const root = process.env.GRIDBOX_NV_ROOT ?? '/';
    const { findNvidiaDriver } = await import('../../launcher/nvidia-driver.js');
    const found = findNvidiaDriver(createFsView(root));
    const at = (p: string): string => (root === '/' ? p : posix.join(root, p));
    nvidia = { libs: found.libs.map(at), bins: found.bins.map(at), devices: found.devices.map(at) };
  }
  return {
    uid, gid,
    user: pw?.[0] ?? `uid${uid}`,
    gecos: pw?.[4] ?? '',
    home: pw?.[5] || (uid === 0 ? '/root' : '/'),
    groups,
    cwd: process.cwd(),
    fs: createFsView('/'),
    nvidia,
  };
}

export async function run(argv: string[]): Promise<number> {
  let level = 1;
  try {
    const parsed = parseApptainerArgs(argv, process.env);
    switch (parsed.kind) {
      case 'version-flag': process.stdout.write(`apptainer version ${APPTAINER_COMPAT_VERSION}\n`); return 0;
      case 'version': process.stdout.write(`${APPTAINER_COMPAT_VERSION}\n`); return 0;
      case 'help': {
        const shim = basename(process.env.GRIDBOX_ARGV0 ?? '');
        const { helpText } = await import('./apptainer-help.js');
        process.stdout.write(helpText(parsed.topic, shim === 'apptainer' || shim === 'singularity' ? shim : 'gridbox'));
        return 0;
      }
      case 'inspect': {
        level = parsed.level;
        const { inspectImage } = await import('../../launcher/inspect-image.js');
        process.stdout.write(inspectImage(openImage(parsed.image, process.cwd()), parsed.show));
        return 0;
      }
      case 'action': {
        level = parsed.level;
        const options = parsed.options;
        // Accounting of container starts (src/accounting, issue 10): silent, never changes the outcome. Begun
        // first, so that its reading of the mount's counters runs while the launch is built.
        const metering = beginStart(options.image);
        options.envFiles = parsed.envFilePaths.map((p) => {
          try { return readFileSync(p, 'utf8'); } catch (cause) { throw new GridboxError('LAUNCH_BAD_OPTION', `Cannot read env file ${q(p)}`, { cause, path: p }); }
        });
        const image = openImage(options.image, process.cwd());
        const spec = buildLaunchSpec(options, process.env, image, await hostFacts(options.nv));
        for (const m of spec.messages) say(m, level);
        if (level >= LEVEL_NUMBER.DEBUG) say({ level: 'DEBUG', text: `${BWRAP_PATH} ${spec.argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ')}` }, level);
        if (spec.exitWithoutLaunch !== undefined) return spec.exitWithoutLaunch;
        const meter = await metering;
        const code = await executeLaunch(spec, { onStarted: meter.started });
        await meter.finish(code);
        return code;
      }
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`Error: ${e.message}\n\n${USAGE}`);
      return 1;
    }
    const text = isGridboxError(e) ? e.message : describeError(e);
    process.stderr.write(`${'FATAL:'.padEnd(8)} ${text}\n`);
    return isGridboxError(e) ? edgeOf(e).exit : 255;
  }
}
