// `gridbox install-shims DIR`: writes DIR/apptainer and DIR/singularity, tiny /bin/sh scripts that exec this
// node (absolute path, so they work under `env -i` or PATH=/usr/bin:/bin) on the compiled CLI with GRIDBOX_ARGV0 set.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomicSync } from '../../plumbing/atomic-write.js';

const shQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** The shim text for one program name; exported for tests. */
export function shimText(name: string, nodePath: string, mainJs: string): string {
  return `#!/bin/sh
# Written by \`gridbox install-shims\`: the gridbox runtime CLI under the name ${name}.
GRIDBOX_ARGV0=${name}
export GRIDBOX_ARGV0
exec ${shQuote(nodePath)} ${shQuote(mainJs)} "$@"
`;
}

export async function run(argv: string[]): Promise<number> {
  const [dir, ...extra] = argv;
  if (dir === undefined || extra.length > 0 || dir.startsWith('-')) {
    process.stderr.write('usage: gridbox install-shims DIR\n');
    return 2;
  }
  const target = resolve(dir);
  const mainJs = fileURLToPath(new URL('../main.js', import.meta.url));
  mkdirSync(target, { recursive: true });
  for (const name of ['apptainer', 'singularity']) {
    const file = join(target, name);
    writeFileAtomicSync(file, shimText(name, process.execPath, mainJs), { mode: 0o755 });
  }
  return 0;
}
