// Site limits (issue 8): every long-running command runs as a child under `ulimit -v 4194304` (4 GiB of
// address space, as batch sites and pilots set it) on real parts: publish, ingest, a loopback `gridbox
// serve`, cat and get through it, a stratum-1 snapshot, the FUSE mount daemon, and a sync from a loopback
// docker-registry. Each result is checked, and /proc/<pid>/limits shows the limit really applied.
// A control shows what the limit refuses: one WebAssembly memory (what undici's HTTP parser needs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { listenSrv } from '../server/srv-handler.js';
import { repoLayout } from '../publish/repo-layout.js';
import { readSyncState } from '../sync/reconcile.js';
import { haveRegistry, startRegistry } from '../testing/registry.js';
import { imageConfig, pushImage, standardLayers } from '../testing/images.js';
import { makeTempDir } from '../testing/tmp.js';
import {
  FQRN, buildSourceTree, cliEnv, cliMain, fuseSkipReason, gridbox, runChild, sh, type RunResult,
} from '../vfs/mount-fixture.test.js';

/** The limit under test, in KiB as `ulimit -v` takes it. */
const LIMIT_KB = 4_194_304;

/** `gridbox ARGS` under the limit; `stdinFrom` is a shell pipeline feeding its standard input. */
function limited(args: string[], env: NodeJS.ProcessEnv, stdinFrom?: string): Promise<RunResult> {
  const run = stdinFrom === undefined ? 'exec "$0" "$@"' : `${stdinFrom} | "$0" "$@"`;
  return runChild('bash', ['-c', `ulimit -v ${LIMIT_KB} && ${run}`, process.execPath, cliMain(), ...args], { env, timeoutMs: 240_000 });
}

