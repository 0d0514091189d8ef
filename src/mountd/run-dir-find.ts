// The two run-directory lookups the runtime's start accounting needs (src/cli/commands/report-meter.ts), apart
// from run-dir.ts so that a container start loads neither node:fs/promises nor node:crypto for them: where the run
// directory is, and a mount's record found by reading the directory's records rather than by its hashed name.
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { MountRecord } from './run-dir.js';

/** Where mount records, control sockets and daemon logs live: GRIDBOX_RUN_DIR, else $XDG_RUNTIME_DIR/gridbox, else /tmp/gridbox-<uid>. */
export function runDir(env: NodeJS.ProcessEnv): string {
  if (env.GRIDBOX_RUN_DIR) return resolve(env.GRIDBOX_RUN_DIR);
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'gridbox');
  return join(tmpdir(), `gridbox-${process.getuid?.() ?? 0}`);
}

/** The record of `mountpoint`, or undefined when there is none or the directory is unreadable. */
export function findMountRecord(dir: string, mountpoint: string): MountRecord | undefined {
  const want = resolve(mountpoint);
  let names: string[];
  try { names = readdirSync(dir); } catch { return undefined; }
  for (const n of names) {
    if (!n.endsWith('.json')) continue;
    try {
      const rec = JSON.parse(readFileSync(join(dir, n), 'utf8')) as MountRecord;
      if (typeof rec.mountpoint === 'string' && resolve(rec.mountpoint) === want) return rec;
    } catch { /* being replaced, or not a record */ }
  }
  return undefined;
}
