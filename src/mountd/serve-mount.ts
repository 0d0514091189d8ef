// The mount daemon's main loop: mounts a repository, answers its control socket, leaves a run-dir record,
// says "ready" on an inherited fd, and serves until the kernel connection ends. Reads no flags or
// environment (the CLI opens the client). Started by start-daemon.ts, stopped through control.ts.
import { closeSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { q } from '../errors.js';
import type { Client } from '../client/index.js';
import { mountRepository, type MountedRepository } from '../vfs/mount-repository.js';
import { serveControl, type MountStatus } from './control.js';
import type { Registry } from '../metrics/registry.js';
import { recordPaths, removeMountRecord, writeMountRecord } from './run-dir.js';
import { readyReport } from './daemon-report.js';

export interface ServeOptions {
  fqrn: string;
  mountpoint: string;
  runDir: string;
  /** An open client; the daemon closes it when the mount ends. */
  client: Client;
  /** This process is root of the user+mount namespace the mount lives in. */
  userns: boolean;
  loop?: 'auto' | 'epoll' | 'threadpool';
  /** fd to write the ready report to (then closed); without one, `announce` is called. */
  readyFd?: number;
  /** Lines the front that started this daemon prints after the ready report (daemon-report.ts). */
  readyLines?: (revision: number) => string[];
  log: (line: string) => void;
  announce?: (line: string) => void;
  /** Also serve Prometheus metrics on GET /metrics at this HOST:PORT (they are on the control socket anyway). */
  metricsListen?: string;
  /** Mounts with this instead of mountRepository (tests, other views). */
  mount?: typeof mountRepository;
}

/** Mounts and serves until the kernel connection ends (umount, SIGTERM/SIGINT, control "unmount"). */
export async function serveMount(o: ServeOptions): Promise<void> {
  const { fqrn, mountpoint: mnt, client, log } = o;
  const paths = recordPaths(o.runDir, mnt);
  await mkdir(o.runDir, { recursive: true, mode: 0o700 });
  const started = Date.now();
  let mounted: MountedRepository;
  try {
    mounted = await (o.mount ?? mountRepository)({
      client, mountpoint: mnt, loop: o.loop, log,
      extraXattrs: () => ({ 'user.pid': String(process.pid), 'user.uptime': String(Math.floor((Date.now() - started) / 60_000)) }),
    });
  } catch (e) {
    await client.close();
    throw e;
  }
  const status = (): MountStatus => {
    const f = mounted.fsStats(); // first: it collects the fast READs into the client's counters
    const s = client.stats();
    return {
      ...s, fqrn, mountpoint: mnt, pid: process.pid, userns: o.userns, openFiles: f.openFiles,
      nodes: f.nodes, ioErrors: f.ioErrors, revisionSwitches: f.revisionSwitches, passthroughOpens: f.passthroughOpens, fastReads: f.fastReads, uptimeS: Math.floor((Date.now() - started) / 1000),
      requests: Object.fromEntries(mounted.session.counts),
    };
  };
  const stop = async (): Promise<void> => {
    try {
      await mounted.unmount();
    } catch (e) {
      log(`unmount of ${q(mnt)} failed: ${(e as Error).message}`);
    }
  };
  const onSignal = (): void => { void stop(); };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  let server;
  // prom-client (with its OpenTelemetry dependency) costs ~0.1 s of module loading on a busy machine: loaded on
  // the first scrape, or at start only with --metrics-listen.
  let registry: Promise<Registry> | undefined;
  const metrics = (): Promise<Registry> => (registry ??= import('./mount-metrics.js').then((m) => m.createMountMetrics(status)));
  let metricsServer;
  try {
    server = await serveControl(paths.socket, { status, unmount: stop, client, metrics: async () => (await metrics()).metrics() });
    if (o.metricsListen !== undefined) {
      const { listenMountMetrics } = await import('./mount-metrics.js');
      metricsServer = await listenMountMetrics(o.metricsListen, await metrics());
      log(`metrics on ${metricsServer.url}`);
    }
    await writeMountRecord(o.runDir, { fqrn, mountpoint: mnt, pid: process.pid, userns: o.userns, socket: paths.socket, log: paths.log });
  } catch (e) {
    // Without a control socket nobody could find this mount again: take it down.
    await stop();
    await client.close();
    throw e;
  }
  log(`mounted ${fqrn} revision ${client.revision()} at ${mnt} (${mounted.session.loop} loop; ${Math.round(process.uptime() * 1000)} ms after the daemon started, ${Date.now() - started} ms of them mounting)`);
  if (o.readyFd !== undefined) {
    try {
      writeSync(o.readyFd, readyReport({ revision: client.revision(), pid: process.pid }, o.readyLines?.(client.revision())));
      closeSync(o.readyFd);
    } catch (e) {
      log(`cannot signal readiness on fd ${o.readyFd}: ${(e as Error).message}`);
    }
  } else {
    o.announce?.(`mounted ${fqrn} revision ${client.revision()} at ${mnt}; SIGINT or gridbox umount to stop`);
  }
  await mounted.closed;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  server.close();
  metricsServer?.server.close();
  // Both at once: the caller waits for this process to exit. The mount command exits right after this returns,
  // so the client closes as for an exit (the cache ledger's checkpoint is left to its next opener).
  await Promise.all([removeMountRecord(o.runDir, mnt), client.close({ exiting: true })]);
  log(`unmounted ${mnt}`);
}
