// CernVM-FS client configuration: the shell-syntax parser for config files sites write, the
// template expansion (@fqrn@, @org@), and the typed settings a mount needs (spec §7.1).
// Pure functions over text and maps; reading files and the environment is the CLI's job.
import { GridboxError, q } from '../errors.js';

export type ConfigMap = Record<string, string>;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Parses one config file in the subset of POSIX sh that CernVM-FS configs use: `NAME=value`
 * assignments (optionally after `export`/`readonly`), `#` comments, single and double quotes,
 * backslash escapes, and `$NAME` / `${NAME}` / `${NAME:-default}` references, resolved against
 * the values assigned so far and then `env`. Lines that are not assignments (conditionals,
 * commands) are reported in `ignored` rather than executed.
 */
export function parseShellConfig(text: string, base: ConfigMap = {}, env: ConfigMap = {}): { values: ConfigMap; ignored: string[] } {
  const values: ConfigMap = { ...base };
  const ignored: string[] = [];
  const lookup = (name: string): string => values[name] ?? env[name] ?? '';
  const lines = joinContinuations(text);
  for (const raw of lines) {
    let line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    line = line.replace(/^(export|readonly)\s+/, '');
    const eq = line.indexOf('=');
    const name = eq > 0 ? line.slice(0, eq) : '';
    if (!NAME.test(name)) { ignored.push(raw); continue; }
    const { value, rest } = parseWord(line.slice(eq + 1), lookup);
    if (rest.trim() !== '' && !rest.trim().startsWith('#') && !rest.trim().startsWith(';')) {
      // `A=b cmd` runs cmd with A set: not an assignment of the config.
      ignored.push(raw);
      continue;
    }
    values[name] = value;
  }
  return { values, ignored };
}

function joinContinuations(text: string): string[] {
  return text.replace(/\\\r?\n/g, '').split(/\r?\n/);
}

/** Reads one shell word (quotes, escapes, expansions) from the start of `s`. */
function parseWord(s: string, lookup: (n: string) => string): { value: string; rest: string } {
  let out = '';
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === ' ' || c === '\t' || c === ';') break;
    if (c === '#' && out === '') break;
    if (c === '\\') { out += s[i + 1] ?? ''; i += 2; continue; }
    if (c === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) throw new GridboxError('CONFIG_INVALID', `Unterminated single quote in ${q(s)}`);
      out += s.slice(i + 1, end);
      i = end + 1;
      continue;
    }
    if (c === '"') {
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length && '$`"\\'.includes(s[i + 1])) { out += s[i + 1]; i += 2; continue; }
        if (s[i] === '$') { const r = expand(s, i, lookup); out += r.value; i = r.end; continue; }
        out += s[i++];
      }
      if (s[i] !== '"') throw new GridboxError('CONFIG_INVALID', `Unterminated double quote in ${q(s)}`);
      i++;
      continue;
    }
    if (c === '$') { const r = expand(s, i, lookup); out += r.value; i = r.end; continue; }
    out += c;
    i++;
  }
  return { value: out, rest: s.slice(i) };
}

function expand(s: string, i: number, lookup: (n: string) => string): { value: string; end: number } {
  if (s[i + 1] === '{') {
    const end = s.indexOf('}', i + 2);
    if (end < 0) throw new GridboxError('CONFIG_INVALID', `Unterminated \${ in ${q(s)}`);
    const inner = s.slice(i + 2, end);
    const m = /^([A-Za-z_][A-Za-z0-9_]*)(?::?-(.*))?$/.exec(inner);
    if (!m) throw new GridboxError('CONFIG_INVALID', `Unsupported expansion \${${inner}} in ${q(s)}`);
    const v = lookup(m[1]);
    return { value: v === '' && m[2] !== undefined ? m[2] : v, end: end + 1 };
  }
  const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(i + 1));
  if (!m) return { value: '$', end: i + 1 };
  return { value: lookup(m[0]), end: i + 1 + m[0].length };
}

/** Expands @fqrn@ and @org@ (the first label of the repository name). */
export function expandTemplates(value: string, fqrn: string): string {
  return value.replaceAll('@fqrn@', fqrn).replaceAll('@org@', fqrn.split('.')[0]);
}

/** The files CernVM-FS reads, in order, relative to its config dir (spec §7.1); missing ones are skipped. */
export function configFileOrder(fqrn: string, defaultDFiles: string[] = []): string[] {
  const domain = fqrn.split('.').slice(1).join('.');
  return [
    'default.conf',
    ...[...defaultDFiles].sort().map((f) => `default.d/${f}`),
    'default.local',
    `domain.d/${domain}.conf`,
    `domain.d/${domain}.local`,
    `config.d/${fqrn}.conf`,
    `config.d/${fqrn}.local`,
  ];
}

