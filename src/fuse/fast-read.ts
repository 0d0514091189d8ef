// The openless mount's READ thread (native/fuse-ioctl/fast_read.c): it reads /dev/fuse itself, answers READs of
// nodes the filesystem registered (whole files whose verified content is in the client cache) from their cache
// files, and forwards every other request to the session (SessionOptions.requestFd). A cached read then costs
// the daemon's JavaScript thread nothing: no request, no copy, no GC; the kernel's READ round trip is a pread
// and a write on the addon's thread. Without the addon the session reads the device as before.
import { loadNativeAddon, type FastReadHandle } from '../plumbing/native-addon.js';

export interface FastReadPort {
  /** Where the session reads its requests from. */
  readonly requestFd: number;
  /** READs of `nodeid` are answered from `path` (`size` bytes) from now on; a missing or resized file falls back to the session. */
  set(nodeid: number, path: string, size: number): void;
  /** The kernel forgot `nodeid`; true when it was read since the last take. */
  drop(nodeid: number): boolean;
  /** Nodeids read since the last take (each once), and the thread's counters. */
  take(): { nodeids: number[]; reads: number; bytes: number; forwarded: number };
}

/** A READ thread on the FUSE connection `devFd`, or undefined without the addon (or when it cannot start one). */
export function startFastRead(devFd: number, log?: (line: string) => void): FastReadPort | undefined {
  const io = loadNativeAddon();
  if (io?.fastReadStart === undefined || io.fastReadSet === undefined || io.fastReadDrop === undefined || io.fastReadTake === undefined) return undefined;
  const [fd, handle] = io.fastReadStart(devFd);
  if (fd < 0 || handle === undefined) {
    log?.(`cached reads go through the session: the READ thread did not start (errno ${-fd})`);
    return undefined;
  }
  const h: FastReadHandle = handle;
  const { fastReadSet, fastReadDrop, fastReadTake } = io;
  return {
    requestFd: fd,
    set: (nodeid, path, size) => fastReadSet(h, nodeid, path, size),
    drop: (nodeid) => fastReadDrop(h, nodeid),
    take() {
      const t = fastReadTake(h);
      return { reads: t[0] ?? 0, bytes: t[1] ?? 0, forwarded: t[2] ?? 0, nodeids: t.slice(3) };
    },
  };
}
