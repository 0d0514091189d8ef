// One child process run to completion with its output collected: what every bench step that shells out needs.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { isAlive } from '../plumbing/process-identity.js';

/** bin/gridbox of the build whose dist/cli/main.js is `main`: `mount` is timed as users run it (no node front). */
export function cliBinOf(main: string): string {
  return join(dirname(main), '..', '..', 'bin', 'gridbox');
}

export interface Run { code: number | null; stdout: string; stderr: string }

export function runChild(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve, reject) => {
    const c = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    c.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The run's stdout, or an error naming the step and the tail of its stderr. */
export async function must(p: Promise<Run>, what: string): Promise<string> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr.slice(-500)}`);
  return r.stdout;
}

/**
 * Resolves once none of `pids` is running (a zombie counts as gone: these machines' init reaps orphans up to
 * ~2 s late), polling every 5 ms; `what` names them in the error after `timeoutMs`. How the unmount rows wait
 * for a client, ours and the stock one alike.
 */
export async function waitGone(pids: number[], what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some((pid) => isAlive(pid))) {
    if (Date.now() > deadline) throw new Error(`${what} ${pids.filter((pid) => isAlive(pid)).join(' ')} still running ${timeoutMs / 1000} s after umount`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
