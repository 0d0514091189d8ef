// Shared options of the client commands (ls, stat, cat, get, later mount): flags, CVMFS_* environment and
// CernVM-FS config files merged into ClientSettings, master keys loaded, and the client assembled from the
// concrete downloader, cache, catalog reader and trust check. The only client code reading files and env.
import { readdir, readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { GridboxError, q } from '../errors.js';
import { configFileOrder, parseShellConfig, resolveClientSettings, type ClientSettings, type ConfigMap } from '../client/client-config.js';
import type { Client } from '../client/index.js';

export interface ClientFlags {
  server?: string;
  keys?: string;
  key?: string;
  cache?: string;
  proxy?: string;
  config?: string;
}

/** Adds the shared flags to a commander command. */
export function addClientFlags(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'repository base URL(s), ";"-separated; "@fqrn@" expands, a URL ending in /cvmfs gets /<fqrn> appended')
    .option('--keys <dir>', 'directory of master public keys (*.pub)')
    .option('--key <file>', 'master public key file(s), ":"-separated')
    .option('--cache <dir>', 'cache base directory (CVMFS_CACHE_BASE)')
    .option('--proxy <url>', 'HTTP proxy list (CVMFS_HTTP_PROXY syntax), default DIRECT')
    .option('--config <file>', 'extra CernVM-FS config file (shell syntax), read after the system ones');
}

/** A config file's text, or undefined when it does not exist; CONFIG_INVALID when it cannot be read. */
export async function readConfigIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new GridboxError('CONFIG_INVALID', `Cannot read config file ${q(path)}`, { path, cause: e });
  }
}

/** The client flags with every path made absolute (daemons run from "/"). */
export function absoluteClientFlags(o: ClientFlags): ClientFlags {
  const abs = (p: string | undefined): string | undefined => (p === undefined ? undefined : resolve(p));
  return {
    server: o.server, proxy: o.proxy, config: abs(o.config), cache: abs(o.cache), keys: abs(o.keys),
    key: o.key === undefined ? undefined : o.key.split(':').map((k) => resolve(k)).join(':'),
  };
}

/** The client flags as a daemon's argv, every path made absolute. */
export function clientFlagArgs(o: ClientFlags): string[] {
  const a = absoluteClientFlags(o);
  return (['server', 'proxy', 'config', 'cache', 'keys', 'key'] as const).flatMap((k) => (a[k] === undefined ? [] : [`--${k}`, a[k]]));
}

/** Expands a --server value: templates, and "/cvmfs" alone gets the repository name appended. */
export function expandServerFlag(value: string, fqrn: string): string {
  return value.split(';').map((s) => s.trim()).filter((s) => s !== '').map((s) => {
    const t = s.replace(/\/+$/, '');
    return /\/cvmfs$/.test(t) ? `${t}/${fqrn}` : t;
  }).join(';');
}

/**
 * Merges, lowest to highest precedence: built-in defaults, the CernVM-FS config files under the config
 * dir (GRIDBOX_CVMFS_CONFIG_DIR, default /etc/cvmfs), --config, CVMFS_* environment variables, flags.
 */
export async function loadClientSettings(fqrn: string, flags: ClientFlags, env: NodeJS.ProcessEnv = process.env): Promise<ClientSettings> {
  const envMap: ConfigMap = Object.fromEntries(Object.entries(env).filter((kv): kv is [string, string] => kv[1] !== undefined));
  const configDir = env.GRIDBOX_CVMFS_CONFIG_DIR ?? '/etc/cvmfs';
  let defaultD: string[] = [];
  try { defaultD = (await readdir(join(configDir, 'default.d'))).filter((f) => f.endsWith('.conf')); } catch { /* none */ }
  let values: ConfigMap = {
    CVMFS_HTTP_PROXY: 'DIRECT',
    CVMFS_CACHE_BASE: join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'gridbox', 'cvmfs'),
  };
  for (const rel of configFileOrder(fqrn, defaultD)) {
    const text = await readConfigIfExists(join(configDir, rel));
    if (text !== undefined) values = parseShellConfig(text, values, envMap).values;
  }
  if (flags.config !== undefined) {
    const text = await readConfigIfExists(flags.config);
    if (text === undefined) throw new GridboxError('CONFIG_INVALID', `Config file ${q(flags.config)} does not exist`, { path: flags.config });
    values = parseShellConfig(text, values, envMap).values;
  }
  for (const [k, v] of Object.entries(envMap)) if (k.startsWith('CVMFS_')) values[k] = v;
  if (flags.server !== undefined) values.CVMFS_SERVER_URL = expandServerFlag(flags.server, fqrn);
  if (flags.proxy !== undefined) values.CVMFS_HTTP_PROXY = flags.proxy;
  if (flags.cache !== undefined) values.CVMFS_CACHE_BASE = flags.cache;
  if (flags.key !== undefined) values.CVMFS_PUBLIC_KEY = flags.key;
  if (flags.keys !== undefined) { values.CVMFS_KEYS_DIR = flags.keys; if (flags.key === undefined) delete values.CVMFS_PUBLIC_KEY; }
  if (values.CVMFS_SERVER_URL === undefined) throw new GridboxError('USAGE', `No server for ${q(fqrn)}: pass --server URL or set CVMFS_SERVER_URL`);
  return resolveClientSettings(fqrn, values);
}

/** The master public keys: CVMFS_PUBLIC_KEY files, else every *.pub in the keys directory (spec §3.2). */
export async function loadMasterKeys(settings: ClientSettings): Promise<string[]> {
  let files = settings.publicKeys;
  if (files.length === 0) {
    const dir = settings.keysDir ?? '/etc/cvmfs/keys';
    try {
      files = (await readdir(dir)).filter((f) => f.endsWith('.pub')).sort().map((f) => join(dir, f));
    } catch (e) {
      throw new GridboxError('CONFIG_INVALID', `Cannot read the keys directory ${q(dir)}: pass --keys DIR or --key FILE`, { path: dir, cause: e });
    }
  }
  const pems: string[] = [];
  for (const f of files) {
    try {
      if (!(await stat(f)).isFile()) continue;
      pems.push(await readFile(f, 'utf8'));
    } catch (e) {
      throw new GridboxError('CONFIG_INVALID', `Cannot read master public key ${q(f)}`, { path: f, cause: e });
    }
  }
  if (pems.length === 0) throw new GridboxError('CONFIG_INVALID', `No master public key found (${files.length === 0 ? 'no *.pub files' : files.join(', ')})`);
  return pems;
}

/** Settings, keys and a ready client for one repository; `pinRevision` for one-shot readers (see ClientDeps). */
export async function openClientFromFlags(fqrn: string, flags: ClientFlags, log?: (line: string) => void, o: { pinRevision?: boolean } = {}): Promise<Client> {
  const settings = await loadClientSettings(fqrn, flags);
  const keys = await loadMasterKeys(settings);
  // Loaded here, not at the top: the HTTP client, SQLite and X.509 stack is most of a command's start-up,
  // and `gridbox mount`'s parent (which only checks flags) never needs it.
  const [{ createClient, cacheDirFor }, { createClientDeps }] = await Promise.all([import('../client/index.js'), import('../client/default-deps.js')]);
  const deps = await createClientDeps(settings, { cacheDir: cacheDirFor(settings), log });
  return createClient(settings, { ...deps, masterPublicKeysPem: keys, pinRevision: o.pinRevision });
}
