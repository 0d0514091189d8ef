// `gridbox install-shims DIR`: writes DIR/apptainer and DIR/singularity, tiny /bin/sh scripts that exec this
// node (absolute path, so they work under `env -i` or PATH=/usr/bin:/bin) on the runtime bundle (one CommonJS
// file, install-shims-bundle.ts; the compiled CLI when it cannot be made) with GRIDBOX_ARGV0 set. Before a bundle,
// they move aside the variables node would act on at its own start (shim-env.ts); the bundle puts them back.
import { mkdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomicSync } from '../../plumbing/atomic-write.js';
import { shimEnvLines } from '../shim-env.js';
import { imageHintLines } from '../shim-image-hint.js';
import { BUNDLE_NAME } from './install-shims-bundle.js';

const shQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** The shim text for one program name; `mainJs` is the runtime bundle or the CLI's main.js. Exported for tests. */
export function shimText(name: string, nodePath: string, mainJs: string): string {
  // Only a runtime bundle restores what the shim moves aside; main.js would leave the container without it.
  const moveNodeVars = basename(mainJs).endsWith(BUNDLE_NAME) ? `${shimEnvLines()}\n` : '';
  return `#!/bin/sh
# Written by \`gridbox install-shims\`: the gridbox runtime CLI under the name ${name}.
${imageHintLines()}
GRIDBOX_ARGV0=${name}
export GRIDBOX_ARGV0
${moveNodeVars}exec ${shQuote(nodePath)} ${shQuote(mainJs)} "$@"
`;
}

/** What a shim runs: the runtime bundle when it can be made (dist/cli, else `shimDir`), else main.js. */
export async function runtimeScript(shimDir: string): Promise<string> {
  if (process.env.GRIDBOX_SHIM_BUNDLE === '0') return fileURLToPath(new URL('../main.js', import.meta.url));
  const { ensureRuntimeBundle } = await import('./install-shims-bundle.js');
  return (await ensureRuntimeBundle(shimDir)) ?? fileURLToPath(new URL('../main.js', import.meta.url));
}

export async function run(argv: string[]): Promise<number> {
  const [dir, ...extra] = argv;
  if (dir === undefined || extra.length > 0 || dir.startsWith('-')) {
    process.stderr.write('usage: gridbox install-shims DIR\n');
    return 2;
  }
  const target = resolve(dir);
  mkdirSync(target, { recursive: true });
  const mainJs = await runtimeScript(target);
  for (const name of ['apptainer', 'singularity']) {
    const file = join(target, name);
    writeFileAtomicSync(file, shimText(name, process.execPath, mainJs), { mode: 0o755 });
  }
  return 0;
}
