// The container's environment (runtime-contract.md §3.4): host variables, APPTAINERENV_*/SINGULARITYENV_*,
// --env/--env-file, fixed runtime variables, and the /bin/sh action script that sources the image's
// /.singularity.d/env/*.sh in between so the precedence is --env > APPTAINERENV_ > image env > host env. Pure.
import type { Message } from './launch-spec.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const LIBS_DIR = '/.singularity.d/libs';
const PROXY_VARS = ['http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'no_proxy', 'NO_PROXY', 'all_proxy', 'ALL_PROXY', 'ftp_proxy', 'FTP_PROXY'];
const NOT_PERMITTED = new Set(['HOME', 'APPTAINER_SHELL', 'APPTAINER_APPNAME', 'SINGULARITY_SHELL', 'SINGULARITY_APPNAME']);
const PATH_KEYS: Record<string, string> = { PATH: 'SING_USER_DEFINED_PATH', PREPEND_PATH: 'SING_USER_DEFINED_PREPEND_PATH', APPEND_PATH: 'SING_USER_DEFINED_APPEND_PATH' };
const NEVER_FROM_HOST = new Set(['HOME', 'PATH', 'LD_LIBRARY_PATH', 'PWD', 'OLDPWD', 'SHLVL', '_', 'GRIDBOX_ARGV0']);
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface EnvInputs {
  hostEnv: Record<string, string | undefined>;
  cleanEnv: boolean;
  /** `--env` entries, then the parsed `--env-file` entries: earlier wins. */
  explicit: Array<[string, string]>;
  /** Variables the runtime always sets (HOME, APPTAINER_CONTAINER, …); they beat host and image values. */
  fixed: Record<string, string>;
}

export interface EnvPlan {
  /** Host variables that reach the container, unless the image env defines them. */
  host: Record<string, string>;
  /** Overrides (--env, APPTAINERENV_*), applied after the image env. */
  overrides: Record<string, string>;
  /** PATH, PREPEND_PATH, APPEND_PATH overrides. */
  pathOverrides: Partial<Record<'PATH' | 'PREPEND_PATH' | 'APPEND_PATH', string>>;
  messages: Message[];
}

/** Parses an env file: `KEY=VALUE` lines, optional `export `, `#` comments, one level of quotes. */
export function parseEnvFile(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim().replace(/^export\s+/, '');
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    let value = line.slice(eq + 1);
    const m = /^(["'])(.*)\1$/.exec(value);
    if (m) value = m[2];
    out.push([line.slice(0, eq), value]);
  }
  return out;
}

export function planEnv(input: EnvInputs): EnvPlan {
  const messages: Message[] = [];
  const overrides: Record<string, string> = {};
  const pathOverrides: EnvPlan['pathOverrides'] = {};
  const origin: Record<string, string> = {};
  const offer = (key: string, value: string, from: string): void => {
    if (!IDENT.test(key) || key === 'UID' || key === 'GID') return;
    if (NOT_PERMITTED.has(key)) {
      messages.push({ level: 'WARNING', text: `Overriding ${key} environment variable with ${from}${key} is not permitted` });
      return;
    }
    if (key in PATH_KEYS) {
      const k = key as keyof typeof pathOverrides;
      if (pathOverrides[k] === undefined) pathOverrides[k] = value;
      return;
    }
    if (key in overrides) {
      if (overrides[key] !== value && origin[key] === 'APPTAINERENV_' && from === 'SINGULARITYENV_') {
        messages.push({ level: 'WARNING', text: `Environment variable SINGULARITYENV_${key} is set, but APPTAINERENV_${key} is preferred` });
      }
      return;
    }
    overrides[key] = value;
    origin[key] = from;
  };
  for (const [k, v] of input.explicit) offer(k, v, '--env ');
  for (const prefix of ['APPTAINERENV_', 'SINGULARITYENV_']) {
    for (const [name, value] of Object.entries(input.hostEnv)) {
      if (value !== undefined && name.startsWith(prefix) && name.length > prefix.length) offer(name.slice(prefix.length), value, prefix);
    }
  }

  const host: Record<string, string> = {};
  for (const [name, value] of Object.entries(input.hostEnv)) {
    if (value === undefined || !IDENT.test(name)) continue;
    if (input.cleanEnv && name !== 'TERM' && !PROXY_VARS.includes(name)) continue;
    if (/^(APPTAINER|SINGULARITY)(ENV)?_/.test(name) || NEVER_FROM_HOST.has(name) || name in overrides) continue;
    if (name in input.fixed) continue;
    host[name] = value;
  }
  if (input.cleanEnv && !('LANG' in overrides)) overrides.LANG = 'C';
  return { host, overrides, pathOverrides, messages };
}

/** The final environment when the image has no shell: nothing from the image is sourced. */
export function flattenEnv(plan: EnvPlan, fixed: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { ...plan.host, ...fixed, ...plan.overrides };
  let path = plan.pathOverrides.PATH ?? DEFAULT_PATH;
  if (plan.pathOverrides.PREPEND_PATH) path = `${plan.pathOverrides.PREPEND_PATH}:${path}`;
  if (plan.pathOverrides.APPEND_PATH) path = `${path}:${plan.pathOverrides.APPEND_PATH}`;
  env.PATH = path;
  const ld = env.LD_LIBRARY_PATH;
  env.LD_LIBRARY_PATH = ld ? `${ld}:${LIBS_DIR}` : LIBS_DIR;
  return env;
}

/**
 * The environment handed to `/bin/sh -c ACTION_SCRIPT`: fixed variables as they are, host variables listed in
 * __GB_HOST (saved and unset before the image env runs, restored after unless the image defined them),
 * overrides as __gbo_NAME listed in __GB_OVR (exported after the image env).
 */
export function shellEnv(plan: EnvPlan, fixed: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { ...plan.host, ...fixed, PATH: DEFAULT_PATH };
  env.__GB_HOST = Object.keys(plan.host).join(' ');
  env.__GB_OVR = Object.keys(plan.overrides).join(' ');
  for (const [k, v] of Object.entries(plan.overrides)) env[`__gbo_${k}`] = v;
  for (const [k, v] of Object.entries(plan.pathOverrides)) if (v !== undefined) env[PATH_KEYS[k]] = v;
  return env;
}

/** Run by the image's /bin/sh: `sh -c ACTION_SCRIPT <action> CMD ARGS…`. */
export const ACTION_SCRIPT = `
for __gb_n in $__GB_HOST; do eval "__gbh_$__gb_n=\\"\\\${$__gb_n}\\"; unset $__gb_n"; done
for __gb_f in /.singularity.d/env/*.sh; do if [ -f "$__gb_f" ]; then . "$__gb_f"; fi; done
for __gb_n in $__GB_OVR; do eval "export $__gb_n=\\"\\\${__gbo_$__gb_n}\\"; unset __gbo_$__gb_n"; done
if [ -n "\${SING_USER_DEFINED_PATH+x}" ]; then PATH="$SING_USER_DEFINED_PATH"; fi
if [ -n "\${SING_USER_DEFINED_PREPEND_PATH:-}" ]; then PATH="$SING_USER_DEFINED_PREPEND_PATH:$PATH"; fi
if [ -n "\${SING_USER_DEFINED_APPEND_PATH:-}" ]; then PATH="$PATH:$SING_USER_DEFINED_APPEND_PATH"; fi
unset SING_USER_DEFINED_PATH SING_USER_DEFINED_PREPEND_PATH SING_USER_DEFINED_APPEND_PATH
export PATH
case ":\${LD_LIBRARY_PATH:-}:" in *:${LIBS_DIR}:*) ;; *) LD_LIBRARY_PATH="\${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}${LIBS_DIR}"; export LD_LIBRARY_PATH;; esac
for __gb_n in $__GB_HOST; do eval "if [ -z \\"\\\${$__gb_n+x}\\" ] && [ -n \\"\\\${__gbh_$__gb_n}\\" ]; then export $__gb_n=\\"\\\${__gbh_$__gb_n}\\"; fi; unset __gbh_$__gb_n"; done
unset __GB_HOST __GB_OVR __gb_n __gb_f
if ! command -v "$1" >/dev/null 2>&1; then printf 'FATAL:   "%s": executable file not found in $PATH\\n' "$1" >&2; exit 255; fi
exec "$@"
`;
