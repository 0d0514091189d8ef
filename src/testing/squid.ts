// Test helper: Debian squid as a caching forward proxy on 127.0.0.1:<free port>, with config,
// cache, logs and pid under a temp dir (test-harness.md §4 and its gotchas). Not for production.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freeLoopbackPort, waitForPort } from './free-port.js';

export interface Squid {
  /** "http://127.0.0.1:<port>" */
  url: string;
  port: number;
  dir: string;
  /** access.log lines written so far (e.g. to look for TCP_MEM_HIT). */
  accessLog(): Promise<string[]>;
  /** SIGKILL: a clean squid shutdown takes seconds. */
  stop(): Promise<void>;
}

export function squidBinary(): string | undefined {
  return ['/usr/sbin/squid', '/usr/bin/squid'].find((p) => existsSync(p));
}

function userIds(name: string): { uid: number; gid: number } | undefined {
  const r = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) return undefined;
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/**
 * Starts squid with its state in `dir` (made 0755: as root squid drops to `proxy`, which must reach it,
 * so every parent of `dir` must be traversable by others too). `cache` "mem" skips the disk store.
 */
export async function startSquid(dir: string, opts: { cache?: 'mem' | 'disk' } = {}): Promise<Squid> {
  const bin = squidBinary();
  if (bin === undefined) throw new Error('squid is not installed (apt-get install squid)');
  const cache = opts.cache ?? 'mem';
  await mkdir(join(dir, 'cache'), { recursive: true });
  const asRoot = process.getuid?.() === 0;
  const runAs = asRoot ? userIds('proxy') : undefined;
  if (asRoot && runAs === undefined) throw new Error('squid as root needs the "proxy" user');
  for (let attempt = 0; ; attempt++) {
    const port = await freeLoopbackPort();
    const conf = join(dir, 'squid.conf');
    await writeFile(conf, [
      `http_port 127.0.0.1:${port}`,
      'visible_hostname gridbox-test-squid',
      ...(asRoot ? ['cache_effective_user proxy'] : []),
      'acl Safe_ports port 80 1025-65535',
      'http_access deny !Safe_ports',
      'http_access deny CONNECT',
      'http_access allow localhost',
      'http_access deny all',
      'cache_mem 64 MB',
      'maximum_object_size_in_memory 32 MB',
      'maximum_object_size 32 MB',
      'memory_cache_shared off',
      cache === 'disk' ? `cache_dir ufs ${join(dir, 'cache')} 256 16 256` : '# memory-only cache',
      'collapsed_forwarding on',
      'refresh_pattern . 0 20% 4320',
      `pid_filename ${join(dir, 'squid.pid')}`,
      `access_log stdio:${join(dir, 'access.log')} squid`,
      `cache_log ${join(dir, 'cache.log')}`,
      'cache_store_log none',
      `coredump_dir ${dir}`,
      'netdb_filename none',
      'shutdown_lifetime 0 seconds',
      'pinger_enable off',
      'icp_port 0',
      'htcp_port 0',
      'dns_nameservers 127.0.0.1',
      '',
    ].join('\n'));
    if (runAs) {
      await chmod(dir, 0o755);
      await chown(dir, runAs.uid, runAs.gid);
      await chown(join(dir, 'cache'), runAs.uid, runAs.gid);
    }
    if (cache === 'disk') {
      const z = spawnSync(bin, ['-N', '-z', '-f', conf], { encoding: 'utf8', timeout: 30_000 });
      if (z.status !== 0) throw new Error(`squid -z failed: ${z.stderr}`);
    }
    const child: ChildProcess = spawn(bin, ['-N', '-d', '1', '-f', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => { stderr += c.toString(); });
    try {
      await waitForPort(port, 20_000, () => child.exitCode === null && child.signalCode === null);
    } catch (e) {
      child.kill('SIGKILL');
      if (attempt < 2 && /in use|EADDRINUSE|Cannot bind/i.test(stderr)) continue;
      throw new Error(`squid did not start: ${(e as Error).message}\n${stderr.slice(-2000)}`);
    }
    const exited = new Promise<void>((r) => { if (child.exitCode !== null || child.signalCode !== null) r(); else child.once('exit', () => r()); });
    return {
      url: `http://127.0.0.1:${port}`, port, dir,
      accessLog: async () => (await readFile(join(dir, 'access.log'), 'utf8').catch(() => '')).split('\n').filter((l) => l !== ''),
      stop: async () => { child.kill('SIGKILL'); await exited; },
    };
  }
}
