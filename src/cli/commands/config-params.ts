// The CernVM-FS parameters as a site admin sees them: the merged values of the config files (in
// CernVM-FS's order), --config, the CVMFS_* environment and built-in defaults, each with where it came
// from (`gridbox config showconfig`); and the repository list (CVMFS_REPOSITORIES, else config.d).
// The same sources and order as loadClientSettings, which stays the one that builds a client.
import { readdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { GridboxError, q } from '../../errors.js';
import { readConfigIfExists } from '../client-options.js';
import { CLIENT_DEFAULTS, configFileOrder, parseShellConfig, type ConfigMap } from '../../client/client-config.js';

export interface Param { value: string; from: string }

export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.GRIDBOX_CVMFS_CONFIG_DIR ?? '/etc/cvmfs';
}

/** Effective parameters for `fqrn` (or only the default files when undefined), each with its source. */
export async function effectiveParams(fqrn: string | undefined, opts: { config?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Map<string, Param>> {
  const env = opts.env ?? process.env;
  const envMap: ConfigMap = Object.fromEntries(Object.entries(env).filter((kv): kv is [string, string] => kv[1] !== undefined));
  const dir = configDir(env);
  const out = new Map<string, Param>();
  for (const [k, v] of Object.entries(CLIENT_DEFAULTS)) out.set(k, { value: v, from: 'built-in default' });
  out.set('CVMFS_HTTP_PROXY', { value: 'DIRECT', from: 'built-in default' });
  out.set('CVMFS_CACHE_BASE', { value: join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'gridbox', 'cvmfs'), from: 'built-in default' });
  let defaultD: string[] = [];
  try { defaultD = (await readdir(join(dir, 'default.d'))).filter((f) => f.endsWith('.conf')); } catch { /* none */ }
  const files = configFileOrder(fqrn ?? '', defaultD)
    .filter((rel) => fqrn !== undefined || !(rel.startsWith('domain.d/') || rel.startsWith('config.d/')))
    .map((rel) => join(dir, rel));
  if (opts.config !== undefined) files.push(opts.config);
  let values: ConfigMap = Object.fromEntries([...out].map(([k, p]) => [k, p.value]));
  for (const file of files) {
    const text = await readConfigIfExists(file);
    if (text === undefined) {
      if (file === opts.config) throw new GridboxError('CONFIG_INVALID', `Config file ${q(file)} does not exist`, { path: file });
      continue;
    }
    const next = parseShellConfig(text, values, envMap).values;
    for (const [k, v] of Object.entries(next)) if (values[k] !== v || !out.has(k)) out.set(k, { value: v, from: file });
    values = next;
  }
  for (const [k, v] of Object.entries(envMap)) if (k.startsWith('CVMFS_')) out.set(k, { value: v, from: 'environment' });
  return out;
}

/** Expands a short name with CVMFS_DEFAULT_DOMAIN (as CernVM-FS does for `atlas` → atlas.cern.ch). */
export function fullName(name: string, defaultDomain: string | undefined): string {
  return !name.includes('.') && defaultDomain ? `${name}.${defaultDomain}` : name;
}

/**
 * Whether `fqrn` may be mounted: with CVMFS_STRICT_MOUNT=yes only the repositories of CVMFS_REPOSITORIES
 * (and CVMFS_CONFIG_REPOSITORY), as mount.cvmfs; otherwise any.
 */
export async function mountAllowed(fqrn: string, opts: { config?: string; env?: NodeJS.ProcessEnv } = {}): Promise<boolean> {
  const p = await effectiveParams(undefined, opts);
  if (!/^(yes|on|1|true)$/i.test(p.get('CVMFS_STRICT_MOUNT')?.value ?? '')) return true;
  return (await configuredRepositories(opts)).includes(fqrn) || p.get('CVMFS_CONFIG_REPOSITORY')?.value === fqrn;
}

/** The configured repositories: CVMFS_REPOSITORIES, else every config.d/<fqrn>.conf|.local. */
export async function configuredRepositories(opts: { config?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string[]> {
  const p = await effectiveParams(undefined, opts);
  const domain = p.get('CVMFS_DEFAULT_DOMAIN')?.value;
  const listed = (p.get('CVMFS_REPOSITORIES')?.value ?? '').split(/[,\s]+/).filter((r) => r !== '').map((r) => fullName(r, domain));
  let names = listed;
  if (names.length === 0) {
    try {
      names = (await readdir(join(configDir(opts.env), 'config.d'))).filter((f) => /\.(conf|local)$/.test(f)).map((f) => f.replace(/\.(conf|local)$/, ''));
    } catch { /* no config.d */ }
  }
  for (const n of names) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(n)) throw new GridboxError('CONFIG_INVALID', `Repository name ${q(n)} in the configuration is not a valid name`);
  }
  return [...new Set(names)].sort();
}