function must(r: RunResult, what: string): string {
  assert.equal(r.code, 0, `${what} under ulimit -v ${LIMIT_KB} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** The address-space limit of a running process, in bytes, from /proc/<pid>/limits. */
function addressSpaceLimit(pid: number): string {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max address space'));
  return line?.split(/\s{2,}/)[1] ?? 'unknown';
}

/** sha256sum of what `gridbox cat ARGS` prints (under the limit or not). */
async function catDigest(args: string[], env: NodeJS.ProcessEnv, underLimit = true): Promise<string> {
  const limit = underLimit ? `ulimit -v ${LIMIT_KB} && ` : '';
  const r = await runChild('bash', ['-c', `set -o pipefail; ${limit}"$0" "$@" | sha256sum`, process.execPath, cliMain(), 'cat', ...args], { env, timeoutMs: 240_000 });
  return must(r, `cat ${args[1]}`);
}

/** `gridbox serve` under the limit; resolves with its URL once it listens. */
async function limitedServe(root: string, env: NodeJS.ProcessEnv): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const child = spawn('bash', ['-c', `ulimit -v ${LIMIT_KB} && exec "$0" "$@"`, process.execPath, cliMain(), 'serve', '--root', root, '--listen', '127.0.0.1:0', '--quiet'],
    { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`serve exited ${code} under the limit: ${stderr}`)));
  });
  const url = first.replace(/^serving /, '').trim().replace(/\/+$/, '');
  return { url, pid: child.pid!, stop: async () => { child.kill('SIGTERM'); await exited; } };
}

test('every long-running command works under ulimit -v 4194304', { timeout: 600_000 }, async (t) => {
  const tmp = await makeTempDir('gridbox-limits-');
  try {
    const src = join(tmp, 'src');
    await buildSourceTree(src, { smallFiles: 20 });
    const env = cliEnv(tmp);
    const root = join(tmp, 'repo');
    const keyArgs = ['--keys', join(root, 'keys')];
    const bigDigest = must(await sh(`sha256sum < ${JSON.stringify(join(src, 'big.bin'))}`), 'sha256sum');

    await t.test('control: the limit refuses one WebAssembly memory (V8 reserves ~10 GiB per memory)', async () => {
      const r = await runChild('bash', ['-c', `ulimit -v ${LIMIT_KB} && exec "$0" -e "new WebAssembly.Memory({ initial: 1 })"`, process.execPath], { env });
      assert.notEqual(r.code, 0, 'a WebAssembly memory fit under the limit: the limit is not applied');
      assert.match(r.stderr, /WebAssembly\.Memory\(\): (could not allocate memory|Out of memory)/);
    });

    await t.test('publish', async () => {
      must(await limited(['mkfs', FQRN, '--root', root], env), 'mkfs');
      // 8 workers, as on an 8-core batch node: each worker is a V8 isolate with its own reservations.
      must(await limited(['publish', FQRN, src, '--root', root, '--workers', '8', '--chunk-min', '65536', '--chunk-avg', '262144', '--chunk-max', '1048576'], env), 'publish');
    });

    await t.test('ingest from a tar stream', async () => {
      must(await limited(['ingest', FQRN, '-', '--root', root, '--at', '/ingested'], env, `tar -C ${JSON.stringify(join(src, 'sub'))} -cf - .`), 'ingest');
    });

    const serve = await limitedServe(root, env);
    try {
      await t.test('serve, and cat and get through it', async () => {
        assert.equal(addressSpaceLimit(serve.pid), String(LIMIT_KB * 1024));
        const common = ['--server', serve.url, ...keyArgs, '--cache', join(tmp, 'cache-cat')];
        assert.equal(await catDigest([FQRN, '/big.bin', ...common], env), bigDigest, 'cat gave the published bytes');
        assert.equal(must(await limited(['cat', FQRN, '/ingested/x1', ...common], env), 'cat of an ingested file'), 'linked twice\n');
        const dest = join(tmp, 'got');
        must(await limited(['get', FQRN, '/many', dest, '--quiet', ...common], env), 'get');
        must(await sh(`diff -r ${JSON.stringify(join(src, 'many'))} ${JSON.stringify(dest)}`), 'diff of get');
      });

      await t.test('snapshot (stratum 1)', async () => {
        const replica = join(tmp, 'replica');
        must(await limited(['snapshot', FQRN, '--from', serve.url, '--root', replica, ...keyArgs, '--quiet'], env), 'snapshot');
        const s1 = await listenSrv({ srvDir: join(replica, 'srv') });
        try {
          assert.equal(await catDigest([FQRN, '/big.bin', '--server', `${s1.url}${FQRN}`, ...keyArgs, '--cache', join(tmp, 'cache-s1')], env, false), bigDigest);
        } finally { await s1.close(); }
        assert.deepEqual(await readFile(join(replica, 'srv', FQRN, '.cvmfspublished')), await readFile(join(root, 'srv', FQRN, '.cvmfspublished')));
      });

      await t.test('mount daemon', { skip: fuseSkipReason() }, async () => {
        const mnt = join(tmp, 'mnt');
        await mkdir(mnt);
        must(await limited(['mount', FQRN, mnt, '--server', serve.url, ...keyArgs, '--cache', join(tmp, 'cache-mnt')], env), 'mount');
        try {
          const st = JSON.parse(must(await gridbox(['status', mnt, '--json'], env), 'status')) as { pid: number };
          assert.equal(addressSpaceLimit(st.pid), String(LIMIT_KB * 1024), 'the daemon inherited the limit');
          must(await sh(`diff -r --no-dereference -x fifo -x ingested ${JSON.stringify(src)} ${JSON.stringify(mnt)}`), 'diff -r of the mount');
          const r = await sh(`cmp ${JSON.stringify(join(src, 'big.bin'))} ${JSON.stringify(join(mnt, 'big.bin'))} && echo same`);
          assert.equal(r.stdout.trim(), 'same', r.stderr);
        } finally {
          await gridbox(['umount', mnt], env);
        }
      });
    } finally {
      await serve.stop();
    }

    await t.test('sync from a loopback docker-registry', { skip: haveRegistry() ? false : 'docker-registry not installed' }, async () => {
      const regDir = join(tmp, 'registry');
      const reg = await startRegistry(regDir);
      try {
        await pushImage(reg, 'org/test', 'latest', await standardLayers(), imageConfig('amd64', ['PATH=/bin']));
        const images = join(tmp, 'repo2');
        const fqrn = 'images.limits.test';
        must(await gridbox(['mkfs', fqrn, '--root', images], env), 'mkfs');
        const list = join(tmp, 'docker_images.txt');
        await writeFile(list, `${reg.host}/org/test:latest\n`);
        must(await limited(['sync', list, '--repo', fqrn, '--root', images, '--platform', 'linux/amd64'], env), 'sync');
        const tree = (await readSyncState(repoLayout(images, fqrn))).images[`${reg.host}/org/test:latest`]?.tree;
        assert.ok(tree, 'the image is in the sync state');
        const s = await listenSrv({ srvDir: join(images, 'srv') });
        try {
          const r = await limited(['cat', fqrn, `/${tree}/app/hello.txt`, '--server', `${s.url}${fqrn}`, '--keys', join(images, 'keys'), '--cache', join(tmp, 'cache-img')], env);
          assert.equal(must(r, 'cat of a synced file'), 'hello world\n');
        } finally { await s.close(); }
      } finally {
        await reg.stop();
      }
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
