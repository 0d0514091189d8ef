// Parses Apptainer's command line (runtime-contract.md §1.3, §2.7, §3.1) plus the APPTAINER_*/SINGULARITY_*
// option variables into plain options. Pure: argv and env come in as data; reading files is the caller's job.
import { GridboxError, q } from '../errors.js';
import type { Action, BindSpec, LaunchOptions, Message } from './launch-spec.js';

/** What `--help` (or `help <topic>`) was asked for: a runtime subcommand, or the top level when absent. */
export type HelpTopic = Action | 'inspect' | 'version';
const HELP_TOPICS: HelpTopic[] = ['exec', 'run', 'shell', 'test', 'inspect', 'version'];
const isHelpFlag = (a: string): boolean => a === '-h' || a === '--help';

export type ParsedCommand =
  | { kind: 'version-flag' }
  | { kind: 'version' }
  | { kind: 'help'; topic?: HelpTopic }
  | { kind: 'action'; level: number; options: LaunchOptions; envFilePaths: string[] }
  | { kind: 'inspect'; level: number; image: string; show: InspectShow };

export interface InspectShow {
  labels: boolean; runscript: boolean; test: boolean; environment: boolean; helpfile: boolean;
  deffile: boolean; json: boolean; all: boolean;
}

/** Usage errors exit 1 in Apptainer (not 255): the CLI maps this marker. */
export class UsageError extends Error {}

const LEVELS: Record<string, number> = { s: -3, q: -1, v: 4, d: 5 };

// Flags taking a value; the key names the option field they feed.
const VALUE_FLAGS: Record<string, string> = {
  '-B': 'bind', '--bind': 'bind', '--mount': 'mount', '-H': 'home', '--home': 'home', '--pwd': 'pwd',
  '--cwd': 'pwd', '-S': 'scratch', '--scratch': 'scratch', '-W': 'workdir', '--workdir': 'workdir',
  '--env': 'env', '--env-file': 'env-file', '--no-env': 'ignore', '--hostname': 'hostname', '--shell': 'shell',
  '--app': 'ignore', '--network': 'ignore', '--network-args': 'ignore', '--dns': 'ignore', '--no-mount': 'ignore',
  '-o': 'unsupported', '--overlay': 'unsupported', '--security': 'ignore', '--fusemount': 'unsupported',
  '--apply-cgroups': 'ignore', '--cpus': 'ignore', '--memory': 'ignore', '--add-caps': 'ignore', '--drop-caps': 'ignore',
};
/** The flags whose value may follow as the next argument (the shims' image hint skips them with their value). */
export const VALUE_FLAG_NAMES: readonly string[] = Object.keys(VALUE_FLAGS);
const BOOL_FLAGS: Record<string, string> = {
  '--no-home': 'noHome', '-c': 'contain', '--contain': 'contain', '-C': 'containAll', '--containall': 'containAll',
  '-e': 'cleanEnv', '--cleanenv': 'cleanEnv', '-p': 'pid', '--pid': 'pid', '--no-pid': 'noPid', '-i': 'ipc',
  '--ipc': 'ipc', '-n': 'net', '--net': 'net', '--uts': 'uts', '--nv': 'nv', '--nvccli': 'nv', '-u': 'ignore',
  '--userns': 'ignore', '--no-init': 'ignore', '--rocm': 'ignore', '--compat32': 'ignore', '--underlay': 'ignore',
  '--no-eval': 'ignore', '--no-umask': 'ignore', '--no-privs': 'ignore', '--keep-privs': 'ignore',
  '-w': 'readonly', '--writable': 'readonly', '--writable-tmpfs': 'readonly', '--compat': 'compat',
  '-f': 'unsupported', '--fakeroot': 'unsupported', '--allow-setuid': 'ignore', '--disable-cache': 'ignore',
};
const INSPECT_FLAGS: Record<string, keyof InspectShow | 'ignore'> = {
  '-l': 'labels', '--labels': 'labels', '-r': 'runscript', '--runscript': 'runscript', '-t': 'test', '--test': 'test',
  '-e': 'environment', '--environment': 'environment', '-H': 'helpfile', '--helpfile': 'helpfile',
  '-d': 'deffile', '--deffile': 'deffile', '-j': 'json', '--json': 'json', '--all': 'all', '-s': 'ignore',
  '--startscript': 'ignore', '--list-apps': 'ignore',
};

const truthy = (v: string | undefined): boolean => v !== undefined && /^(1|true|yes|on)$/i.test(v.trim());

/** Looks up APPTAINER_<KEY> then SINGULARITY_<KEY> for each key; only documented option keys are read. */
function optEnv(env: Record<string, string | undefined>, ...keys: string[]): string | undefined {
  for (const k of keys) {
    for (const p of ['APPTAINER_', 'SINGULARITY_']) {
      const v = env[p + k];
      if (v !== undefined && v !== '') return v;
    }
  }
  return undefined;
}

