import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { listenSrv } from '../../server/srv-handler.js';
import { withTempDir } from '../../testing/tmp.js';

const FQRN = 'loop.example.org';
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'main.js');
const run = promisify(execFile);

test('gridbox snapshot --loop keeps a replica in step, rides out a source outage and stops cleanly on SIGTERM', { timeout: 120_000 }, () => withTempDir(async (dir) => {
  const src = join(dir, 'src');
  const source = join(dir, 's0');
  await mkdir(src);
  await writeFile(join(src, 'a.txt'), 'first\n');
  await run(process.execPath, [MAIN, 'mkfs', FQRN, '--root', source]);
  await run(process.execPath, [MAIN, 'publish', FQRN, src, '--root', source]);
  let server = await listenSrv({ srvDir: join(source, 'srv') });
  const port = server.port;
  const child = spawn(process.execPath, [MAIN, 'snapshot', FQRN, '--from', server.url, '--root', join(dir, 's1'), '--keys', join(source, 'keys'), '--loop', '1'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  const err: string[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => out.push(l));
  createInterface({ input: child.stderr }).on('line', (l) => err.push(l));
  const until = async (what: string, ok: () => boolean): Promise<void> => {
    for (let i = 0; i < 600 && !ok(); i++) {
      if (child.exitCode !== null) throw new Error(`snapshot exited ${child.exitCode} waiting for ${what}: ${err.join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(ok(), `${what}; stdout: ${out.join('\n')}; stderr: ${err.join('\n')}`);
  };
  try {
    await until('the first snapshot', () => out.some((l) => /revision 2 \(new replica\)/.test(l)));
    await server.close();
    await until('a reported failure while the source is down', () => err.length > 0);
    assert.match(err[0], /^gridbox snapshot: /);
    await writeFile(join(src, 'b.txt'), 'second\n');
    await run(process.execPath, [MAIN, 'publish', FQRN, src, '--root', source]);
    server = await listenSrv({ srvDir: join(source, 'srv') }, '127.0.0.1', port);
    await until('the new revision replicated', () => out.some((l) => /revision 3 \(from revision 2\), copied [1-9]/.test(l)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await server.close();
  }
}));
