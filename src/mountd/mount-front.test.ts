// `gridbox mount`'s two fronts: bin/gridbox starts the daemon's bundle itself (no node start of its own) and
// prints the daemon's report; main.js is the node front for everything else. Both print the same, refuse
// the same things with the same exit codes, and a daemon that ran without a fresh bundle leaves one behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, cp, mkdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withTempDir } from '../testing/tmp.js';
import {
  FQRN, buildSourceTree, cliEnv, cliMain, fuseSkipReason, gridbox, mustRun, processExited, publishTree, runChild, sh, startOrigin, type RunResult,
} from '../vfs/mount-fixture.test.js';

const skip = fuseSkipReason();
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface World { tmp: string; mnt: string; env: NodeJS.ProcessEnv; args: string[]; nodeLog: string; close(): Promise<void> }

/** A published tree, its origin, and a PATH whose `node` logs every start to `nodeLog`. */
async function world(tmp: string): Promise<World> {
  const src = join(tmp, 'src'), mnt = join(tmp, 'mnt'), wrap = join(tmp, 'path');
  await mkdir(mnt);
  await mkdir(wrap);
  await buildSourceTree(src, { smallFiles: 3, depth: 1, bigBytes: 1000 });
  const nodeLog = join(tmp, 'node-starts');
  await writeFile(join(wrap, 'node'), `#!/bin/sh\necho "$*" >> ${nodeLog}\nexec ${process.execPath} "$@"\n`);
  await chmod(join(wrap, 'node'), 0o755);
  const env = cliEnv(tmp, { PATH: `${wrap}:${process.env.PATH ?? '/usr/bin:/bin'}` });
  const p = await publishTree(join(tmp, 'repo'), src, env);
  const origin = await startOrigin(p.srvDir);
  await rm(nodeLog, { force: true });
  const args = ['mount', FQRN, mnt, '--server', origin.url, '--key', p.keyFile, '--cache', join(tmp, 'cache')];
  return { tmp, mnt, env, args, nodeLog, close: () => origin.close() };
}

const nodeStarts = (w: World): string[] => (existsSync(w.nodeLog) ? readFileSync(w.nodeLog, 'utf8').trim().split('\n') : []);
const mountedLine = (w: World): RegExp => new RegExp(`^mounted ${FQRN.replace(/\./g, '\\.')} revision \\d+ at ${w.mnt} \\(daemon pid (\\d+), log (\\S+)\\)\\n$`);

async function mountedCount(mnt: string): Promise<number> {
  return Number((await sh(`grep -c ' ${mnt} ' /proc/self/mountinfo`)).stdout.trim());
}

test('bin/gridbox mount starts the daemon from its bundle with no node front; main.js prints the same', { skip }, async () => {
  assert.ok(existsSync(join(ROOT, 'dist/cli/mountd-bundle.cjs')), 'scripts/deps.sh builds the mount daemon bundle');
  await withTempDir(async (tmp) => {
    const w = await world(tmp);
    try {
      const r = await mustRun(gridbox(w.args, w.env), 'mount through bin/gridbox');
      const m = mountedLine(w).exec(r);
      assert.ok(m, r);
      const starts = nodeStarts(w);
      assert.equal(starts.length, 1, `one node process (the daemon): ${starts.join(' | ')}`);
      assert.match(starts[0], /mountd-bundle\.cjs mount mount\.test\.org .* --foreground --ready-fd 3$/);
      const st = JSON.parse(await mustRun(gridbox(['status', w.mnt, '--json'], w.env), 'status')) as { pid: number };
      assert.equal(st.pid, Number(m[1]));
      assert.match(readFileSync(m[2], 'utf8'), /mounted mount\.test\.org revision \d+ at .* ms after the daemon started/, 'the daemon logs to its own file');
      assert.equal((await sh(`cat ${w.mnt}/a.txt`)).stdout, 'hello from the repository\n');
      await mustRun(gridbox(['umount', w.mnt], w.env), 'umount');
      assert.ok(processExited(st.pid));

      const viaMain = await mustRun(runChild(process.execPath, [cliMain(), ...w.args], { env: w.env }), 'mount through main.js');
      assert.match(viaMain, mountedLine(w));
      await mustRun(gridbox(['umount', w.mnt], w.env), 'umount');
    } finally {
      await gridbox(['umount', w.mnt], w.env);
      await w.close();
    }
  }, 'gridbox-front-');
});

