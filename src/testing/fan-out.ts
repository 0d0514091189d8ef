// Test helper for distribution at scale on one machine: stratum 1s made and kept in step by the real
// `gridbox snapshot --loop`, served by the real `gridbox serve --access-log`, and client processes run
// as `gridbox get`, plus the log readers that count what reached whom. Every process is a child on
// 127.0.0.1; the caller owns the temp dir. Not for production.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, readdir, lstat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startLatencyProxy, type LatencyProxy } from './latency-proxy.js';

/** dist/cli/main.js, found from this compiled module. */
export function gridboxMain(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
}

export interface ChildResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Runs `gridbox args…` to its end (never rejects: the caller judges the exit status). */
export function runGridbox(args: string[], env: NodeJS.ProcessEnv = process.env, cwd?: string): Promise<ChildResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [gridboxMain(), ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('error', (e) => resolve({ code: -1, signal: null, stdout, stderr: stderr + String(e) }));
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Throws with the child's stderr unless it exited 0. */
export async function mustRun(args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const r = await runGridbox(args, env);
  if (r.code !== 0) throw new Error(`gridbox ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

/** A long-running gridbox child whose output lines are kept. */
interface Daemon {
  child: ChildProcess;
  out: string[];
  err: string[];
  /** SIGTERM, then SIGKILL after 5 s; resolves once it exited. */
  stop(): Promise<void>;
}

function startDaemon(args: string[]): Daemon {
  const child = spawn(process.execPath, [gridboxMain(), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  const err: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => out.push(l));
  createInterface({ input: child.stderr! }).on('line', (l) => err.push(l));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child, out, err,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Polls `ok` every 50 ms for up to `ms`; throws `what` with context on timeout. */
export async function waitFor(what: string, ok: () => boolean, ms = 60_000, context: () => string = () => ''): Promise<void> {
  const until = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${context() === '' ? '' : `: ${context()}`}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Stratum1 {
  name: string;
  root: string;
  /** What clients and squids are given: the serve URL, or the latency proxy's in front of it. */
  url: string;
  accessLogPath: string;
  /** Revisions the snapshot loop reported, in order. */
  revisions(): number[];
  /** Stops `gridbox serve` only (the replica stays on disk, the loop keeps running). */
  stopServe(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A stratum 1 of `fqrn` under `root`: one `gridbox snapshot` from `stratum0`, then `gridbox serve --workers 1
 * --access-log` and `gridbox snapshot --loop loopS`. `latencyMs` puts a latency proxy in front ("far").
 */
export async function startStratum1(o: { name: string; root: string; fqrn: string; stratum0: string; keysDir: string; loopS: number; latencyMs?: number }): Promise<Stratum1> {
  const snapArgs = ['snapshot', o.fqrn, '--from', o.stratum0, '--root', o.root, '--keys', o.keysDir];
  await mustRun(snapArgs);
  const accessLogPath = join(o.root, 'access.log');
  const serve = startDaemon(['serve', '--root', o.root, '--listen', '127.0.0.1:0', '--workers', '1', '--access-log', accessLogPath]);
  await waitFor(`${o.name}'s gridbox serve`, () => serve.out.some((l) => l.startsWith('serving ')) || serve.child.exitCode !== null, 30_000);
  const served = serve.out.find((l) => l.startsWith('serving '));
  if (served === undefined) throw new Error(`gridbox serve for ${o.name} exited: ${serve.err.join('\n')}`);
  const base = `${served.slice('serving '.length).replace(/\/+$/, '')}/${o.fqrn}`;
  let latency: LatencyProxy | undefined;
  if (o.latencyMs !== undefined) latency = await startLatencyProxy({ port: Number(new URL(base).port), delayMs: o.latencyMs });
  const loop = startDaemon([...snapArgs, '--loop', String(o.loopS)]);
  return {
    name: o.name, root: o.root, accessLogPath,
    url: latency === undefined ? base : latency.url(base),
    revisions: () => loop.out.map((l) => /: revision (\d+) /.exec(l)).filter((m) => m !== null).map((m) => Number(m![1])),
    stopServe: () => serve.stop(),
    close: async () => { await loop.stop(); await serve.stop(); await latency?.close(); },
  };
}

/** Requests per URL path in a `gridbox serve --access-log` file (Common Log Format). */
export async function serveRequestCounts(accessLogPath: string, method = 'GET'): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const text = await readFile(accessLogPath, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const m = /"(\S+) (\S+) HTTP\/[\d.]+" (\d{3})/.exec(line);
    if (m === null || m[1] !== method) continue;
    counts.set(m[2], (counts.get(m[2]) ?? 0) + 1);
  }
  return counts;
}

/**
 * Requests a squid forwarded to an origin (hierarchy HIER_DIRECT), per absolute URL, from its access.log in
 * squid's native format: "time elapsed client code/status bytes method URL user hierarchy/peer type".
 */
export function squidForwards(lines: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of lines) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !f[8].startsWith('HIER_DIRECT')) continue;
    counts.set(f[6], (counts.get(f[6]) ?? 0) + 1);
  }
  return counts;
}

/** Every regular file under `root` by relative path, with its bytes (symlinks by target). */
export async function readTree(root: string, rel = ''): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const name of (await readdir(join(root, rel))).sort()) {
    const p = rel === '' ? name : `${rel}/${name}`;
    const st = await lstat(join(root, p));
    if (st.isDirectory()) for (const [k, v] of await readTree(root, p)) out.set(k, v);
    else if (st.isFile()) out.set(p, await readFile(join(root, p)));
  }
  return out;
}

/** Why two trees differ, or undefined when they hold the same paths with the same bytes. */
export function treeDifference(got: Map<string, Buffer>, want: Map<string, Buffer>): string | undefined {
  for (const [p, b] of want) {
    const g = got.get(p);
    if (g === undefined) return `${p} is missing`;
    if (!g.equals(b)) return `${p} differs (${g.length} bytes, want ${b.length})`;
  }
  for (const p of got.keys()) if (!want.has(p)) return `${p} is extra`;
  return undefined;
}

/** Runs `tasks` with at most `limit` in flight; results in task order. */
export async function inPool<T>(limit: number, tasks: (() => Promise<T>)[]): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, async () => {
    while (next < tasks.length) {
      const i = next++;
      out[i] = await tasks[i]();
    }
  }));
  return out;
}
