// Test support for the mount tests (no tests of its own): a source tree with every entry kind, a
// repository published from it with the CLI, loopback origins that can be slow or corrupt, and helpers
// that run the CLI and shell commands as child processes (the test process never touches the mount).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, link, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSrvHandler } from '../server/srv-handler.js';

export const FQRN = 'mount.test.org';

export interface RunResult { code: number | null; stdout: string; stderr: string }

/** Runs a program to completion asynchronously (a sync spawn would stall the in-process origin). */
export function runChild(command: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

/** The run's stdout; fails the test with the step's name, exit code and output when it did not exit 0. */
export async function mustRun(r: Promise<RunResult>, what: string): Promise<string> {
  const x = await r;
  assert.equal(x.code, 0, `${what} failed (${x.code}): ${x.stderr}${x.stdout}`);
  return x.stdout;
}

export function cliMain(): string {
  return fileURLToPath(new URL('../cli/main.js', import.meta.url));
}

/** bin/gridbox, the CLI as users run it (its `mount` starts the daemon without a node front). */
export function cliBin(): string {
  return fileURLToPath(new URL('../../bin/gridbox', import.meta.url));
}

/** `gridbox ARGS` in a child process, through bin/gridbox. */
export function gridbox(args: string[], env: NodeJS.ProcessEnv): Promise<RunResult> {
  return runChild(cliBin(), args, { env });
}

/** `bash -c SCRIPT` in a child process. */
export function sh(script: string, env: NodeJS.ProcessEnv = process.env): Promise<RunResult> {
  return runChild('bash', ['-c', script], { env });
}

/** Deterministic bytes, so content differences show up as diff failures. */
export function patternBytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let block = createHash('sha256').update(String(seed)).digest();
  for (let i = 0; i < n; i += 32) {
    block.copy(out, i, 0, Math.min(32, n - i));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

export interface TreeOptions { smallFiles?: number; depth?: number; bigBytes?: number }

/** Deep dirs, many small files, a big (chunked) file, hardlinks, symlinks, a fifo, modes, an empty file. */
export async function buildSourceTree(dir: string, o: TreeOptions = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'a.txt'), 'hello from the repository\n');
  await writeFile(join(dir, 'empty'), '');
  await writeFile(join(dir, 'big.bin'), patternBytes(o.bigBytes ?? 3 * 1024 * 1024, 1));
  await writeFile(join(dir, 'run.sh'), '#!/bin/sh\necho run\n');
  await chmod(join(dir, 'run.sh'), 0o755);
  await writeFile(join(dir, 'private'), 'mode 600\n');
  await chmod(join(dir, 'private'), 0o600);
  await link(join(dir, 'a.txt'), join(dir, 'hard.txt'));
  await symlink('a.txt', join(dir, 'sym'));
  await symlink('does/not/exist', join(dir, 'dangling'));
  await runChild('mkfifo', [join(dir, 'fifo')]);
  let deep = join(dir, 'deep');
  for (let i = 0; i < (o.depth ?? 12); i++) deep = join(deep, `d${i}`);
  await mkdir(deep, { recursive: true });
  await writeFile(join(deep, 'leaf.txt'), 'at the bottom\n');
  const many = join(dir, 'many');
  await mkdir(many);
  for (let i = 0; i < (o.smallFiles ?? 200); i++) await writeFile(join(many, `f${String(i).padStart(4, '0')}`), `small file ${i}\n`);
  await mkdir(join(dir, 'sub'));
  await writeFile(join(dir, 'sub', 'x1'), 'linked twice\n');
  await link(join(dir, 'sub', 'x1'), join(dir, 'sub', 'x2'));
}

export interface Published { root: string; srvDir: string; keyFile: string }

/** mkfs + publish with small chunk sizes so big.bin is chunked; `ttl` seconds of catalog TTL. */
export async function publishTree(root: string, src: string, env: NodeJS.ProcessEnv, ttl = 240): Promise<Published> {
  const mk = await gridbox(['mkfs', FQRN, '--root', root, '--ttl', String(ttl)], env);
  if (mk.code !== 0) throw new Error(`mkfs failed: ${mk.stderr}`);
  await publishAgain(root, src, env);
  return { root, srvDir: join(root, 'srv'), keyFile: join(root, 'keys', `${FQRN}.pub`) };
}

