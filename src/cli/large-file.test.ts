// Large files read back (issue 8): the 6 GiB sparse file (random regions and holes, ~770 chunks) published
// once and cached (testing/large-file.ts), served by a loopback `gridbox serve`, read back byte-identical by
// `gridbox cat` and through the FUSE mount, each client's peak RSS (VmHWM from /proc) under 256 MiB:
// the client streams download → hash → inflate → cache temp file → rename, never a whole object in memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { largeFileRepo } from '../testing/large-file.js';
import { makeTempDir } from '../testing/tmp.js';
import { cliEnv, cliMain, fuseSkipReason, gridbox, runChild } from '../vfs/mount-fixture.test.js';

const MiB = 2 ** 20;
/** The bound the issue sets for a reading client. */
const CLIENT_RSS_MAX_BYTES = 256 * MiB;

/** Peak resident set of a live process, from /proc/<pid>/status. */
function vmHwmBytes(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM for pid ${pid}`);
  return Number(m[1]) * 1024;
}

async function serve(root: string, env: NodeJS.ProcessEnv): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [cliMain(), 'serve', '--root', root, '--listen', '127.0.0.1:0', '--quiet'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`serve exited ${code}`)));
  });
  return { url: line.replace(/^serving /, '').trim().replace(/\/+$/, ''), stop: async () => { child.kill('SIGTERM'); await exited; } };
}

test('a 6 GiB chunked file reads back byte-identical through cat and the mount, each client under 256 MiB RSS', { timeout: 3_600_000 }, async (t) => {
  const tmp = await makeTempDir('gridbox-large-');
  const env = cliEnv(tmp);
  try {
    const repo = await largeFileRepo(env);
    const LARGE_FILE_BYTES = repo.size;
    t.diagnostic(`${repo.built ? 'built' : 'cached'}: ${repo.root}`);
    const keys = ['--keys', join(repo.root, 'keys')];
    const server = await serve(repo.root, env);
    try {
      await t.test('gridbox cat', async () => {
        // The client records its own peak RSS as it exits (it is gone before anyone could read /proc).
        const hwmFile = join(tmp, 'cat.hwm');
        const preload = join(tmp, 'hwm.cjs');
        await writeFile(preload, `process.on('exit', () => { const m = /^VmHWM:\\s+(\\d+) kB$/m.exec(require('fs').readFileSync('/proc/self/status', 'utf8')); require('fs').writeFileSync(${JSON.stringify(hwmFile)}, m ? m[1] : 'none'); });\n`);
        const r = await runChild('bash', ['-c', `set -o pipefail; "$0" --require ${JSON.stringify(preload)} "$@" | cmp - ${JSON.stringify(repo.file)} && echo identical`,
          process.execPath, cliMain(), 'cat', repo.fqrn, repo.path, '--server', server.url, ...keys, '--cache', join(tmp, 'cache-cat')], { env, timeoutMs: 1_800_000 });
        assert.equal(r.code, 0, r.stderr + r.stdout);
        assert.equal(r.stdout.trim(), 'identical');
        const hwm = Number(await readFile(hwmFile, 'utf8')) * 1024;
        t.diagnostic(`cat peak RSS ${(hwm / MiB).toFixed(1)} MiB for ${LARGE_FILE_BYTES / MiB} MiB`);
        assert.ok(hwm > 0 && hwm < CLIENT_RSS_MAX_BYTES, `cat peak RSS ${hwm} bytes`);
      });

      await t.test('the FUSE mount', { skip: fuseSkipReason() }, async () => {
        const mnt = join(tmp, 'mnt');
        await mkdir(mnt);
        const m = await gridbox(['mount', repo.fqrn, mnt, '--server', server.url, ...keys, '--cache', join(tmp, 'cache-mnt')], env);
        assert.equal(m.code, 0, m.stderr);
        try {
          const pid = (JSON.parse((await gridbox(['status', mnt, '--json'], env)).stdout) as { pid: number }).pid;
          const r = await runChild('bash', ['-c', `cmp ${JSON.stringify(repo.file)} ${JSON.stringify(join(mnt, repo.path))} && echo identical`], { env, timeoutMs: 1_800_000 });
          assert.equal(r.stdout.trim(), 'identical', `cmp exited ${r.code}: ${r.stderr}`);
          const hwm = vmHwmBytes(pid);
          t.diagnostic(`mount daemon peak RSS ${(hwm / MiB).toFixed(1)} MiB for ${LARGE_FILE_BYTES / MiB} MiB`);
          assert.ok(hwm < CLIENT_RSS_MAX_BYTES, `mount daemon peak RSS ${hwm} bytes`);
          const st = JSON.parse((await gridbox(['status', mnt, '--json'], env)).stdout) as { bytesOnWire: number; bytesInflated: number };
          t.diagnostic(`mount: ${st.bytesOnWire} bytes on the wire, ${st.bytesInflated} bytes after inflation`);
          assert.ok(st.bytesOnWire > 0 && st.bytesInflated > 0);
        } finally {
          await gridbox(['umount', mnt], env);
        }
      });
    } finally {
      await server.stop();
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