export interface ClientSettings {
  fqrn: string;
  serverUrls: string[];
  /** Failover groups of load-balanced proxies; "DIRECT" means no proxy. */
  proxyGroups: string[][];
  cacheBase: string;
  sharedCache: boolean;
  quotaLimitBytes: number;
  keysDir?: string;
  publicKeys: string[];
  timeoutMs: number;
  timeoutDirectMs: number;
  maxRetries: number;
  backoffInitMs: number;
  backoffMaxMs: number;
  maxTtlMs?: number;
  /** CVMFS_USE_GEOAPI=yes: order the servers by measured round-trip time (download/host-order.ts), not as listed. */
  hostOrder: 'configured' | 'rtt';
  /** CVMFS_PROXY_SHARD=yes: spread URLs over the members of a proxy group, each URL to one member. */
  proxyShard: boolean;
}

export const CLIENT_DEFAULTS: ConfigMap = {
  CVMFS_CACHE_BASE: '/var/lib/cvmfs',
  CVMFS_QUOTA_LIMIT: '4000',
  CVMFS_SHARED_CACHE: 'yes',
  CVMFS_TIMEOUT: '5',
  CVMFS_TIMEOUT_DIRECT: '10',
  CVMFS_MAX_RETRIES: '1',
  CVMFS_BACKOFF_INIT: '2',
  CVMFS_BACKOFF_MAX: '10',
  CVMFS_KEYS_DIR: '/etc/cvmfs/keys',
};

function num(values: ConfigMap, key: string): number {
  const v = values[key] ?? CLIENT_DEFAULTS[key];
  const n = Number(v);
  if (v === undefined || v.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new GridboxError('CONFIG_INVALID', `Configuration ${key}=${q(v ?? '')} is not a non-negative number`);
  }
  return n;
}

/** CernVM-FS's boolean spelling (yes/on/true/1, any case); anything else is off. */
export function isOn(value: string | undefined): boolean {
  return value !== undefined && ['yes', 'on', 'true', '1'].includes(value.trim().toLowerCase());
}

/** Parses `CVMFS_HTTP_PROXY`: `;` separates failover groups, `|` load-balanced members. */
export function parseProxyList(value: string): string[][] {
  const groups = value.split(';').map((g) => g.split('|').map((p) => p.trim()).filter((p) => p !== ''));
  const out = groups.filter((g) => g.length > 0).map((g) => g.map((p) => (p === 'DIRECT' || /^[a-z]+:\/\//.test(p) ? p : `http://${p}`)));
  if (out.length === 0) throw new GridboxError('CONFIG_INVALID', 'CVMFS_HTTP_PROXY is empty: set it, even if only to DIRECT');
  if (out.some((g) => g.includes('auto'))) throw new GridboxError('CONFIG_INVALID', 'CVMFS_HTTP_PROXY=auto (WPAD) is not supported; list the proxies');
  return out;
}

/** Turns the merged configuration into typed settings for one repository. */
export function resolveClientSettings(fqrn: string, values: ConfigMap): ClientSettings {
  const get = (k: string): string | undefined => {
    const v = values[k] ?? CLIENT_DEFAULTS[k];
    return v === undefined || v === '' ? undefined : expandTemplates(v, fqrn);
  };
  const servers = get('CVMFS_SERVER_URL');
  if (servers === undefined) throw new GridboxError('CONFIG_INVALID', `CVMFS_SERVER_URL is not set for ${q(fqrn)}`);
  const proxy = get('CVMFS_HTTP_PROXY');
  if (proxy === undefined) throw new GridboxError('CONFIG_INVALID', 'CVMFS_HTTP_PROXY is not set: set it, even if only to DIRECT');
  const publicKeys = (get('CVMFS_PUBLIC_KEY') ?? '').split(':').filter((k) => k !== '');
  const maxTtl = get('CVMFS_MAX_TTL');
  return {
    fqrn,
    serverUrls: servers.split(';').map((s) => s.trim().replace(/\/+$/, '')).filter((s) => s !== ''),
    proxyGroups: parseProxyList(proxy),
    cacheBase: get('CVMFS_CACHE_BASE') ?? CLIENT_DEFAULTS.CVMFS_CACHE_BASE,
    sharedCache: (get('CVMFS_SHARED_CACHE') ?? 'yes').toLowerCase() !== 'no',
    quotaLimitBytes: num(values, 'CVMFS_QUOTA_LIMIT') * 1024 * 1024,
    keysDir: publicKeys.length > 0 && values.CVMFS_KEYS_DIR === undefined ? undefined : get('CVMFS_KEYS_DIR'),
    publicKeys,
    timeoutMs: num(values, 'CVMFS_TIMEOUT') * 1000,
    timeoutDirectMs: num(values, 'CVMFS_TIMEOUT_DIRECT') * 1000,
    maxRetries: num(values, 'CVMFS_MAX_RETRIES'),
    backoffInitMs: num(values, 'CVMFS_BACKOFF_INIT') * 1000,
    backoffMaxMs: num(values, 'CVMFS_BACKOFF_MAX') * 1000,
    // Minutes, as CernVM-FS; fractions are accepted (tests want seconds).
    maxTtlMs: maxTtl === undefined ? undefined : num(values, 'CVMFS_MAX_TTL') * 60_000,
    hostOrder: isOn(get('CVMFS_USE_GEOAPI')) ? 'rtt' : 'configured',
    proxyShard: isOn(get('CVMFS_PROXY_SHARD')),
  };
}