export async function publishAgain(root: string, src: string, env: NodeJS.ProcessEnv): Promise<void> {
  const p = await gridbox(['publish', FQRN, src, '--root', root, '--chunk-min', '65536', '--chunk-avg', '262144', '--chunk-max', '1048576'], env);
  if (p.code !== 0) throw new Error(`publish failed: ${p.stderr}`);
}

export type OriginMode = 'ok' | 'slow' | 'corrupt';

export interface Origin {
  /** Repository URL: http://127.0.0.1:PORT/cvmfs/<fqrn> */
  url: string;
  mode: OriginMode;
  delayMs: number;
  /** Requests per URL path. */
  requests: Map<string, number>;
  close(): Promise<void>;
}

/** Serves `srvDir` as /cvmfs/ on 127.0.0.1; 'slow' delays data objects, 'corrupt' flips their bytes. */
export async function startOrigin(srvDir: string, mode: OriginMode = 'ok', delayMs = 0): Promise<Origin> {
  const handler = createSrvHandler({ srvDir });
  const o: Origin = { url: '', mode, delayMs, requests: new Map(), close: async () => undefined };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    o.requests.set(path, (o.requests.get(path) ?? 0) + 1);
    const isData = path.includes('/data/');
    if (isData && o.mode === 'corrupt') {
      const file = join(srvDir, decodeURIComponent(path.replace(/^\/cvmfs\//, '')));
      readFile(file).then((b) => {
        for (let i = 0; i < b.length; i += 97) b[i] ^= 0x5a;
        res.writeHead(200, { 'content-length': b.length, 'content-type': 'application/x-cvmfs' });
        res.end(b);
      }, () => { res.writeHead(404); res.end(); });
      return;
    }
    if (isData && o.mode === 'slow' && o.delayMs > 0) setTimeout(() => handler(req, res), o.delayMs);
    else handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  o.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/cvmfs/${FQRN}`;
  o.close = () => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); });
  return o;
}

/** A port nothing listens on (bound, then closed). */
export async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}/cvmfs/${FQRN}`;
}

/** Env for CLI children: own run dir, no system config files. */
export function cliEnv(tmp: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, GRIDBOX_RUN_DIR: join(tmp, 'run'), GRIDBOX_CVMFS_CONFIG_DIR: join(tmp, 'etc-cvmfs'), ...extra };
  for (const k of Object.keys(env)) if (k.startsWith('CVMFS_') && !(k in extra)) delete env[k];
  return env;
}

/**
 * Whether process `pid` has exited: gone, or a zombie not yet reaped by its new parent (a detached daemon
 * is reparented to init, which on some machines reaps only every second or two).
 */
export function processExited(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

/** Why FUSE mount tests cannot run here, or undefined when they can. */
export function fuseSkipReason(): string | undefined {
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse';
  if (process.getuid?.() !== 0) return 'mount tests run as root (they drop privileges themselves where needed)';
  return undefined;
}

/** `find` listing with type, size, mode, links, mtime seconds and link target, for comparing trees. */
export async function treeListing(dir: string, env?: NodeJS.ProcessEnv): Promise<string> {
  const r = await sh(`cd ${JSON.stringify(dir)} && find . -printf '%p|%y|%m|%n|%U|%G|%l|%s|%T@\\n' | LC_ALL=C sort`, env);
  if (r.code !== 0) throw new Error(`find in ${dir} failed: ${r.stderr}`);
  // Directory sizes are filesystem-specific; mtimes are compared to the second (catalogs keep seconds).
  return r.stdout.split('\n').filter((l) => l !== '').map((l) => {
    const f = l.split('|');
    if (f[1] === 'd') f[7] = '-';
    f[8] = String(Math.floor(Number(f[8])));
    return f.join('|');
  }).join('\n');
}
