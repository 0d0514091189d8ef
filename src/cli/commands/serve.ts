// `gridbox serve --root DIR --listen HOST:PORT`: serves DIR/srv as /cvmfs/ over HTTP until SIGTERM or
// SIGINT. The first stdout line is the URL it listens on (port 0 picks a free port), printed once every
// worker listens. By default one worker process per core shares the port (node:cluster), as nginx runs a
// worker per core; the primary only forks, replaces crashed workers and stops them.
import cluster, { type Worker } from 'node:cluster';
import { existsSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { GridboxError, q } from '../../errors.js';
import { answerWorkersWithClusterMetrics, newRegistry, processOrClusterMetrics, shareWithPrimary } from '../../metrics/registry.js';
import { openAccountingDb } from '../../accounting/accounting-db.js';
import { createAccountingHandler } from '../../accounting/http-handler.js';
import { createDashboardRoute } from '../../dashboard/dashboard-route.js';
import { openAccessLog, type AccessLog } from '../../server/access-log.js';
import { createServerMetrics, isMetricsRequest, metricsRoute } from '../../server/server-metrics.js';
import { listenSrv as listenSrvHandler, type SrvHandlerOptions } from '../../server/srv-handler.js';
import { intArg, newCommand, parseCommand } from '../options.js';

export const summary = 'serve a repository root over HTTP';

/** How long stopping workers may take before they are killed. */
const STOP_GRACE_MS = 5000;

interface ServeFlags {
  root: string;
  listen: string;
  workers?: number;
  accessLog?: string;
  memoryCacheMb: number;
  metrics: boolean;
  fastPath: boolean;
  quiet?: boolean;
  accountingDb?: string;
  dashboard: boolean;
  stratum1: string[];
}

function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new GridboxError('USAGE', `--listen wants HOST:PORT, got ${q(text)}`);
  return { host: m[1] ?? m[2], port };
}

function untilSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (): void => { process.off('SIGTERM', stop); process.off('SIGINT', stop); resolve(); };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

