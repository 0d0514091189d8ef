// The counters image sync reports to Prometheus, behind a four-method interface the sync code calls where
// things happen (the reconcile loop for images and cycles, the registry client for layers and bytes). A
// one-shot `gridbox sync` writes them as a node_exporter textfile at the end of each cycle (--metrics-file).
import { Counter, Gauge, type Registry } from 'prom-client';

export interface SyncMetrics {
  /** One image handled in a cycle, by outcome ("new", "changed", "unchanged", "failed", ...). */
  image(status: string): void;
  /** One layer blob downloaded from a registry, with its compressed size. */
  layer(bytes: number): void;
  /** A failure at one stage ("list", "registry", "flatten", "publish", ...). */
  failure(stage: string): void;
  /** A cycle ended; `failed` when anything in it failed. */
  cycle(failed: boolean, at?: Date): void;
}

export function createSyncMetrics(registry: Registry): SyncMetrics {
  const images = new Counter({ name: 'gridbox_sync_images_total', help: 'Images handled by sync cycles, by outcome', labelNames: ['status'] as const, registers: [registry] });
  const layers = new Counter({ name: 'gridbox_sync_layers_total', help: 'Layer blobs downloaded from registries', registers: [registry] });
  const bytes = new Counter({ name: 'gridbox_sync_layer_bytes_total', help: 'Compressed layer bytes downloaded from registries', registers: [registry] });
  const failures = new Counter({ name: 'gridbox_sync_failures_total', help: 'Sync failures, by stage', labelNames: ['stage'] as const, registers: [registry] });
  const cycles = new Counter({ name: 'gridbox_sync_cycles_total', help: 'Sync cycles ended, by result', labelNames: ['result'] as const, registers: [registry] });
  const last = new Gauge({ name: 'gridbox_sync_last_cycle_timestamp_seconds', help: 'When the last sync cycle ended (Unix time)', registers: [registry] });
  // The same counts for the last cycle alone (a --loop run's totals grow; these say what one cycle did).
  const lastImages = new Gauge({ name: 'gridbox_sync_last_cycle_images', help: 'Images handled by the last cycle, by outcome', labelNames: ['status'] as const, registers: [registry] });
  const lastLayers = new Gauge({ name: 'gridbox_sync_last_cycle_layers', help: 'Layer blobs the last cycle downloaded', registers: [registry] });
  const lastBytes = new Gauge({ name: 'gridbox_sync_last_cycle_layer_bytes', help: 'Compressed layer bytes the last cycle downloaded', registers: [registry] });
  const lastFailures = new Gauge({ name: 'gridbox_sync_last_cycle_failures', help: 'Failures in the last cycle', registers: [registry] });
  let cur = { images: new Map<string, number>(), layers: 0, bytes: 0, failures: 0 };
  return {
    image: (status) => { images.inc({ status }); cur.images.set(status, (cur.images.get(status) ?? 0) + 1); },
    layer: (n) => { layers.inc(); bytes.inc(n); cur.layers++; cur.bytes += n; },
    failure: (stage) => { failures.inc({ stage }); cur.failures++; },
    cycle: (failed, at = new Date()) => {
      cycles.inc({ result: failed ? 'failed' : 'ok' });
      last.set(at.getTime() / 1000);
      lastImages.reset();
      for (const [status, n] of cur.images) lastImages.set({ status }, n);
      lastLayers.set(cur.layers);
      lastBytes.set(cur.bytes);
      lastFailures.set(cur.failures);
      cur = { images: new Map(), layers: 0, bytes: 0, failures: 0 };
    },
  };
}
