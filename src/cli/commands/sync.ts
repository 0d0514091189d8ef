// `gridbox sync <list> --repo FQRN --root DIR`: keeps a repository's unpacked images in step with an
// image list (OSG docker_images.txt or DUCC wish-list YAML), once or every --loop seconds. Argument
// parsing, the registry client's wiring, progress bars on a terminal and the exit status; the cycle is
// sync/reconcile.ts.
import { readFile } from 'node:fs/promises';
import cliProgress from 'cli-progress';
import { describeError, GridboxError, q } from '../../errors.js';
import { parsePlatform } from '../../oci/image.js';
import { DOCKER_HUB } from '../../oci/reference.js';
import { parseDockerConfig, RegistryClient, type RegistryClientOptions } from '../../oci/registry-client.js';
import { readSettings, repoLayout } from '../../publish/repo-layout.js';
import { parseImageList } from '../../sync/image-list.js';
import { IMAGE_CATALOG_MAX } from '../../sync/layout.js';
import { syncCycle, type CycleReport, type SyncEvent } from '../../sync/reconcile.js';
import { newRegistry, type Registry } from '../../metrics/registry.js';
import { createSyncMetrics } from '../../metrics/sync-metrics.js';
import { writeFileAtomic } from '../../plumbing/atomic-write.js';
import { intArg, newCommand, parseCommand } from '../options.js';

export const summary = 'publish container images from registries, kept in step with an image list';

interface SyncFlags {
  repo: string; root: string; dryRun?: boolean; loop?: number; platform?: string; lenient?: boolean; strict?: boolean; auth?: string;
  mirror: string[]; notify?: string; metricsFile?: string; graceDays?: number; devices?: 'skip' | 'empty-file' | 'keep' | 'refuse';
  permissions?: 'propagate' | 'keep'; json?: boolean; imageCatalogMax?: number;
}

export async function run(argv: string[]): Promise<number> {
  let status = 0;
  const cmd = newCommand('gridbox sync', summary)
    .argument('<list>', 'docker_images.txt (OSG) or wish-list YAML (DUCC)')
    .requiredOption('--repo <fqrn>', 'repository to publish into')
    .requiredOption('--root <dir>', 'repository root directory (as for mkfs/publish)')
    .option('--dry-run', 'only HEAD the manifests and report what would change')
    .option('--loop <seconds>', 're-read the list and sync again every SECONDS', intArg('--loop'))
    .option('--platform <os/arch>', 'platform chosen from multi-arch images (default: this host\'s)')
    .option('--lenient', 'publish images whose layers have hostile entries (path traversal, symlink or hard-link escapes, ...) with those entries skipped and warned about; by default such an image fails')
    .option('--strict', 'accepted for old scripts: refusing hostile layers is the default now')
    .option('--auth <file>', 'docker config.json-style credentials ({"auths": {host: {auth}}})')
    .option('--mirror <url>', 'pull-through mirror for Docker Hub, or HOST=URL for another registry (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--notify <file>', 'append JSON-lines notifications to FILE')
    .option('--grace-days <days>', 'keep trees of dropped images this many days (default 2)', intArg('--grace-days'))
    .option('--devices <policy>', 'device nodes in layers: skip (default), empty-file, keep or refuse (the image fails)')
    .option('--permissions <policy>', 'propagate (default: job users can read what the owner could) or keep')
    .option('--image-catalog-max <entries>', `split an image's catalog above this many entries (default ${IMAGE_CATALOG_MAX}; 0: one catalog per image)`, intArg('--image-catalog-max'))
    .option('--json', 'print the cycle report as JSON')
    .option('--metrics-file <path>', 'after each cycle, write Prometheus counters there (node_exporter textfile format)')
    .action(async (listFile: string, o: SyncFlags) => {
      if (o.lenient && o.strict) throw new GridboxError('USAGE', '--lenient and --strict contradict each other');
      if (o.devices !== undefined && !['skip', 'empty-file', 'keep', 'refuse'].includes(o.devices)) {
        throw new GridboxError('USAGE', `--devices ${q(o.devices)} is not one of skip, empty-file, keep, refuse`);
      }
      const layout = repoLayout(o.root, o.repo);
      const settings = await readSettings(layout);
      const clientOpts: RegistryClientOptions = {};
      if (o.auth) clientOpts.credentials = parseDockerConfig(await readFile(o.auth, 'utf8'));
      if (o.platform) clientOpts.platform = parsePlatform(o.platform);
      if (o.mirror.length > 0) {
        clientOpts.mirrors = {};
        for (const m of o.mirror) {
          const eq = m.indexOf('=');
          if (eq > 0 && !m.slice(0, eq).includes('/')) clientOpts.mirrors[m.slice(0, eq)] = m.slice(eq + 1);
          else clientOpts.mirrors[DOCKER_HUB] = m;
        }
      }
      const client = new RegistryClient(clientOpts);
      const metrics = o.metricsFile === undefined ? undefined : syncMetricsWiring();
      for (;;) {
        const list = parseImageList(await readFile(listFile, 'utf8'));
        const progress = process.stderr.isTTY && !o.json ? new Progress() : undefined;
        let report: CycleReport;
        try {
          report = await syncCycle(list, {
            layout, settings, client, platform: clientOpts.platform, dryRun: o.dryRun, lenient: o.lenient,
            devices: o.devices, permissions: o.permissions, notifyFile: o.notify, imageCatalogMax: o.imageCatalogMax,
            graceMs: o.graceDays !== undefined ? o.graceDays * 86_400_000 : undefined,
            onEvent: progress || metrics ? (e) => { progress?.on(e); metrics?.on(e); } : undefined,
          });
        } finally {
          progress?.stop();
          if (metrics !== undefined) await writeFileAtomic(o.metricsFile!, await metrics.registry.metrics());
        }
        printReport(report, !!o.json);
        status = report.failed ? 1 : 0;
        if (o.loop === undefined) break;
        await new Promise((r) => setTimeout(r, o.loop! * 1000));
      }
    });
  await parseCommand(cmd, argv);
  return status;
}

