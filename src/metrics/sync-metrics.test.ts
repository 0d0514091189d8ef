import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { withTempDir } from '../testing/tmp.js';
import { newRegistry } from './registry.js';
import { createSyncMetrics } from './sync-metrics.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const run = promisify(execFile);

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('sync metrics count images by outcome, layers, bytes, failures and cycles, in total and for the last cycle', async () => {
  const registry = newRegistry();
  const m = createSyncMetrics(registry);
  m.image('new'); m.image('new'); m.image('failed');
  m.layer(1000); m.layer(24);
  m.failure('registry');
  m.cycle(true, new Date(1_700_000_000_000));
  const text = await registry.metrics();
  assert.equal(sample(text, 'gridbox_sync_images_total{status="new"}'), 2);
  assert.equal(sample(text, 'gridbox_sync_images_total{status="failed"}'), 1);
  assert.equal(sample(text, 'gridbox_sync_layers_total'), 2);
  assert.equal(sample(text, 'gridbox_sync_layer_bytes_total'), 1024);
  assert.equal(sample(text, 'gridbox_sync_failures_total{stage="registry"}'), 1);
  assert.equal(sample(text, 'gridbox_sync_cycles_total{result="failed"}'), 1);
  assert.equal(sample(text, 'gridbox_sync_last_cycle_timestamp_seconds'), 1_700_000_000);
  assert.equal(sample(text, 'gridbox_sync_last_cycle_images{status="new"}'), 2);
  assert.equal(sample(text, 'gridbox_sync_last_cycle_layer_bytes'), 1024);
  // A second cycle: the totals grow, the last-cycle gauges describe it alone.
  m.image('unchanged');
  m.cycle(false, new Date(1_700_000_100_000));
  const again = await registry.metrics();
  assert.equal(sample(again, 'gridbox_sync_images_total{status="new"}'), 2);
  assert.equal(sample(again, 'gridbox_sync_last_cycle_images{status="new"}'), undefined);
  assert.equal(sample(again, 'gridbox_sync_last_cycle_images{status="unchanged"}'), 1);
  assert.equal(sample(again, 'gridbox_sync_last_cycle_layers'), 0);
  assert.equal(sample(again, 'gridbox_sync_last_cycle_failures'), 0);
});

test('gridbox sync --metrics-file writes the cycle\'s counters, a failed image included', { timeout: 60_000 }, () => withTempDir(async (dir) => {
  const root = join(dir, 'root');
  await run(process.execPath, [MAIN, 'mkfs', 'm.example.org', '--root', root]);
  // A registry that knows no image: the image fails, the cycle fails, both are counted.
  const registry = createServer((req, res) => { res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}'); });
  await new Promise<void>((r) => registry.listen(0, '127.0.0.1', r));
  const list = join(dir, 'list.txt');
  await writeFile(list, `127.0.0.1:${(registry.address() as AddressInfo).port}/org/none:v1\n`);
  const out = join(dir, 'sync.prom');
  let r: number | undefined;
  try {
    r = await run(process.execPath, [MAIN, 'sync', list, '--repo', 'm.example.org', '--root', root, '--metrics-file', out]).then(() => 0, (e: { code?: number }) => e.code);
  } finally { registry.close(); registry.closeAllConnections(); }
  assert.equal(r, 1);
  const text = await readFile(out, 'utf8');
  assert.equal(sample(text, 'gridbox_sync_images_total{status="failed"}'), 1);
  assert.equal(sample(text, 'gridbox_sync_failures_total{stage="image"}'), 1);
  assert.equal(sample(text, 'gridbox_sync_cycles_total{result="failed"}'), 1);
}));
