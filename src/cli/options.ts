// Small shared helpers for the repository commands: the common --root flag, settings overrides from
// flags, crash-point injection for tests (GRIDBOX_CRASH_POINT), and one-line output.
import { Command, InvalidArgumentError } from 'commander';
import { GridboxError, q } from '../errors.js';
import { parseHashAlgorithm } from '../hash/object-id.js';
import type { RepoSettings } from '../publish/repo-layout.js';

export function newCommand(name: string, summary: string): Command {
  return new Command(name).description(summary).exitOverride().configureOutput({
    writeOut: (s) => process.stdout.write(s),
    writeErr: (s) => process.stderr.write(s),
  });
}

/** Runs a commander program; usage errors become USAGE, --help exits 0. */
export async function parseCommand(cmd: Command, argv: string[]): Promise<boolean> {
  try {
    await cmd.parseAsync(argv, { from: 'user' });
    return true;
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    // Only commander's own parse errors are usage errors; a failure inside the action keeps its code.
    if (typeof code !== 'string' || !code.startsWith('commander.')) throw e;
    if (code === 'commander.helpDisplayed' || code === 'commander.help' || code === 'commander.version') return false;
    throw new GridboxError('USAGE', (e as Error).message.replace(/^error: /, ''));
  }
}

export function intArg(name: string) {
  return (v: string): number => {
    const n = Number(v.replace(/[kKmMgG]$/, ''));
    const mult = /[kK]$/.test(v) ? 1024 : /[mM]$/.test(v) ? 1 << 20 : /[gG]$/.test(v) ? 1 << 30 : 1;
    if (!Number.isSafeInteger(n * mult) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer (suffix k/M/G allowed), got ${q(v)}`);
    return n * mult;
  };
}

/** Adds --hash, --compression, --chunk-min/avg/max, --autocatalog-max. */
export function addContentFlags(cmd: Command): Command {
  return cmd
    .option('--hash <algorithm>', 'content hash: sha1, rmd160 or shake128')
    .option('--compression <algorithm>', 'data compression: zlib or none')
    .option('--chunk-min <bytes>', 'minimum chunk size', intArg('--chunk-min'))
    .option('--chunk-avg <bytes>', 'average chunk size', intArg('--chunk-avg'))
    .option('--chunk-max <bytes>', 'maximum chunk size', intArg('--chunk-max'))
    .option('--autocatalog-max <entries>', 'split catalogs above this many entries (0 = never)', intArg('--autocatalog-max'));
}

export interface ContentFlags {
  hash?: string;
  compression?: string;
  chunkMin?: number;
  chunkAvg?: number;
  chunkMax?: number;
  autocatalogMax?: number;
}

export function applyContentFlags(s: RepoSettings, f: ContentFlags): RepoSettings {
  const out = { ...s };
  if (f.hash !== undefined) out.hashAlgorithm = parseHashAlgorithm(f.hash);
  if (f.compression !== undefined) {
    if (f.compression !== 'zlib' && f.compression !== 'none' && f.compression !== 'default') throw new GridboxError('USAGE', `Unknown compression ${q(f.compression)}: expected zlib or none`);
    out.compression = f.compression === 'none' ? 'none' : 'zlib';
  }
  if (f.chunkMin !== undefined) out.chunkMin = f.chunkMin;
  if (f.chunkAvg !== undefined) out.chunkAvg = f.chunkAvg;
  if (f.chunkMax !== undefined) out.chunkMax = f.chunkMax;
  if (f.autocatalogMax !== undefined) out.autocatalogMax = f.autocatalogMax;
  if (!(out.chunkMin >= 32 && out.chunkMin < out.chunkAvg && out.chunkAvg < out.chunkMax)) {
    throw new GridboxError('USAGE', `Invalid chunk sizes min=${out.chunkMin} avg=${out.chunkAvg} max=${out.chunkMax}: need 32 <= min < avg < max`);
  }
  return out;
}

/** Test hook: GRIDBOX_CRASH_POINT=<name> kills this process with SIGKILL when the publish reaches <name>. */
export function crashHook(): ((name: string) => void) | undefined {
  const want = process.env.GRIDBOX_CRASH_POINT;
  if (want === undefined || want === '') return undefined;
  return (name: string) => { if (name === want) process.kill(process.pid, 'SIGKILL'); };
}

export function say(line: string): void {
  process.stdout.write(line + '\n');
}