test('both fronts refuse with the daemon\'s message and exit code and leave nothing mounted', { skip }, async () => {
  await withTempDir(async (tmp) => {
    const w = await world(tmp);
    const viaMain = (args: string[]): Promise<RunResult> => runChild(process.execPath, [cliMain(), ...args], { env: w.env });
    try {
      for (const [name, run] of [['bin/gridbox', (a: string[]) => gridbox(a, w.env)], ['main.js', viaMain]] as const) {
        const missing = await run(w.args.map((a) => (a === w.mnt ? join(tmp, 'nope') : a)));
        assert.equal(missing.code, 1, `${name}: ${missing.stderr}`);
        assert.match(missing.stderr, /^gridbox: Cannot mount at ".*nope": no such directory \[MOUNT_FAILED\]/, name);
        const badKey = await run(w.args.map((a) => (a.endsWith('.pub') ? join(tmp, 'none.pub') : a)));
        assert.notEqual(badKey.code, 0, name);
        assert.match(badKey.stderr, /Cannot read master public key ".*none\.pub" \[CONFIG_INVALID\]/, name);
        assert.equal(await mountedCount(w.mnt), 0, `${name}: nothing left mounted after a refusal`);
        const usage = await run([...w.args, '--no-such-flag']);
        assert.equal(usage.code, 2, `${name}: ${usage.stderr}`);
        assert.match(usage.stderr, /unknown option '--no-such-flag'/, name);
      }
      // The key error's exit code is the same through both fronts.
      const a = await gridbox(w.args.map((x) => (x.endsWith('.pub') ? join(tmp, 'none.pub') : x)), w.env);
      const b = await viaMain(w.args.map((x) => (x.endsWith('.pub') ? join(tmp, 'none.pub') : x)));
      assert.equal(a.code, b.code);

      const first = await mustRun(gridbox(w.args, w.env), 'first mount');
      const pid = Number(mountedLine(w).exec(first)?.[1]);
      for (const run of [(x: string[]) => gridbox(x, w.env), viaMain]) {
        const second = await run(w.args);
        assert.equal(second.code, 1, second.stderr);
        assert.match(second.stderr, new RegExp(`is already mounted by pid ${pid} \\(${FQRN.replace(/\./g, '\\.')}\\) \\[MOUNT_POINT_BUSY\\]`), second.stderr);
      }
      assert.equal(await mountedCount(w.mnt), 1, 'the first mount was not stacked on');
      assert.equal((await sh(`cat ${w.mnt}/a.txt`)).stdout, 'hello from the repository\n', 'and still serves');
    } finally {
      await gridbox(['umount', w.mnt], w.env);
      await w.close();
    }
  }, 'gridbox-front-');
});

test('a daemon that started without a bundle builds one, and the next mount starts from it', { skip, timeout: 240_000 }, async () => {
  await withTempDir(async (tmp) => {
    // A copy of the install (the suite's own bundle is shared by every test running now).
    const inst = join(tmp, 'install');
    await mkdir(inst);
    await cp(join(ROOT, 'dist'), join(inst, 'dist'), { recursive: true });
    await cp(join(ROOT, 'bin'), join(inst, 'bin'), { recursive: true });
    await cp(join(ROOT, 'package.json'), join(inst, 'package.json'));
    await symlink(join(ROOT, 'node_modules'), join(inst, 'node_modules'));
    const bundle = join(inst, 'dist/cli/mountd-bundle.cjs');
    await rm(bundle, { force: true });
    const w = await world(tmp);
    const bin = join(inst, 'bin/gridbox');
    try {
      await mustRun(runChild(bin, w.args, { env: w.env }), 'mount with no bundle');
      // The node front (the daemon it starts runs under its own execPath, not this PATH's node).
      assert.deepEqual(nodeStarts(w).map((l) => l.split(' ').slice(0, 2).join(' ')), [`${join(inst, 'dist/cli/main.js')} mount`]);
      for (let i = 0; i < 600 && !existsSync(bundle); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(existsSync(bundle), 'the daemon had a bundle built once it was ready');
      await mustRun(runChild(bin, ['umount', w.mnt], { env: w.env }), 'umount');
      await rm(w.nodeLog, { force: true });
      const again = await mustRun(runChild(bin, w.args, { env: w.env }), 'mount with the bundle');
      assert.match(again, mountedLine(w));
      const starts = nodeStarts(w);
      assert.equal(starts.length, 1, starts.join(' | '));
      assert.ok(starts[0].startsWith(`${bundle} mount `), starts[0]);
      await mustRun(runChild(bin, ['umount', w.mnt], { env: w.env }), 'umount');

      // A compiled source changes (an upgrade, a rebuild): the stale bundle runs main.js inside the same node
      // process, the mount works, and a fresh bundle replaces the stale one for the mount after.
      const before = statSync(bundle).mtimeMs;
      const source = join(inst, 'dist/mountd/serve-mount.js');
      // An older mtime than now: the builder refuses sources that are still being written (mtime >= its start).
      await utimes(source, new Date(), new Date(Date.now() - 60_000));
      const stale = await mustRun(runChild(bin, w.args, { env: w.env }), 'mount with a stale bundle');
      assert.match(stale, mountedLine(w));
      assert.match(readFileSync(w.nodeLog, 'utf8'), new RegExp(`^${bundle} mount `, 'm'), 'the shell front started the stale bundle');
      for (let i = 0; i < 600 && statSync(bundle).mtimeMs === before; i++) await new Promise((r) => setTimeout(r, 100));
      assert.notEqual(statSync(bundle).mtimeMs, before, 'the daemon had the stale bundle rebuilt');
      const firstLine = readFileSync(bundle, 'utf8').split('\n', 1)[0];
      const manifest = JSON.parse(firstLine.slice(firstLine.indexOf('['))) as Array<[string, number, number]>;
      assert.equal(manifest.find(([f]) => f === source)?.[2], statSync(source).mtimeMs, 'the new bundle lists the changed source as it is now');
      await mustRun(runChild(bin, ['umount', w.mnt], { env: w.env }), 'umount');
    } finally {
      await runChild(bin, ['umount', w.mnt], { env: w.env });
      await w.close();
    }
  }, 'gridbox-front-');
});