/** Splits on commas not escaped as `\,`. */
function splitList(s: string): string[] {
  return s.split(/(?<!\\),/).map((x) => x.trim()).filter((x) => x !== '');
}

/** Parses one `--bind` value (a comma list of `src[:dst[:opts]]`) — runtime-contract.md §3.3. */
export function parseBinds(value: string): BindSpec[] {
  const out: BindSpec[] = [];
  for (const item of splitList(value)) {
    const fields = item.split(/(?<!\\):/).map((f) => f.replace(/\\([,:])/g, '$1'));
    if (fields.length > 3) throw new GridboxError('LAUNCH_BAD_OPTION', `Cannot parse bind ${q(item)}: too many fields`);
    const [source, dest = source, opts = ''] = fields;
    if (source === '') throw new GridboxError('LAUNCH_BAD_OPTION', `Cannot parse bind ${q(item)}: empty source`);
    if (!dest.startsWith('/')) throw new GridboxError('LAUNCH_BAD_OPTION', `Cannot parse bind ${q(item)}: destination ${q(dest)} is not absolute`);
    let readOnly = false;
    for (const o of opts.split(',').filter((x) => x !== '')) {
      if (o === 'ro') readOnly = true;
      else if (o === 'rw') readOnly = false;
      else if (!o.startsWith('image-src=') && !o.startsWith('id=')) throw new GridboxError('LAUNCH_BAD_OPTION', `Cannot parse bind ${q(item)}: unknown option ${q(o)}`);
    }
    out.push({ source, dest, readOnly });
  }
  return out;
}

/** Global options: combined short flags like `-vvv` or `-sq`; the highest level named wins (debug > verbose > quiet > silent). */
function parseGlobal(argv: string[], env: Record<string, string | undefined>): { level: number; rest: string[] } {
  const seen: number[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (/^-[sqvd]+$/.test(a)) { for (const c of a.slice(1)) seen.push(LEVELS[c]); continue; }
    const long: Record<string, number> = { '--silent': -3, '--quiet': -1, '--verbose': 4, '--debug': 5 };
    if (a in long) { seen.push(long[a]); continue; }
    if (a === '--nocolor') continue;
    if (a === '-c' || a === '--config') { i++; continue; }
    break;
  }
  let level = 1;
  const fromEnv = Number(optEnv(env, 'MESSAGELEVEL'));
  if (Number.isFinite(fromEnv) && optEnv(env, 'MESSAGELEVEL') !== undefined) level = fromEnv;
  if (seen.length > 0) level = seen.includes(5) ? 5 : seen.includes(4) ? 4 : seen.includes(-1) ? -1 : -3;
  return { level, rest: argv.slice(i) };
}

/** Splits `--flag=value` and `-Xvalue` forms into a flag and its value. */
function splitFlag(a: string): { flag: string; inline?: string } {
  if (a.startsWith('--')) {
    const eq = a.indexOf('=');
    return eq < 0 ? { flag: a } : { flag: a.slice(0, eq), inline: a.slice(eq + 1) };
  }
  if (a.length > 2 && `${a.slice(0, 2)}` in VALUE_FLAGS) return { flag: a.slice(0, 2), inline: a.slice(2).replace(/^=/, '') };
  return { flag: a };
}