export async function run(argv: string[]): Promise<number> {
  const parsed: ServeFlags[] = [];
  const cmd = newCommand('gridbox serve', summary)
    .requiredOption('--root <dir>', 'repository root (its srv/ is served)')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8000')
    .option('--workers <n>', `worker processes sharing the port (default: one per core, ${availableParallelism()} here; 1 = no cluster)`, intArg('--workers'))
    .option('--access-log <file>', 'append a buffered Common Log Format line per request to FILE ("-" for stderr); default none')
    .option('--memory-cache-mb <n>', 'MiB of small files each worker keeps in memory (0 = none)', intArg('--memory-cache-mb'), 256)
    .option('--no-metrics', 'no Prometheus text on GET /metrics')
    .option('--no-fast-path', 'parse every request with node:http (the fast path answers plain GET/HEAD of /cvmfs/ itself)')
    .option('--quiet', 'no request log (the default; kept for older scripts)')
    .option('--accounting-db <file>', 'also aggregate container-start records posted by nodes (gridbox report --post)')
    .option('--no-dashboard', 'no dashboard on GET /dashboard')
    .option('--stratum1 <url>', 'a stratum 1 whose replication lag the dashboard shows (repeatable; a URL ending in /cvmfs gets /<fqrn> appended)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .action((o: ServeFlags) => { parsed.push(o); });
  if (!(await parseCommand(cmd, argv)) || parsed.length === 0) return 0;
  const o = parsed[0];
  const srvDir = join(o.root, 'srv');
  if (!existsSync(srvDir) || !statSync(srvDir).isDirectory()) throw new GridboxError('NOT_FOUND', `No srv/ directory under ${q(o.root)}`, { path: srvDir });
  const { host, port } = parseListen(o.listen);
  dashboardRoute = o.dashboard ? createDashboardRoute({ root: o.root, accountingDb: o.accountingDb, stratum1: o.stratum1 }) : undefined;
  const workers = o.workers === undefined || o.workers === 0 ? availableParallelism() : o.workers;
  const accessLog = o.quiet ? undefined : o.accessLog;
  if (cluster.isWorker) return runWorker(srvDir, host, port, o.memoryCacheMb, accessLog, o.metrics, o.fastPath, o.accountingDb);
  if (workers <= 1) {
    const { options, log } = handlerOptions(srvDir, o.memoryCacheMb, accessLog, o.metrics, o.fastPath, o.accountingDb);
    const running = await listenSrv(options, host, port);
    process.stdout.write(`serving ${running.url}\n`);
    await untilSignal();
    await running.close();
    log?.close();
    return 0;
  }
  if (o.metrics) answerWorkersWithClusterMetrics();
  return runPrimary(workers);
}

/** The handler of one serving process: its access log, its metrics and the /metrics route. */
function handlerOptions(srvDir: string, cacheMb: number, accessLogPath: string | undefined, metrics: boolean, fastPath: boolean, accountingDb?: string): { options: SrvHandlerOptions; log?: AccessLog } {
  const log = accessLogPath === undefined ? undefined : openAccessLog(accessLogPath);
  // Every worker opens the accounting database itself (WAL, busy timeout): posts land in whichever worker.
  const accounting = accountingDb === undefined ? undefined : createAccountingHandler(openAccountingDb(accountingDb));
  if (!metrics) return { options: { srvDir, fastPath, memoryCacheBytes: cacheMb << 20, onRequest: log?.record, extraRoute: accounting }, log };
  const registry = newRegistry();
  if (cluster.isWorker) shareWithPrimary([registry]);
  const counted = createServerMetrics(registry);
  return {
    log,
    options: {
      srvDir, fastPath, memoryCacheBytes: cacheMb << 20,
      // Scrapes are logged but not counted: the counters describe the repository's traffic.
      onRequest: (i) => { if (!isMetricsRequest(i.url)) counted.record(i); log?.record(i); },
      extraRoute: withAccounting(accounting, metricsRoute(() => processOrClusterMetrics([registry]))),
    },
  };
}

/** A worker serves until the primary says "stop" (or goes away, which ends the worker through cluster). */
async function runWorker(srvDir: string, host: string, port: number, cacheMb: number, accessLogPath: string | undefined, metrics: boolean, fastPath: boolean, accountingDb?: string): Promise<number> {
  // ^C, and a service manager's SIGTERM, reach the whole process group; the primary decides when workers stop
  // (a worker that died of the signal would leave the primary's stop message nobody to read: EPIPE).
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  let running;
  let log: AccessLog | undefined;
  try {
    // Opening the access log or the accounting database can fail as much as listening can.
    const h = handlerOptions(srvDir, cacheMb, accessLogPath, metrics, fastPath, accountingDb);
    log = h.log;
    running = await listenSrv(h.options, host, port);
  } catch (e) {
    // The IPC channel would keep a failed worker alive, and the primary would wait for it to listen forever;
    // this way the primary sees it exit and reports.
    process.disconnect();
    throw e;
  }
  await new Promise<void>((resolve) => {
    process.on('message', (m) => { if (m === 'gridbox:stop') resolve(); });
    process.once('disconnect', () => resolve());
  });
  await running.close();
  log?.close();
  if (process.connected) process.disconnect();
  return 0;
}

async function runPrimary(count: number): Promise<number> {
  let stopping = false;
  const listening = new Set<number>();
  let url: string | undefined;
  const ready = new Promise<void>((resolve, reject) => {
    cluster.on('listening', (w: Worker, addr) => {
      const h = addr.addressType === 6 ? `[${addr.address}]` : addr.address;
      url ??= `http://${h}:${addr.port}/cvmfs/`;
      listening.add(w.id);
      if (listening.size >= count) resolve();
    });
    cluster.on('exit', (w: Worker, code, signal) => {
      listening.delete(w.id);
      if (stopping) return;
      if (url === undefined) { reject(new GridboxError('INTERNAL', `A serve worker exited (${signal ?? code}) before listening`)); return; }
      process.stderr.write(`gridbox serve: worker ${w.process.pid} exited (${signal ?? code}); starting another\n`);
      cluster.fork();
    });
  });
  ready.catch(() => undefined);
  for (let i = 0; i < count; i++) cluster.fork();
  const signalled = untilSignal();
  try {
    await Promise.race([ready, signalled]);
    if (url !== undefined && listening.size >= count) process.stdout.write(`serving ${url}\n`);
    await signalled;
  } finally {
    stopping = true;
    await Promise.all(Object.values(cluster.workers ?? {}).map((w) => w === undefined ? undefined : stopWorker(w)));
  }
  return 0;
}

function stopWorker(w: Worker): Promise<void> {
  return new Promise<void>((resolve) => {
    if (w.isDead()) { resolve(); return; }
    // A worker gone by other means cannot be told to stop: the send fails asynchronously (EPIPE), and its exit
    // below is what counts.
    w.on('error', () => undefined);
    const t = setTimeout(() => w.process.kill('SIGKILL'), STOP_GRACE_MS);
    w.once('exit', () => { clearTimeout(t); resolve(); });
    try { w.send('gridbox:stop'); } catch { w.process.kill('SIGKILL'); }
  });
}

type Route = NonNullable<SrvHandlerOptions['extraRoute']>;

/** The accounting route (when served) is asked first, then the metrics route. */
function withAccounting(accounting: Route | undefined, next: Route): Route {
  return accounting === undefined ? next : (req, res) => accounting(req, res) || next(req, res);
}

/** GET /dashboard and its data (dashboard/); set once by run() before any server listens. */
let dashboardRoute: Route | undefined;

/** The server's listenSrv with the dashboard route asked before every other extra route (a wrapper, so the handler's options stay the server's). */
function listenSrv(options: SrvHandlerOptions, host: string, port: number): ReturnType<typeof listenSrvHandler> {
  const extra = options.extraRoute;
  const route = dashboardRoute;
  return listenSrvHandler(route === undefined ? options : { ...options, extraRoute: extra === undefined ? route : withAccounting(route, extra) }, host, port);
}
