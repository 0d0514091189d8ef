// Lives in bench/ because bench code may not import testing/ (src/architecture.test.ts); testing/stock-cvmfs.ts
// re-exports it for tests and scripts.
// The stock CernVM-FS client (cvmfs2, built from its source into a prefix such as /var/tmp/cvmfs-ref by the
// harness) mounting one of our repositories, for benches that put a stock row beside ours. Benches only:
// no test may depend on it, and every entry point answers undefined when the prefix is absent.
// The invocation is mount.cvmfs's (mount/mount.cvmfs.cc): `cvmfs2 -o <options> <fqrn> <mountpoint>`, with
// one config file (config=FILE replaces the /etc/cvmfs cascade) that sets what /etc/cvmfs/default.conf
// would, paths pointed into a temp dir, and the server on loopback with no proxy.
import { execSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runChild as run, waitGone } from './run-child.js';

export const DEFAULT_STOCK_PREFIX = '/var/tmp/cvmfs-ref';

export interface StockCvmfs {
  prefix: string;
  /** `cvmfs2 --version`'s first line, or the BUILD-REF file. */
  version: string;
  /** PATH, LD_LIBRARY_PATH and CVMFS_LIBRARY_PATH as the prefix's env.sh sets them. */
  env: NodeJS.ProcessEnv;
}

/** The stock client under `prefix` (GRIDBOX_STOCK_CVMFS, else /var/tmp/cvmfs-ref), or undefined when not built. */
export function findStockCvmfs(prefix = process.env.GRIDBOX_STOCK_CVMFS ?? DEFAULT_STOCK_PREFIX): StockCvmfs | undefined {
  const bin = join(prefix, 'usr/bin/cvmfs2');
  const lib = join(prefix, 'usr/lib');
  if (!existsSync(bin) || !existsSync(lib)) return undefined;
  if (!readdirSync(lib).some((f) => f.startsWith('libcvmfs_fuse3'))) return undefined;
  const env = {
    ...process.env,
    PATH: `${join(prefix, 'usr/bin')}:${join(prefix, 'sbin')}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    LD_LIBRARY_PATH: `${lib}${process.env.LD_LIBRARY_PATH ? `:${process.env.LD_LIBRARY_PATH}` : ''}`,
    CVMFS_LIBRARY_PATH: lib,
  };
  let version = 'cvmfs2';
  try {
    version = readFileSync(join(prefix, 'BUILD-REF'), 'utf8').trim().split(' ')[0] || version;
  } catch {
    // no BUILD-REF: keep the generic name
  }
  return { prefix, version, env };
}

export interface StockMountOptions {
  fqrn: string;
  mountpoint: string;
  /** The repository's URL without the fqrn, e.g. http://127.0.0.1:PORT/cvmfs/ (@fqrn@ is appended). */
  serverBase: string;
  /** The repository's public master key (PEM file). */
  publicKey: string;
  /** Config file, reload sockets and logs go here. */
  workDir: string;
  /** CVMFS_CACHE_BASE; a full cache is reused when the same directory is given again. */
  cacheBase: string;
  /** CVMFS_SHARED_CACHE (default true, as default.conf: a separate cache manager process). */
  sharedCache?: boolean;
}

export interface StockMount {
  readonly mountpoint: string;
  /** cvmfs2 processes serving this mount (found by their config path in /proc/PID/cmdline). */
  readonly pids: number[];
  /** umount(8), then waits until every one of `pids` has exited. */
  unmount(): Promise<void>;
}

/** Processes whose command line mentions `needle` (our per-mount config path). */
function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle)) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** The config file mount.cvmfs's cascade would amount to, for one repository on loopback. */
export function stockConfig(o: StockMountOptions): string {
  const lines = [
    `CVMFS_SERVER_URL=${o.serverBase.replace(/\/?$/, '/')}@fqrn@`,
    `CVMFS_PUBLIC_KEY=${o.publicKey}`,
    'CVMFS_HTTP_PROXY=DIRECT',
    `CVMFS_CACHE_BASE=${o.cacheBase}`,
    `CVMFS_SHARED_CACHE=${o.sharedCache === false ? 'no' : 'yes'}`,
    'CVMFS_QUOTA_LIMIT=4000',
    `CVMFS_RELOAD_SOCKETS=${join(o.workDir, 'run')}`,
    `CVMFS_USYSLOG=${join(o.workDir, 'usyslog')}`,
    'CVMFS_TIMEOUT=5', 'CVMFS_TIMEOUT_DIRECT=10', 'CVMFS_MAX_RETRIES=1', `CVMFS_NFILES=${openFilesLimit()}`,
    'CVMFS_CHECK_PERMISSIONS=yes', 'CVMFS_CLAIM_OWNERSHIP=yes', 'CVMFS_USE_GEOAPI=no', 'CVMFS_SEND_INFO_HEADER=no',
    `CVMFS_MOUNT_DIR=${o.mountpoint.replace(/\/[^/]*$/, '') || '/'}`,
  ];
  return lines.join('\n') + '\n';
}

/** Mounts `o.fqrn` with the stock cvmfs2; resolves once cvmfs2 has returned (the mount then answers). */
export async function mountStock(stock: StockCvmfs, o: StockMountOptions): Promise<StockMount> {
  await mkdir(join(o.workDir, 'run'), { recursive: true });
  await mkdir(o.cacheBase, { recursive: true });
  const config = join(o.workDir, `${o.fqrn}.conf`);
  await writeFile(config, stockConfig(o));
  // As mount.cvmfs: allow_other, fsname=cvmfs2, system_mount; no uid/gid (we run as root, no cvmfs user).
  const opts = [`config=${config}`, 'fsname=cvmfs2', 'allow_other', 'system_mount'];
  const r = await run(join(stock.prefix, 'usr/bin/cvmfs2'), ['-o', opts.join(','), o.fqrn, o.mountpoint], stock.env);
  if (r.code !== 0) throw new Error(`stock cvmfs2 mount of ${o.fqrn} failed (${r.code}): ${(r.stderr || r.stdout).trim().slice(-800)}`);
  const pids = pidsMentioning(config);
  return {
    mountpoint: o.mountpoint,
    pids,
    async unmount() {
      const u = await run('umount', [o.mountpoint], stock.env);
      if (u.code !== 0) throw new Error(`umount ${o.mountpoint} (stock cvmfs2) failed: ${u.stderr.trim()}`);
      await waitGone(pids, 'stock cvmfs2 processes');
    },
  };
}

/** default.conf's 131072, or the hard open-files limit when that is lower: cvmfs2 refuses to mount when it cannot raise to CVMFS_NFILES. */
function openFilesLimit(): number {
  const hard = Number(execSync('ulimit -Hn', { shell: '/bin/sh', encoding: 'utf8' }).trim());
  return Number.isFinite(hard) && hard > 0 ? Math.min(131072, hard) : 131072;
}