export function parseApptainerArgs(argv: string[], env: Record<string, string | undefined>): ParsedCommand {
  const { level, rest } = parseGlobal(argv, env);
  const [sub, ...args] = rest;
  if (sub === '--version' || sub === '-V') return { kind: 'version-flag' };
  if (sub === 'help') {
    // `apptainer help exec`; an unknown topic gets the top-level help, as cobra does.
    const topic = HELP_TOPICS.find((t) => t === args[0]);
    return topic === undefined ? { kind: 'help' } : { kind: 'help', topic };
  }
  if (sub === 'version') return args.some(isHelpFlag) ? { kind: 'help', topic: 'version' } : { kind: 'version' };
  if (sub === undefined || isHelpFlag(sub)) return { kind: 'help' };
  if (sub === 'inspect') return parseInspect(args, level);
  if (!['exec', 'run', 'shell', 'test'].includes(sub)) throw new UsageError(`unknown command ${q(sub)}`);
  const action = sub as Action;

  const notes: Message[] = [];
  const bindValues: string[] = [];
  const scratch: string[] = [];
  const envs: string[] = [];
  const envFilePaths: string[] = [];
  const bools = new Set<string>();
  const values: Record<string, string> = {};
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i];
    if (a === '--') { i++; break; }
    if (!a.startsWith('-') || a === '-') break;
    if (isHelpFlag(a)) return { kind: 'help', topic: action };
    const { flag, inline } = splitFlag(a);
    if (flag in VALUE_FLAGS) {
      const value = inline ?? args[++i];
      if (value === undefined) throw new UsageError(`flag needs an argument: ${flag}`);
      const key = VALUE_FLAGS[flag];
      if (key === 'bind') bindValues.push(value);
      else if (key === 'scratch') scratch.push(...splitList(value));
      else if (key === 'env') envs.push(...splitEnvList(value));
      else if (key === 'env-file') envFilePaths.push(value);
      else if (key === 'unsupported') throw new GridboxError('LAUNCH_BAD_OPTION', `Option ${flag} is not supported by gridbox`);
      else if (key === 'mount') notes.push({ level: 'WARNING', text: `--mount ${q(value)} ignored: use --bind` });
      else if (key !== 'ignore') values[key] = value;
      continue;
    }
    // Combined short booleans, e.g. `-ce`.
    const shorts = !a.startsWith('--') && a.length > 2 ? [...a.slice(1)].map((c) => `-${c}`) : [flag];
    for (const f of shorts) {
      const key = BOOL_FLAGS[f];
      if (key === undefined) throw new UsageError(`unknown flag: ${f}`);
      if (key === 'unsupported') throw new GridboxError('LAUNCH_BAD_OPTION', `Option ${f} is not supported by gridbox`);
      if (key === 'readonly') notes.push({ level: 'WARNING', text: `${f} ignored: images are read-only` });
      else if (key === 'compat') { bools.add('containAll'); }
      else if (key !== 'ignore') bools.add(key);
    }
  }
  const image = args[i];
  if (image === undefined) throw new UsageError(`${action} requires an image argument`);
  const payload = args.slice(i + 1);
  if (action === 'exec' && payload.length === 0) throw new UsageError('exec requires a command after the image');

  const envBool = (...keys: string[]): boolean => truthy(optEnv(env, ...keys));
  const containAll = bools.has('containAll') || envBool('CONTAINALL');
  const fromEnvBinds = [optEnv(env, 'BIND'), optEnv(env, 'BINDPATH')].filter((v): v is string => v !== undefined);
  const options: LaunchOptions = {
    action, image, args: payload,
    binds: [...bindValues, ...fromEnvBinds].flatMap(parseBinds),
    scratch: [...scratch, ...splitList(optEnv(env, 'SCRATCH', 'SCRATCHDIR') ?? '')],
    workdir: values.workdir ?? optEnv(env, 'WORKDIR'),
    pwd: values.pwd ?? optEnv(env, 'PWD', 'TARGET_PWD', 'CWD', 'TARGET_CWD'),
    home: values.home ?? optEnv(env, 'HOME'),
    noHome: bools.has('noHome') || envBool('NO_HOME'),
    contain: containAll || bools.has('contain') || envBool('CONTAIN'),
    containAll,
    cleanEnv: containAll || bools.has('cleanEnv') || envBool('CLEANENV'),
    pid: !bools.has('noPid') && (containAll || bools.has('pid') || envBool('PID')),
    ipc: containAll || bools.has('ipc') || envBool('IPC'),
    net: bools.has('net') || envBool('NET'),
    uts: bools.has('uts') || values.hostname !== undefined || optEnv(env, 'HOSTNAME') !== undefined,
    hostname: values.hostname ?? optEnv(env, 'HOSTNAME'),
    nv: bools.has('nv') || envBool('NV'),
    envs, envFiles: [],
    shell: values.shell ?? optEnv(env, 'SHELL'),
    notes,
  };
  return { kind: 'action', level, options, envFilePaths };
}

/** `--env A=1,B=2`: a comma starts a new entry only when what follows looks like KEY=. */
function splitEnvList(v: string): string[] {
  return v.split(/,(?=[A-Za-z_][A-Za-z0-9_]*=)/);
}

function parseInspect(args: string[], level: number): ParsedCommand {
  const show: InspectShow = { labels: false, runscript: false, test: false, environment: false, helpfile: false, deffile: false, json: false, all: false };
  let i = 0;
  for (; i < args.length && args[i].startsWith('-'); i++) {
    if (isHelpFlag(args[i])) return { kind: 'help', topic: 'inspect' };
    const key = INSPECT_FLAGS[args[i]];
    if (key === undefined) throw new UsageError(`unknown flag: ${args[i]}`);
    if (key !== 'ignore') show[key] = true;
  }
  const image = args[i];
  if (image === undefined) throw new UsageError('inspect requires an image argument');
  if (!show.runscript && !show.test && !show.environment && !show.helpfile && !show.deffile && !show.all) show.labels = true;
  return { kind: 'inspect', level, image, show };
}
