// Locating the package and its CernVM-FS fixtures (test/fixtures/cvmfs) from compiled tests, whatever the
// outDir. Nothing here looks outside the package: a fresh clone must test green on its own.
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

/** test/fixtures/cvmfs: the cvmfs_server repository, its keys and the chunker vectors. */
export function fixturesDir(): string {
  const dir = join(packageRoot(), 'test', 'fixtures', 'cvmfs');
  if (!isDir(dir)) throw new Error(`cannot find the CernVM-FS fixtures at ${dir}`);
  return dir;
}
