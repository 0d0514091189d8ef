// READs of an openless mount's cached whole files answered by the addon (native/fuse-ioctl/fast_read.c): the
// session hands each raw READ request to `serve` before decoding it, and for a node the filesystem registered
// the addon reads the cache file and writes the reply to /dev/fuse itself. The bytes of a cached read then
// never enter JavaScript (no Buffer, no copy, no GC, no threadpool open). Without the addon every READ takes
// the filesystem's path, as before.
import { loadNativeAddon, type FastReadHandle } from '../plumbing/native-addon.js';

export interface FastReadPort {
  /** Answers a raw READ request (header and fuse_read_in) if its node is registered and its cache file usable. */
  serve(request: Uint8Array): boolean;
  /** READs of `nodeid` are answered from `path` (`size` bytes) from now on; a missing or resized file is left to the session. */
  set(nodeid: number, path: string, size: number): void;
  /** The kernel forgot `nodeid`; true when it was read since the last take. */
  drop(nodeid: number): boolean;
  /** Nodeids read since the last take (each once), and the counters of what was answered. */
  take(): { nodeids: number[]; reads: number; bytes: number };
}

/** Fast READs on the FUSE connection `devFd`, or undefined without the addon. */
export function createFastRead(devFd: number): FastReadPort | undefined {
  const io = loadNativeAddon();
  const { fastReadTable, fastReadServe, fastReadSet, fastReadDrop, fastReadTake } = io ?? {};
  if (fastReadTable === undefined || fastReadServe === undefined || fastReadSet === undefined || fastReadDrop === undefined || fastReadTake === undefined) return undefined;
  const table: FastReadHandle = fastReadTable();
  return {
    serve: (request) => fastReadServe(table, devFd, request),
    set: (nodeid, path, size) => fastReadSet(table, nodeid, path, size),
    drop: (nodeid) => fastReadDrop(table, nodeid),
    take() {
      const t = fastReadTake(table);
      return { reads: t[0] ?? 0, bytes: t[1] ?? 0, nodeids: t.slice(2) };
    },
  };
}
