// The gridbox-fuse-ioctl addon (native/fuse-ioctl): the system calls Node cannot make, loaded once. Optional:
// npm ci builds it with node-gyp; without it passthrough is off, FUSE mounts go through mount(8) and the
// runtime starts bwrap with child_process. An addon built before a function was added lacks that function, so
// each one is checked where it is used. In plumbing/ because fuse/ and launcher/ both use it.
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';

export interface NativeAddon {
  backingOpen(fuseFd: number, fd: number): number;
  backingClose(fuseFd: number, backingId: number): number;
  /** mount(2): 0, or -errno. */
  mount?(source: string, target: string, fstype: string, flags: number, data: string): number;
  /**
   * A posix_spawn(3)-like start (clone with CLONE_VM|CLONE_VFORK, then exec): stdio inherited, fd `firstFd` the
   * write end of a status pipe, the next `dataPipes` fds the read ends of data pipes, every signal at its default.
   * [pid, statusReadFd, ...dataWriteFds, ...dataPipeCapacities], or [-errno].
   */
  spawnPiped?(path: string, argv: string[], env: string[], firstFd: number, dataPipes: number): number[];
  /** waitpid(2), blocking: [exitCode, signal], or [-errno, 0]. */
  waitPid?(pid: number): [number, number];
  /** getxattr(2): the value (up to 4 KiB), or -errno. */
  getxattr?(path: string, name: string): string | number;
  /**
   * On the threadpool: posix_fadvise(WILLNEED) of the first `maxBytes` of each file (the kernel reads them into
   * the page cache in the background); `done` gets the files found and the bytes asked for.
   */
  willNeed?(paths: string[], maxBytes: number, done: (files: number, bytes: number) => void): void;
  /** _exit(2): ends the process without Node's teardown or the C library's exit handlers. Never returns. */
  exitNow?(code: number): never;
  /** A table of nodes whose READs fastReadServe answers from cache files (fast_read.c). */
  fastReadTable?(): FastReadHandle;
  /** READs of `nodeid` are answered from the cache file at `path`, of `size` bytes. */
  fastReadSet?(table: FastReadHandle, nodeid: number, path: string, size: number): void;
  /** Forgets `nodeid`; true when it was read since the last take. */
  fastReadDrop?(table: FastReadHandle, nodeid: number): boolean;
  /** [reads answered, bytes, ...nodeids read since the last take]. */
  fastReadTake?(table: FastReadHandle): number[];
  /** Answers a raw READ request of a registered node on `devFd` from its cache file; false leaves it to the caller. */
  fastReadServe?(table: FastReadHandle, devFd: number, request: Uint8Array): boolean;
}

/** The fast READ table, owned by the addon. */
export type FastReadHandle = { readonly __fastRead: unique symbol };

let addon: NativeAddon | null | undefined;

/** The addon, or undefined when it is not built. */
export function loadNativeAddon(): NativeAddon | undefined {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)('gridbox-fuse-ioctl') as NativeAddon;
    } catch {
      addon = null;
    }
  }
  return addon ?? undefined;
}

const ERRNO_NAME = new Map(Object.entries(osConstants.errno).map(([k, v]) => [v as number, k]));

/** The name of an errno the addon returned negated (2 -> "ENOENT"), undefined for one this system does not name. */
export function errnoName(errno: number): string | undefined {
  return ERRNO_NAME.get(errno);
}
