// Locating the package and the shared CernVM-FS fixtures from compiled tests, whatever the outDir:
// the repository sits beside shared/ (…/main and …/shared), and CI lays shared/ beside its clone too.
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const isFile = (p: string): boolean => { try { return statSync(p).isFile(); } catch { return false; } };
const isDir = (p: string): boolean => { try { return statSync(p).isDirectory(); } catch { return false; } };

/** The directory holding package.json, found by walking up from this module. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (isFile(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('cannot find the package root (package.json)');
}

/** shared/fixtures/cvmfs: the cvmfs_server repository, its keys and the chunker vectors. */
export function fixturesDir(): string {
  const root = packageRoot();
  for (const c of [join(root, '..', 'shared', 'fixtures', 'cvmfs'), join(root, 'shared', 'fixtures', 'cvmfs')]) {
    if (isDir(c)) return c;
  }
  throw new Error(`cannot find shared/fixtures/cvmfs near ${root}`);
}
