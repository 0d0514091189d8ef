// Round trip through the client CLI: a tree with a chunked file, hardlinks, a symlink and a nested catalog,
// published with `gridbox mkfs`/`publish`, served on 127.0.0.1, read back with `gridbox ls|stat|cat|get`
// run as child processes (the server lives in this process, so the children must not block it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readFile, readlink, readdir, symlink, utimes, writeFile, link, chmod } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { listenSrv } from '../../server/srv-handler.js';
import { withTempDir } from '../../testing/tmp.js';

const FQRN = 'roundtrip.example.org';
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'main.js');
const run = promisify(execFile);

async function gridbox(args: string[]): Promise<{ stdout: Buffer; stderr: string }> {
  const r = await run(process.execPath, [MAIN, ...args], { encoding: 'buffer', maxBuffer: 64 << 20 });
  return { stdout: r.stdout, stderr: r.stderr.toString() };
}

async function makeTree(src: string): Promise<Buffer> {
  const big = randomBytes(3 * 1024 * 1024 + 12345);
  await mkdir(join(src, 'dir', 'sub'), { recursive: true });
  await mkdir(join(src, 'nested', 'deeper'), { recursive: true });
  await writeFile(join(src, 'nested', '.cvmfscatalog'), '');
  await writeFile(join(src, 'big.bin'), big);
  await writeFile(join(src, 'dir', 'hello.txt'), 'hello world\n');
  await writeFile(join(src, 'dir', 'sub', 'empty'), '');
  await writeFile(join(src, 'nested', 'deeper', 'script.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(src, 'nested', 'deeper', 'script.sh'), 0o755);
  await link(join(src, 'dir', 'hello.txt'), join(src, 'dir', 'hello-link.txt'));
  await symlink('dir/hello.txt', join(src, 'link-to-hello'));
  for (const [p, t] of [['big.bin', 1_600_000_000], ['dir/hello.txt', 1_500_000_000], ['nested/deeper/script.sh', 1_400_000_000]] as const) {
    await utimes(join(src, p), t, t);
  }
  return big;
}

/** Relative path → description of type, mode, size, mtime, content/target, for comparing two trees. */
async function describe(root: string, rel = ''): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of (await readdir(join(root, rel))).sort()) {
    const p = rel === '' ? name : `${rel}/${name}`;
    const st = await lstat(join(root, p));
    if (st.isSymbolicLink()) out.set(p, `link ${await readlink(join(root, p))}`);
    else if (st.isDirectory()) { out.set(p, `dir ${(st.mode & 0o7777).toString(8)}`); for (const [k, v] of await describe(root, p)) out.set(k, v); }
    else out.set(p, `file ${(st.mode & 0o7777).toString(8)} ${st.size} ${Math.floor(st.mtimeMs / 1000)} nlink=${st.nlink} ${(await readFile(join(root, p))).toString('base64').slice(0, 64)}`);
  }
  return out;
}

test('a published tree with a chunked file round-trips through gridbox ls, stat, cat and get', { timeout: 180_000 }, async () => withTempDir(async (dir) => {
  const src = join(dir, 'src');
  const root = join(dir, 'repo');
  const big = await makeTree(src);
  await gridbox(['mkfs', FQRN, '--root', root]);
  await gridbox(['publish', FQRN, src, '--root', root, '--chunk-min', '262144', '--chunk-avg', '524288', '--chunk-max', '1048576']);
  const server = await listenSrv({ srvDir: join(root, 'srv') });
  try {
    const common = ['--server', `${server.url}`, '--keys', join(root, 'keys'), '--cache', join(dir, 'cache')];
    const ls = (await gridbox(['ls', FQRN, '/', ...common])).stdout.toString();
    assert.match(ls, /^-rw.* big\.bin$/m);
    assert.match(ls, /^l.* link-to-hello -> dir\/hello\.txt$/m);
    assert.match(ls, /^d.* nested$/m);
    assert.doesNotMatch(ls, /\.cvmfscatalog/);
    const stat = (await gridbox(['stat', FQRN, '/big.bin', ...common])).stdout.toString();
    const chunks = Number(/^Chunks:\s+(\d+)$/m.exec(stat)?.[1]);
    assert.ok(chunks > 1, `expected a chunked file:\n${stat}`);
    assert.match(stat, new RegExp(`^Size:\\s+${big.length}$`, 'm'));
    const cat = (await gridbox(['cat', FQRN, '/big.bin', ...common])).stdout;
    assert.ok(cat.equals(big), 'cat returns the chunked file byte for byte');
    assert.equal((await gridbox(['cat', FQRN, '/nested/deeper/script.sh', ...common])).stdout.toString(), '#!/bin/sh\necho hi\n');
    const dest = join(dir, 'copy');
    await gridbox(['get', FQRN, '/', dest, '--quiet', ...common]);
    const want = await describe(src);
    want.delete('nested/.cvmfscatalog');
    const got = await describe(dest);
    got.delete('nested/.cvmfscatalog');
    // Directory mtimes change with publishing layouts; compare everything else entry by entry.
    assert.deepEqual([...got.keys()], [...want.keys()]);
    for (const [k, v] of want) assert.equal(got.get(k), v, k);
    const a = await lstat(join(dest, 'dir', 'hello.txt'));
    const b = await lstat(join(dest, 'dir', 'hello-link.txt'));
    assert.equal(a.ino, b.ino, 'hardlinks come back as one inode');
    await assert.rejects(gridbox(['cat', FQRN, '/missing', ...common]), (e: { code?: number; stderr?: Buffer }) => {
      assert.equal(e.code, 1);
      assert.match(String(e.stderr), /NOT_FOUND/);
      return true;
    });
  } finally {
    await server.close();
  }
}));
