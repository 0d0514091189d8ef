// The mount daemon's bundle: mountd-main.js and every module it reaches in one CommonJS file, built by the
// runtime shims' esbuild path (install-shims-bundle.ts's bundleText and bundleIsFresh, same stale check: the bundle lists its
// sources with sizes and mtimes and runs main.js instead when any differs). Why: a mount costs two node starts,
// and under Node 20 the daemon's ES module loading alone was a third of the daemon's time to "ready".
import { statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomicSync } from '../../plumbing/atomic-write.js';
import { bundleIsFresh } from './install-shims-bundle.js';

export { bundleIsFresh };

const HERE = dirname(fileURLToPath(import.meta.url));
const ENTRY = join(HERE, '..', 'mountd-main.js');
const MAIN = join(HERE, '..', 'main.js');
export const MOUNTD_BUNDLE_NAME = 'mountd-bundle.cjs';

/** Where the bundle is looked for and written: beside the compiled CLI, else in `fallbackDir` (dist/ read-only). */
function candidates(fallbackDir?: string): string[] {
  return [join(HERE, '..', MOUNTD_BUNDLE_NAME), ...(fallbackDir ? [join(fallbackDir, `.gridbox-${MOUNTD_BUNDLE_NAME}`)] : [])];
}

/** An up-to-date daemon bundle, if one exists (no build: a stat call per source, ~150). */
export function freshMountdBundle(fallbackDir?: string): string | undefined {
  if (process.env.GRIDBOX_MOUNTD_BUNDLE === '0') return undefined;
  return candidates(fallbackDir).find(bundleIsFresh);
}

/**
 * The daemon bundle to start, fresh or not (one stat): a stale one runs main.js itself, so `gridbox mount`
 * starts the daemon at once and checks freshness (bundleIsFresh) while the daemon boots.
 */
export function existingMountdBundle(fallbackDir?: string): string | undefined {
  if (process.env.GRIDBOX_MOUNTD_BUNDLE === '0') return undefined;
  return candidates(fallbackDir).find((c) => { try { return statSync(c).isFile(); } catch { return false; } });
}

/**
 * Builds the daemon bundle (dist/cli, else `fallbackDir`) and smoke-tests it (`mount --help` answers like
 * main.js). Undefined when esbuild is missing, a module cannot be bundled, or the test fails: daemons then
 * start from main.js, as before the bundle existed.
 */
export async function buildMountdBundle(fallbackDir?: string): Promise<string | undefined> {
  if (process.env.GRIDBOX_MOUNTD_BUNDLE === '0') return undefined;
  let text: string;
  try {
    const { bundleText } = await import('./install-shims-bundle.js');
    text = (await bundleText(ENTRY, MAIN)).text;
  } catch { return undefined; }
  for (const c of candidates(fallbackDir)) {
    try { writeFileAtomicSync(c, text, { mode: 0o644 }); } catch { continue; }
    const r = spawnSync(process.execPath, [c, 'mount', '--help'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0 && r.stdout.includes('gridbox mount')) return c;
    return undefined;
  }
  return undefined;
}
