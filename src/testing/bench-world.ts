// A tool process for `npm run bench start` (src/bench/start.ts cannot import the test harness): ensures the
// corpus's Debian image (mmdebstrap, cached), starts a loopback docker-registry, pushes the image, prints one
// JSON line {registry, host, reference, sizeBytes, unpackedBytes, files}, and keeps the registry up until
// SIGTERM or its stdin closes. Usage: node dist/testing/bench-world.js STATE_DIR
import { ensureCorpusImage, pushCorpusImage, corpusUnavailable } from './corpus.js';
import { haveRegistry, startRegistry } from './registry.js';

async function main(dir: string): Promise<void> {
  const why = corpusUnavailable() ?? (haveRegistry() ? undefined : 'docker-registry is not installed');
  if (why) { process.stdout.write(`${JSON.stringify({ error: why })}\n`); return; }
  const image = await ensureCorpusImage('debian');
  const reg = await startRegistry(dir);
  const repoTag = 'corpus/debian:12';
  await pushCorpusImage(reg.url, 'debian', repoTag);
  process.stdout.write(`${JSON.stringify({ registry: reg.url, host: reg.host, reference: `${reg.host}/${repoTag}`, sizeBytes: image.sizeBytes, unpackedBytes: image.unpackedBytes, files: image.files })}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.stdin.once('end', resolve);
    process.stdin.resume();
  });
  await reg.stop();
}

main(process.argv[2] ?? '/tmp/gridbox-bench-world').catch((e: unknown) => {
  process.stdout.write(`${JSON.stringify({ error: e instanceof Error ? e.message : String(e) })}\n`);
  process.exitCode = 1;
});
