// The composition root of the `apptainer`/`singularity` shims: the runtime CLI alone, no command table.
// install-shims bundles this file and what it imports into one CommonJS file with esbuild (install-shims-bundle.ts),
// because Node 20's ES module loader alone costs a fifth of a bare `node` start; main.ts reaches the same
// runtime through its command table when the bundle is missing or stale.
import { run } from './commands/apptainer.js';

run(process.argv.slice(2)).then(
  // Exit at once: stdout/stderr writes to files, pipes and ttys are synchronous on Linux, and tearing the
  // environment down costs more than the probes that call us several times per job should pay.
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`FATAL:   ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(255);
  },
);
