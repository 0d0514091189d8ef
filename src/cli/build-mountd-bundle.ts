// `node build-mountd-bundle.js [FALLBACK_DIR]`: builds the mount daemon's bundle (commands/mountd-bundle.ts)
// unless a fresh one exists. Run by scripts/deps.sh after tsc, and detached by a daemon that started without
// a fresh bundle (commands/mount.ts), so that bin/gridbox's next mount starts with no node front.
import { buildMountdBundle, freshMountdBundle } from './commands/mountd-bundle.js';

const fallbackDir = process.argv[2];
if (freshMountdBundle(fallbackDir) === undefined && (await buildMountdBundle(fallbackDir)) === undefined) {
  process.stderr.write('gridbox: no mount daemon bundle (esbuild missing or its smoke test failed): mounts start from main.js\n');
  process.exitCode = 1;
}
