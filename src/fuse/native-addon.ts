// The gridbox-fuse-ioctl addon (native/fuse-ioctl): the system calls Node cannot make, loaded once. Optional:
// npm ci builds it with node-gyp; without it passthrough is off and FUSE mounts go through mount(8). An
// addon built before a function was added lacks that function, so each one is checked where it is used.
import { createRequire } from 'node:module';

export interface NativeAddon {
  backingOpen(fuseFd: number, fd: number): number;
  backingClose(fuseFd: number, backingId: number): number;
  /** mount(2): 0, or -errno. */
  mount?(source: string, target: string, fstype: string, flags: number, data: string): number;
}

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
