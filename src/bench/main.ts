// `npm run bench`: runs each area's benchmark (ours beside the peer its issue names, in one run) and
// prints the rows. Benchmarks are not tests; nothing here asserts on timings.
// Usage: node dist/bench/main.js [area...]   (areas: publish runtime mount sync start serve replicate publish-scale)
interface BenchModule { run(): Promise<string[]> }

const AREAS = ['publish', 'runtime', 'mount', 'sync', 'start', 'serve', 'replicate', 'publish-scale'];

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const areas = wanted.length > 0 ? wanted : AREAS;
  let failed = false;
  for (const area of areas) {
    if (!AREAS.includes(area)) throw new Error(`unknown bench area "${area}"; expected one of ${AREAS.join(', ')}`);
    process.stdout.write(`## ${area}\n`);
    try {
      const mod = (await import(`./${area}.js`)) as BenchModule;
      for (const row of await mod.run()) process.stdout.write(`${row}\n`);
    } catch (e) {
      failed = true;
      process.stdout.write(`(${area} benchmark failed: ${e instanceof Error ? e.message : String(e)})\n`);
    }
  }
  process.exitCode = failed ? 1 : 0;
}

void main();