/** Sync events counted as Prometheus metrics (metrics/sync-metrics.ts). */
function syncMetricsWiring(): { registry: Registry; on(e: SyncEvent): void } {
  const registry = newRegistry();
  const m = createSyncMetrics(registry);
  return {
    registry,
    on(e) {
      if (e.action === 'image' && e.step === 'done' && e.status !== undefined) { m.image(e.status); if (e.status === 'failed') m.failure('image'); }
      else if (e.action === 'layer') m.layer(e.bytes);
      else if (e.action === 'publish' && e.error !== undefined) m.failure('publish');
      else if (e.action === 'end_cycle') m.cycle(e.failed);
    },
  };
}

function printReport(r: CycleReport, json: boolean): void {
  if (json) {
    // stdout stays one JSON document; skipped entries (--lenient) are still told to the operator.
    process.stdout.write(JSON.stringify(r) + '\n');
    for (const o of r.outcomes) for (const w of o.warnings ?? []) process.stderr.write(`gridbox sync: warning: ${o.name}: ${w}\n`);
    return;
  }
  for (const e of r.listErrors) process.stderr.write(`gridbox sync: list: ${e}\n`);
  for (const o of r.outcomes) {
    if (o.status === 'failed') { process.stderr.write(`gridbox sync: FAILED ${o.name}: ${o.error}\n`); continue; }
    process.stdout.write(`${o.status.padEnd(9)} ${o.name}${o.tree ? ` -> ${o.tree}` : ''}${o.warnings ? ` (${o.warnings.length} warnings)` : ''}\n`);
    for (const w of o.warnings ?? []) process.stderr.write(`gridbox sync: warning: ${o.name}: ${w}\n`);
  }
  for (const t of r.treesRemoved) process.stdout.write(`expired   ${t}\n`);
  if (r.published) process.stdout.write(`published revision ${r.published.revision}: ${r.published.files} files, ${r.published.objectsWritten} new objects\n`);
  else if (!r.dryRun) process.stdout.write('nothing to publish\n');
  const failed = r.outcomes.filter((o) => o.status === 'failed').length + r.listErrors.length;
  if (failed > 0) process.stderr.write(`gridbox sync: ${failed} of ${r.outcomes.length + r.listErrors.length} entries failed: ${describeError(r.outcomes.find((o) => o.status === 'failed')?.error ?? r.listErrors[0])}\n`);
}

/** Two bars for a person at a terminal: images examined, and the publish. */
class Progress {
  private readonly multi = new cliProgress.MultiBar({ format: '{bar} {value}/{total} {label}', hideCursor: true, clearOnComplete: false, stream: process.stderr }, cliProgress.Presets.shades_classic);
  private images?: cliProgress.SingleBar;

  on(e: SyncEvent): void {
    if (e.action === 'start_cycle') this.images = this.multi.create(e.images, 0, { label: 'images' });
    else if (e.action === 'image' && e.step !== 'done') this.images?.update({ label: `${e.step} ${e.name}` });
    else if (e.action === 'image') this.images?.increment({ label: `${e.status} ${e.name}` });
    else if (e.action === 'publish' && !e.report && !e.error) this.multi.create(1, 0, { label: `publishing ${e.changes} changes` });
  }

  stop(): void {
    this.multi.stop();
  }
}
