// The on-demand /cvmfs daemon: one FUSE mount served by createAutomountFs, an idle sweep that releases
// repositories nobody uses, a control socket (status, unmount, talk per repository, reload) and a run-dir
// record under the wildcard name "*", so `gridbox talk <fqrn>` and `gridbox config` find it. Reads no
// flags or environment: the CLI passes how to list repositories and open their clients.
import { closeSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { GridboxError, q } from '../errors.js';
import type { Client } from '../client/index.js';
import { mountFuse, type FuseMount } from '../fuse/mount.js';
import { createPassthrough } from '../fuse/passthrough.js';
import { InitFlag2, type InitOut } from '../fuse/protocol.js';
import { startSession } from '../fuse/session.js';
import { createAutomountFs, type AutomountFs } from '../vfs/automount-fs.js';
import { notifyInvalEntry } from '../vfs/fuse-notify.js';
import { AUTOMOUNT_FQRN, serveControl, talkAnswer, type MountStatus } from './control.js';
import { recordPaths, removeMountRecord, writeMountRecord } from './run-dir.js';

export interface AutomountOptions {
  mountpoint: string;
  runDir: string;
  /** The configured repositories, read again by `reload`. */
  repositories: () => Promise<string[]>;
  openClient: (fqrn: string) => Promise<Client>;
  /** A repository unused this long is released (its client, catalogs and cache handles closed). */
  idleMs: number;
  userns: boolean;
  passthrough?: boolean;
  loop?: 'auto' | 'epoll' | 'threadpool';
  readyFd?: number;
  log: (line: string) => void;
  announce?: (line: string) => void;
}

const INIT_TIMEOUT_MS = 15_000;

/** The status of one attached repository, as `gridbox status`/talk show a plain mount's. */
function repoStatus(fs: AutomountFs, fqrn: string, o: AutomountOptions, started: number): MountStatus | undefined {
  const a = fs.attached().find((x) => x.fqrn === fqrn);
  if (a === undefined) return undefined;
  const f = a.fsStats();
  return {
    ...a.client.stats(), fqrn, mountpoint: `${o.mountpoint}/${fqrn}`, pid: process.pid, userns: o.userns, openFiles: f.openFiles,
    nodes: f.nodes, ioErrors: f.ioErrors, revisionSwitches: f.revisionSwitches, passthroughOpens: f.passthroughOpens,
    uptimeS: Math.floor((Date.now() - started) / 1000), requests: {},
  };
}

/** Mounts the on-demand view and serves until the kernel connection ends. */
export async function serveAutomount(o: AutomountOptions): Promise<void> {
  const { mountpoint: mnt, log } = o;
  const started = Date.now();
  let repos = await o.repositories();
  await mkdir(o.runDir, { recursive: true, mode: 0o700 });
  const m: FuseMount = await mountFuse(mnt, { fsname: 'gridbox-automount', subtype: 'gridbox', allowOther: true, readOnly: true });
  const passthrough = o.passthrough === false ? undefined : createPassthrough(m.fd, log);
  const fs = createAutomountFs({
    repositories: () => repos,
    openClient: o.openClient,
    fsOptions: (fqrn) => ({ log: (line) => log(`${fqrn}: ${line}`), passthrough }),
    log,
  });
  let initDone!: () => void;
  const initSeen = new Promise<void>((resolve) => { initDone = resolve; });
  const session = startSession(m.fd, {
    ...fs,
    init: (info: InitOut) => {
      if (passthrough && !((info.flags2 ?? 0) & InitFlag2.PASSTHROUGH)) passthrough.disable('the kernel did not grant FUSE_PASSTHROUGH at INIT');
      initDone();
    },
  }, { loop: o.loop ?? 'auto', passthrough: passthrough !== undefined });
  let timer: NodeJS.Timeout | undefined;
  const first = await Promise.race([
    initSeen.then(() => 'init' as const), session.closed.then(() => 'closed' as const),
    new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), INIT_TIMEOUT_MS); }),
  ]);
  clearTimeout(timer);
  if (first !== 'init') {
    await m.unmount({ lazy: true }).catch(() => undefined);
    session.close();
    throw new GridboxError('MOUNT_FAILED', `Mounted ${q(mnt)} but the kernel ${first === 'closed' ? 'closed the connection' : 'sent no INIT'}`, { path: mnt });
  }

  // The sweep runs a few times per idle period: a repository is released within ~1.25 periods of its last use.
  const tick = Math.max(50, Math.min(5_000, Math.floor(o.idleMs / 4)));
  let sweeping = false;
  const sweep = async (idleMs: number): Promise<string[]> => {
    if (sweeping) return [];
    sweeping = true;
    try {
      return await fs.sweep(Date.now(), idleMs, (parent, name) => notifyInvalEntry(m.fd, parent, name));
    } finally {
      sweeping = false;
    }
  };
  /** Releases every repository without open files now (talk `release idle`, reload); a working directory inside keeps one. */
  const releaseIdleNow = async (): Promise<string[]> => {
    const released: string[] = [];
    // Passes alternate between dropping dentries and checking that the kernel forgot them (FORGET comes asynchronously).
    for (let i = 0; i < 10 && fs.attached().some((a) => a.fsStats().openFiles === 0); i++) {
      released.push(...await sweep(0));
      await new Promise((ok) => setTimeout(ok, 50));
    }
    return released;
  };
  const sweeper = setInterval(() => { void sweep(o.idleMs).catch((e: unknown) => log(`idle sweep failed: ${(e as Error).message}`)); }, tick);

  let unmounting: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    unmounting ??= m.unmount().catch(async (e: unknown) => {
      log(`unmount of ${q(mnt)} failed (${(e as Error).message}); detaching lazily`);
      await m.unmount({ lazy: true }).catch(() => undefined);
    });
    return unmounting;
  };
  const status = (): MountStatus => {
    const c = fs.counters();
    const att = fs.attached();
    const sum = (f: (s: MountStatus) => number): number => att.reduce((n, a) => n + f(repoStatus(fs, a.fqrn, o, started)!), 0);
    return {
      fqrn: AUTOMOUNT_FQRN, mountpoint: mnt, pid: process.pid, userns: o.userns, uptimeS: Math.floor((Date.now() - started) / 1000),
      revision: 0, rootHash: '', offline: false, cacheBytes: 0, cacheLimit: 0, cacheObjects: 0, evictions: 0, bytesOnWire: sum((s) => s.bytesOnWire),
      hits: sum((s) => s.hits), misses: sum((s) => s.misses), bytesInflated: sum((s) => s.bytesInflated), openFiles: sum((s) => s.openFiles),
      nodes: sum((s) => s.nodes), ioErrors: sum((s) => s.ioErrors), revisionSwitches: sum((s) => s.revisionSwitches),
      passthroughOpens: sum((s) => s.passthroughOpens), requests: Object.fromEntries(session.counts),
      automount: { repositories: repos, attached: att.map((a) => a.fqrn), ...c, idleMs: o.idleMs },
    } as MountStatus;
  };
  const talk = async (fqrn: string | undefined, command: string): Promise<string> => {
    const cmd = command.trim().split(/\s+/).join(' ');
    if (fqrn === undefined || fqrn === AUTOMOUNT_FQRN) {
      if (cmd === 'repositories') return repos.join('\n');
      if (cmd === 'attached') return fs.attached().map((a) => a.fqrn).join('\n');
      if (cmd === 'release idle') return (await releaseIdleNow()).join('\n') || '(none released)';
      return talkAnswer(cmd, status);
    }
    if (!repos.includes(fqrn)) throw new GridboxError('NOT_FOUND', `${fqrn} is not a repository of ${mnt}`);
    const a = fs.attached().find((x) => x.fqrn === fqrn);
    if (a === undefined) {
      if (cmd === 'attached') return 'no';
      throw new GridboxError('NOT_FOUND', `${fqrn} is not attached (nothing under ${mnt}/${fqrn} was used since it was last released)`);
    }
    if (cmd === 'attached') return 'yes';
    return talkAnswer(cmd, () => repoStatus(fs, fqrn, o, started)!, a.client);
  };
  const reload = async (): Promise<string> => {
    const before = repos;
    repos = await o.repositories();
    // Unused repositories are let go now, so their next use opens a client with the new configuration;
    // one in use keeps its client until it is idle.
    const released = await releaseIdleNow();
    const lines = [`repositories: ${repos.join(' ') || '(none)'}`];
    const added = repos.filter((r) => !before.includes(r)), removed = before.filter((r) => !repos.includes(r));
    if (added.length) lines.push(`added: ${added.join(' ')}`);
    if (removed.length) lines.push(`removed: ${removed.join(' ')}`);
    if (released.length) lines.push(`released to re-read their configuration: ${released.join(' ')}`);
    const busy = fs.attached().map((a) => a.fqrn);
    if (busy.length) lines.push(`in use, keep their configuration until idle: ${busy.join(' ')}`);
    return lines.join('\n');
  };
  const onSignal = (): void => { void stop(); };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const paths = recordPaths(o.runDir, mnt);
  let server;
  try {
    server = await serveControl(paths.socket, { status, unmount: stop, talk, reload });
    await writeMountRecord(o.runDir, { fqrn: AUTOMOUNT_FQRN, mountpoint: mnt, pid: process.pid, userns: o.userns, socket: paths.socket, log: paths.log });
  } catch (e) {
    clearInterval(sweeper);
    await stop();
    throw e;
  }
  log(`on-demand ${mnt} for ${repos.join(' ') || '(no repositories yet)'}; idle release after ${o.idleMs / 1000} s`);
  if (o.readyFd !== undefined) {
    try {
      writeSync(o.readyFd, `ready ${JSON.stringify({ revision: 0, pid: process.pid })}\n`);
      closeSync(o.readyFd);
    } catch (e) {
      log(`cannot signal readiness on fd ${o.readyFd}: ${(e as Error).message}`);
    }
  } else {
    o.announce?.(`serving ${mnt} on demand (${repos.join(' ')}); SIGINT or gridbox umount to stop`);
  }
  await session.closed;
  clearInterval(sweeper);
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  server.close();
  await removeMountRecord(o.runDir, mnt);
  await fs.closeAll();
  log(`unmounted ${mnt}`);
}
