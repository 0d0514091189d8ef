// FUSE passthrough (Linux >= 6.9, Documentation/filesystems/fuse-passthrough.rst): an open file registered
// with the connection as a "backing file" (FUSE_DEV_IOC_BACKING_OPEN on /dev/fuse) can be named in an OPEN
// reply, and the kernel then serves reads and mmap from it without asking us. Node has no ioctl, so the two
// calls come from the tiny gridbox-fuse-ioctl addon; without it, or without CAP_SYS_ADMIN in the initial user
// namespace (the kernel's rule), the port reports itself disabled and reads take the normal path.
import { errnoName, loadNativeAddon, type NativeAddon } from '../plumbing/native-addon.js';

export interface PassthroughPort {
  /** False once the kernel refused (no privilege, not negotiated): callers stop trying. */
  readonly enabled: boolean;
  /**
   * Registers `fd` (an open regular file) as a backing file and returns its backing_id for an OPEN reply,
   * or undefined when refused. The kernel holds its own reference: `fd` may be closed afterwards.
   */
  open(fd: number): number | undefined;
  /** Drops a registration; files opened with it keep working until closed. */
  close(backingId: number): void;
  /** Turns the port off (e.g. INIT did not grant FUSE_PASSTHROUGH). */
  disable(reason: string): void;
  /** Registrations made and refusals seen, for status. */
  stats(): { opened: number; closed: number; refused: number; lastError?: string };
}

/** The addon, or undefined when it is not built (e.g. node-gyp could not run): passthrough is then off. */
export function loadIoctlAddon(): NativeAddon | undefined {
  return loadNativeAddon();
}

/** Errors that say "never on this connection": no privilege, not negotiated, no such ioctl. */
const PERMANENT = new Set(['EPERM', 'EOPNOTSUPP', 'ENOTTY', 'EINVAL', 'ENOSYS']);

/** A passthrough port for the FUSE connection `fuseFd`, or undefined when the addon is missing. */
export function createPassthrough(fuseFd: number, log?: (line: string) => void): PassthroughPort | undefined {
  const io = loadIoctlAddon();
  if (io === undefined) return undefined;
  let enabled = true;
  let opened = 0, closed = 0, refused = 0;
  let lastError: string | undefined;
  return {
    get enabled() { return enabled; },
    open(fd) {
      if (!enabled) return undefined;
      const id = io.backingOpen(fuseFd, fd);
      if (id > 0) { opened++; return id; }
      refused++;
      const name = errnoName(-id) ?? String(-id);
      lastError = name;
      if (PERMANENT.has(name)) {
        enabled = false;
        log?.(`FUSE passthrough off: the kernel refused a backing file (${name}); reads are served by this process`);
      }
      return undefined;
    },
    close(backingId) {
      if (io.backingClose(fuseFd, backingId) === 0) closed++;
    },
    disable(reason) {
      if (enabled) log?.(`FUSE passthrough off: ${reason}`);
      enabled = false;
    },
    stats: () => ({ opened, closed, refused, lastError }),
  };
}
