// The mount(8) options of a repository mount, apart from mount-repository.ts so that a caller can start
// mount(8) before it loads the filesystem view (the daemon mounts while its modules are still loading).
import type { MountOptions } from '../fuse/mount.js';

/** The mount options of a repository mount, for callers that mount early (MountRepositoryOptions.fuse). */
export function repositoryMountOptions(fqrn: string): MountOptions {
  return { fsname: fqrn, subtype: 'gridbox', allowOther: true, readOnly: true };
}
