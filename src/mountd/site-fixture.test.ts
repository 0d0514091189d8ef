// Fixture of the site tests (no tests here): two repositories published into one root, served on
// 127.0.0.1, and a CernVM-FS config dir (GRIDBOX_CVMFS_CONFIG_DIR) naming both in CVMFS_REPOSITORIES.
import assert from 'node:assert/strict';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '../testing/tmp.js';
import { FQRN, cliEnv, gridbox, startOrigin, type Origin } from '../vfs/mount-fixture.test.js';

export const OTHER = 'other.test.org';

export interface SiteSetup { tmp: string; env: NodeJS.ProcessEnv; origin: Origin; etc: string; close(): Promise<void> }

/** Two repositories in one root, served on 127.0.0.1, and a CernVM-FS config dir naming both. */
export async function siteSetup(prefix: string): Promise<SiteSetup> {
  const tmp = await makeTempDir(prefix);
  await chmod(tmp, 0o755);
  const env = cliEnv(tmp);
  const root = join(tmp, 'repo');
  for (const [fqrn, files] of [[FQRN, { 'a.txt': 'hello from the repository\n', 'sub/b.txt': 'below\n' }], [OTHER, { 'x.txt': 'the other one\n' }]] as const) {
    const src = join(tmp, `src-${fqrn}`);
    for (const [name, body] of Object.entries(files)) {
      await mkdir(join(src, name, '..'), { recursive: true });
      await writeFile(join(src, name), body);
    }
    const mk = await gridbox(['mkfs', fqrn, '--root', root], env);
    assert.equal(mk.code, 0, mk.stderr);
    const p = await gridbox(['publish', fqrn, src, '--root', root], env);
    assert.equal(p.code, 0, p.stderr);
  }
  await chmod(root, 0o755);
  await chmod(join(root, 'keys'), 0o755);
  for (const fqrn of [FQRN, OTHER]) await chmod(join(root, 'keys', `${fqrn}.pub`), 0o644);
  const origin = await startOrigin(join(root, 'srv'));
  const etc = env.GRIDBOX_CVMFS_CONFIG_DIR!;
  await mkdir(join(etc, 'config.d'), { recursive: true });
  const base = origin.url.replace(/\/[^/]+$/, '');
  await writeFile(join(etc, 'default.local'), [
    `CVMFS_REPOSITORIES=${FQRN},${OTHER}`, `CVMFS_SERVER_URL="${base}/@fqrn@"`, 'CVMFS_HTTP_PROXY=DIRECT',
    `CVMFS_KEYS_DIR=${join(root, 'keys')}`, `CVMFS_CACHE_BASE=${join(tmp, 'cache')}`, 'CVMFS_QUOTA_LIMIT=200', '',
  ].join('\n'));
  await writeFile(join(etc, 'config.d', `${OTHER}.local`), 'CVMFS_TIMEOUT=7\n');
  return { tmp, env, origin, etc, close: async () => { await origin.close(); await rm(tmp, { recursive: true, force: true }); } };
}

