// Shared Prometheus plumbing on prom-client: a registry per program, its text exposition, and the one
// cluster detail every multi-process server needs (a worker asked for /metrics answers with the sum over all
// workers, which the primary collects). Defines no metrics itself; each area names its own.
import cluster from 'node:cluster';
import { AggregatorRegistry, Registry } from 'prom-client';

export { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The Content-Type of the text exposition format prom-client writes. */
export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;
/** How long a worker waits for the primary's aggregated answer. */
export const CLUSTER_METRICS_TIMEOUT_MS = 5000;

const REQ = 'gridbox:metrics-req';
const RES = 'gridbox:metrics-res';

export function newRegistry(): Registry {
  return new Registry();
}

/** The Prometheus text for one process's registries. */
export async function metricsText(registries: Registry[]): Promise<string> {
  return Registry.merge(registries).metrics();
}

/**
 * In a cluster worker: makes `registries` the ones the primary aggregates. Call once per worker before
 * the primary may ask (prom-client answers the primary's requests itself).
 */
export function shareWithPrimary(registries: Registry[]): void {
  AggregatorRegistry.setRegistries(registries);
  new AggregatorRegistry(); // installs prom-client's worker-side listener
}

/** In the cluster primary: answers workers that ask for the whole cluster's metrics. */
export function answerWorkersWithClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, m: { type?: string; id?: number }) => {
    if (m?.type !== REQ) return;
    aggregator.clusterMetrics().then(
      (text) => { if (worker.isConnected()) worker.send({ type: RES, id: m.id, text }); },
      (e: unknown) => { if (worker.isConnected()) worker.send({ type: RES, id: m.id, error: e instanceof Error ? e.message : String(e) }); },
    );
  });
}

let nextId = 0;

/** In a worker: the metrics of all workers, summed by the primary; elsewhere: this process's own. */
export function processOrClusterMetrics(registries: Registry[]): Promise<string> {
  if (!cluster.isWorker || process.send === undefined) return metricsText(registries);
  const id = nextId++;
  return new Promise<string>((resolve, reject) => {
    const done = (m: { type?: string; id?: number; text?: string; error?: string }): void => {
      if (m?.type !== RES || m.id !== id) return;
      clearTimeout(timer);
      process.off('message', done);
      if (m.error !== undefined || m.text === undefined) reject(new Error(`the primary could not collect metrics: ${m.error ?? 'no text'}`));
      else resolve(m.text);
    };
    const timer = setTimeout(() => { process.off('message', done); reject(new Error('the primary did not answer a metrics request in time')); }, CLUSTER_METRICS_TIMEOUT_MS);
    process.on('message', done);
    process.send!({ type: REQ, id });
  });
}
