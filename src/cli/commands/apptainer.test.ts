// End-to-end tests of the runtime through the installed `apptainer`/`singularity` shims and real bwrap: the
// HTCondor probes and job command, the GlideinWMS commands, isolation as an unprivileged user, exit codes, signals.
import { after, before, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MAIN_JS = fileURLToPath(new URL('../main.js', import.meta.url));
const IS_ROOT = process.getuid?.() === 0;
const NOBODY = 65534;

const C_SOURCES: Record<string, string> = {
  exit_37: 'int main(void){return 37;}\n',
  get_user_ns: `#include <stdio.h>
#include <sys/stat.h>
int main(void){struct stat st; if(stat("/proc/self/ns/user",&st))return 1; printf("%lu\\n",(unsigned long)st.st_ino); return 37;}
`,
  // report CODE VAR...: cwd, uid, euid and the named variables, then exits CODE.
  report: `#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc,char**argv){char b[4096]; printf("cwd=%s\\nuid=%d\\neuid=%d\\n", getcwd(b,sizeof b)?b:"?", (int)getuid(), (int)geteuid());
for(int i=2;i<argc;i++){const char*v=getenv(argv[i]); printf("%s=%s\\n",argv[i],v?v:"<unset>");} return argc>1?atoi(argv[1]):0;}
`,
};

let fx: { dir: string; bin: string; probe: string; img: string; report: string } | undefined;
let skipReason: string | undefined;

function missingCapability(): string | undefined {
  if (!existsSync('/usr/bin/bwrap')) return '/usr/bin/bwrap is not installed';
  if (spawnSync('gcc', ['--version']).status !== 0) return 'gcc is not installed';
  if (!existsSync('/bin/busybox')) return 'busybox-static is not installed';
  const probe = spawnSync('/usr/bin/bwrap', ['--unshare-user', '--ro-bind', '/', '/', '/bin/true']);
  if (probe.status !== 0) return `user namespaces are unavailable: ${probe.stderr.toString().trim()}`;
  return undefined;
}

before(() => {
  skipReason = missingCapability();
  if (skipReason) return;
  const dir = mkdtempSync(join(tmpdir(), 'gridbox-runtime-'));
  chmodSync(dir, 0o755);
  const src = join(dir, 'src');
  mkdirSync(src);
  for (const [name, code] of Object.entries(C_SOURCES)) {
    writeFileSync(join(src, `${name}.c`), code);
    execFileSync('gcc', ['-static', '-O1', '-o', join(src, name), join(src, `${name}.c`)]);
  }
  // HTCondor's probe sandbox: only dev/, proc/ and two static binaries.
  const probe = join(dir, 'probe');
  for (const d of ['dev', 'proc']) mkdirSync(join(probe, d), { recursive: true });
  copyFileSync(join(src, 'exit_37'), join(probe, 'exit_37'));
  copyFileSync(join(src, 'get_user_ns'), join(probe, 'get_user_ns'));
  chmodSync(join(probe, 'exit_37'), 0o755);
  chmodSync(join(probe, 'get_user_ns'), 0o755);
  // A busybox image shaped like a published sandbox: /.singularity.d, /srv, /cvmfs, /etc/passwd and /etc/group.
  const img = join(dir, 'img');
  for (const d of ['bin', 'etc', 'dev', 'proc', 'sys', 'tmp', 'var/tmp', 'srv', 'cvmfs', 'home', '.singularity.d/env', 'usr/share/doc', 'opt']) mkdirSync(join(img, d), { recursive: true });
  copyFileSync('/bin/busybox', join(img, 'bin/busybox'));
  for (const a of ['sh', 'cat', 'env', 'id', 'pwd', 'ls', 'echo', 'true', 'sleep', 'touch', 'ps', 'printenv', 'mount', 'grep']) symlinkSync('busybox', join(img, 'bin', a));
  copyFileSync(join(src, 'report'), join(img, 'bin/report'));
  copyFileSync(join(src, 'report'), join(img, 'bin/suid-report'));
  chmodSync(join(img, 'bin/report'), 0o755);
  chmodSync(join(img, 'bin/suid-report'), 0o4755);
  writeFileSync(join(img, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(img, 'etc/group'), 'root:x:0:\n');
  writeFileSync(join(img, '.singularity.d/env/10-docker2singularity.sh'), 'export IMGVAR="${IMGVAR:-fromimage}"\nexport PATH="/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n');
  writeFileSync(join(img, '.singularity.d/env/90-environment.sh'), 'export CGO_ENABLED=0\n');
  writeFileSync(join(img, '.singularity.d/runscript'), '#!/bin/sh\necho "runscript $*"\nexit 5\n', { mode: 0o755 });
  writeFileSync(join(img, '.singularity.d/labels.json'), '{"org.b":"2","org.a":"1"}');
  const bin = join(dir, 'bin');
  const r = spawnSync(process.execPath, [MAIN_JS, 'install-shims', bin]);
  assert.equal(r.status, 0, r.stderr.toString());
  fx = { dir, bin, probe, img, report: '/bin/report' };
});

after(() => { if (fx) rmSync(fx.dir, { recursive: true, force: true }); });

interface Result { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Runs a shim; as root, `nobody` drops to uid 65534 with setpriv, as the issue asks. */
function rt(args: string[], opts: { env?: Record<string, string>; nobody?: boolean; cwd?: string; name?: string } = {}): Result {
  const shim = join(fx!.bin, opts.name ?? 'apptainer');
  const [cmd, argv] = opts.nobody && IS_ROOT
    ? ['/usr/bin/setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', shim, ...args]]
    : [shim, args];
  const r = spawnSync(cmd, argv, { env: opts.env ?? {}, cwd: opts.cwd ?? fx!.dir, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

function ready(t: TestContext): boolean {
  if (skipReason) { t.skip(skipReason); return false; }
  return true;
}

/** A fresh job directory owned by the user the runtime runs as. */
function jobDir(name: string, nobody = false): string {
  const d = join(fx!.dir, `${name}-${Math.random().toString(36).slice(2, 8)}`);
  mkdirSync(d, { recursive: true });
  if (nobody && IS_ROOT) execFileSync('chown', [`${NOBODY}:${NOBODY}`, d]);
  return d;
}

const parse = (out: string): Record<string, string> => Object.fromEntries(out.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

test('--version prints one apptainer line under env -i; version prints the bare version', (t) => {
  if (!ready(t)) return;
  const v = spawnSync('/usr/bin/env', ['-i', join(fx!.bin, 'apptainer'), '--version'], { encoding: 'utf8' });
  assert.equal(v.status, 0);
  assert.match(v.stdout, /^apptainer version \d+\.\d+\.\d+\n$/);
  assert.equal(v.stderr, '');
  const s = spawnSync('/usr/bin/env', ['-i', 'PATH=/usr/bin:/bin', join(fx!.bin, 'singularity'), 'version'], { encoding: 'utf8' });
  assert.equal(s.stdout, `${v.stdout.slice('apptainer version '.length)}`);
});

test('--help on every runtime command prints Apptainer-style help (usage, description, options, examples) and exits 0', (t) => {
  if (!ready(t)) return;
  for (const sub of ['exec', 'run', 'shell', 'test', 'inspect', 'version']) {
    const r = rt([sub, '--help'], { nobody: true });
    assert.equal(r.code, 0, `${sub}: ${r.stderr}`);
    assert.equal(r.stderr, '', sub);
    const sections = ['Usage:', 'Description:', 'Examples:'].concat(sub === 'version' ? [] : ['Options:']);
    for (const h of sections) assert.match(r.stdout, new RegExp(`^${h}$`, 'm'), `${sub}: ${h}`);
    assert.match(r.stdout, new RegExp(`^  apptainer ${sub}\\b`, 'm'), `${sub}: usage line names the shim`);
  }
  const exec = rt(['exec', '-h'], { name: 'singularity' });
  assert.match(exec.stdout, /^  -B, --bind strings +a user-bind path/m);
  assert.match(exec.stdout, /^  singularity exec \[exec options\.\.\.\] <container> <command>$/m);
  const top = rt(['--help']);
  assert.equal(top.code, 0);
  for (const sub of ['exec', 'run', 'shell', 'test', 'inspect', 'version']) assert.match(top.stdout, new RegExp(`^  ${sub} +\\S`, 'm'));
  const gb = spawnSync(process.execPath, [MAIN_JS, 'exec', '--help'], { encoding: 'utf8' });
  assert.equal(gb.status, 0, gb.stderr);
  assert.match(gb.stdout, /^  gridbox exec \[exec options/m);
});

test('HTCondor sandbox probe: exec -C <probe> /exit_37 exits 37 silently with an empty environment, also unprivileged', (t) => {
  if (!ready(t)) return;
  for (const nobody of [false, true]) {
    const r = rt(['exec', '-C', fx!.probe, '/exit_37'], { nobody });
    assert.deepEqual([r.code, r.stdout, r.stderr], [37, '', ''], `nobody=${nobody}`);
    const f = rt(['exec', '--contain', '--ipc', '--cleanenv', fx!.probe, '/exit_37'], { nobody });
    assert.deepEqual([f.code, f.stdout, f.stderr], [37, '', ''], `fallback, nobody=${nobody}`);
  }
});

test('HTCondor user-namespace probe: /get_user_ns prints an inode different from the host one as the first line', (t) => {
  if (!ready(t)) return;
  const hostInode = String(statSync('/proc/self/ns/user').ino);
  const r = rt(['exec', '-C', fx!.probe, '/get_user_ns'], { nobody: true });
  assert.equal(r.code, 37);
  const first = r.stdout.split('\n')[0];
  assert.match(first, /^\d+$/);
  assert.notEqual(first, hostInode);
});

test('HTCondor pre-job test: -s -q test exits 0 without a test script and without a shell in the image', (t) => {
  if (!ready(t)) return;
  const exec = jobDir('test', true);
  const r = rt(['-s', '-q', 'test', '-S', '/tmp', '-S', '/var/tmp', '-W', exec, '--pwd', exec, '-B', exec, '--home', exec, '-C', fx!.probe], { nobody: true });
  assert.deepEqual([r.code, r.stdout, r.stderr], [0, '', '']);
});

test('HTCondor job command: cwd, HOME, APPTAINERENV_ variables under -C, /tmp backed by the workdir, exit code', (t) => {
  if (!ready(t)) return;
  const exec = jobDir('exec', true);
  const env = { FOO: 'outer', APPTAINERENV_FOO: 'outer', APPTAINERENV_PS1: 'slot1$ ', APPTAINER_CACHEDIR: exec, APPTAINER_TMPDIR: exec, BAR: 'hostonly', _CONDOR_SCRATCH_DIR: exec, APPTAINERENV__CONDOR_SCRATCH_DIR: exec };
  const r = rt(['-s', 'exec', '-S', '/tmp', '-S', '/var/tmp', '-W', exec, '--pwd', exec, '-B', exec, '--home', exec, '-C', fx!.img,
    '/bin/sh', '-c', 'echo kept > /tmp/marker; exec report 42 HOME FOO BAR PS1 _CONDOR_SCRATCH_DIR APPTAINER_CONTAINER LANG'], { env, nobody: true });
  assert.equal(r.stderr, '');
  assert.equal(r.code, 42);
  const v = parse(r.stdout);
  assert.equal(v.cwd, exec);
  assert.equal(v.HOME, exec);
  assert.equal(v.FOO, 'outer');
  assert.equal(v.BAR, '<unset>');
  assert.equal(v.PS1, 'slot1$ ');
  assert.equal(v._CONDOR_SCRATCH_DIR, exec);
  assert.equal(v.APPTAINER_CONTAINER, fx!.img);
  assert.equal(v.uid, String(IS_ROOT ? NOBODY : process.getuid!()));
  assert.equal(readFileSync(join(exec, 'scratch/tmp/marker'), 'utf8'), 'kept\n');
});

test('HTCondor job with a target dir: -B <slot>:/srv --pwd /srv/<sub>, and run uses the runscript', (t) => {
  if (!ready(t)) return;
  const slot = jobDir('slot', true);
  mkdirSync(join(slot, 'dir_1'));
  if (IS_ROOT) execFileSync('chown', [`${NOBODY}:${NOBODY}`, join(slot, 'dir_1')]);
  const r = rt(['-s', 'exec', '-S', '/tmp', '-W', join(slot, 'dir_1'), '--pwd', '/srv/dir_1', '-B', `${slot}:/srv`, '-C', fx!.img, 'report', '3', 'HOME'], { nobody: true });
  assert.equal(r.code, 3, r.stderr);
  assert.equal(parse(r.stdout).cwd, '/srv/dir_1');
  const run = rt(['-s', 'run', '-C', fx!.img, 'a', 'b'], { nobody: true });
  assert.deepEqual([run.code, run.stdout], [5, 'runscript a b\n']);
});

test('GlideinWMS binary test: cat /proc/self/uid_map maps the caller to the same uid (unprivileged for a normal user)', (t) => {
  if (!ready(t)) return;
  const setup = jobDir('setup', true);
  const cvmfs = jobDir('cvmfsroot');
  const r = rt(['exec', '--home', `${setup}:/srv`, '--pwd', '/srv', '--ipc', '--contain', '--pid', '--bind', `${cvmfs}:/cvmfs,/etc/hosts,/etc/localtime`, fx!.img, 'cat', '/proc/self/uid_map'],
    { nobody: true, env: { PATH: '/usr/bin:/bin', GWMS_SINGULARITY_REEXEC: '1' } });
  assert.equal(r.code, 0, r.stderr);
  const fields = `,${r.stdout.split('\n')[0].trim().split(/\s+/).join(',')},`;
  const uid = IS_ROOT ? NOBODY : process.getuid!();
  assert.equal(fields, `,${uid},${uid},1,`);
});

test('GlideinWMS user job: duplicate binds warn once, host env passes without --cleanenv, HOME=/srv, exit code passes through', (t) => {
  if (!ready(t)) return;
  const execDir = jobDir('gwms', true);
  writeFileSync(join(execDir, '.gwms-user-job-wrapper.sh'), '#!/bin/sh\ncd /srv && exec "$@"\n', { mode: 0o755 });
  const r = rt(['exec', '--home', `${execDir}:/srv`, '--pwd', '/srv', '--ipc', '--contain', '--pid', '--bind', '/etc/hosts,/etc/hosts,/etc/localtime', fx!.img,
    '/srv/.gwms-user-job-wrapper.sh', 'report', '7', 'HOME', 'GWMS_SINGULARITY_REEXEC', 'SINGULARITY_CONTAINER', 'CGO_ENABLED', 'IMGVAR'],
    { nobody: true, env: { PATH: '/usr/bin:/bin', GWMS_SINGULARITY_REEXEC: '1', CGO_ENABLED: '1', IMGVAR: 'host' } });
  assert.equal(r.code, 7);
  assert.equal(r.stderr, 'WARNING: destination /etc/hosts is already in the mount point list\n');
  const v = parse(r.stdout);
  assert.deepEqual([v.cwd, v.HOME, v.GWMS_SINGULARITY_REEXEC, v.SINGULARITY_CONTAINER], ['/srv', '/srv', '1', fx!.img]);
  assert.equal(v.CGO_ENABLED, '0', 'image env beats host env');
  assert.equal(v.IMGVAR, 'fromimage', 'host values do not leak into ${X:-default} of the image scripts');
});

test("the caller's NODE_OPTIONS and NODE_EXTRA_CA_CERTS reach the container as they were, not the runtime's own node", (t) => {
  if (!ready(t)) return;
  // Run by the runtime's node, this preload would fail the start; the CA file would cost a third of node's start.
  const env = { PATH: '/usr/bin:/bin', NODE_OPTIONS: '--require /nonexistent-gridbox-hook.js', NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt' };
  const r = rt(['exec', fx!.img, 'report', '3', 'NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS', 'GRIDBOX_SHIM_SAVED_NODE_OPTIONS'], { env });
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stderr, '');
  const v = parse(r.stdout);
  assert.deepEqual([v.NODE_OPTIONS, v.NODE_EXTRA_CA_CERTS, v.GRIDBOX_SHIM_SAVED_NODE_OPTIONS], [env.NODE_OPTIONS, env.NODE_EXTRA_CA_CERTS, '<unset>']);
  // Unset stays unset, also when a saved name was already in the caller's environment.
  const u = parse(rt(['exec', fx!.img, 'report', '0', 'NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS'], { env: { PATH: '/usr/bin:/bin', GRIDBOX_SHIM_SAVED_NODE_OPTIONS: 'stray' } }).stdout);
  assert.deepEqual([u.NODE_OPTIONS, u.NODE_EXTRA_CA_CERTS], ['<unset>', '<unset>']);
});

test('isolation as an unprivileged user: pid namespace, private /tmp, read-only image and ro binds, setuid gains nothing', (t) => {
  if (!ready(t)) return;
  const marker = join(tmpdir(), `gridbox-host-marker-${process.pid}`);
  writeFileSync(marker, 'x');
  const data = jobDir('ro', true);
  try {
    const script = [
      'ls /proc | grep -c "^[0-9]"',
      `test -e /tmp/${marker.split('/').pop()} && echo tmp-shared || echo tmp-private`,
      'touch /etc/x 2>/dev/null && echo image-writable || echo image-ro',
      'touch /data/x 2>/dev/null && echo bind-writable || echo bind-ro',
      'touch /tmp/ok && echo tmp-writable',
    ].join('; ');
    const r = rt(['exec', '-C', '-B', `${data}:/data:ro`, fx!.img, 'sh', '-c', script], { nobody: true });
    assert.equal(r.code, 0, r.stderr);
    const [procs, ...rest] = r.stdout.trim().split('\n');
    assert.ok(Number(procs) <= 4, `only the container's processes are visible, saw ${procs}`);
    assert.deepEqual(rest, ['tmp-private', 'image-ro', 'bind-ro', 'tmp-writable']);
    const s = rt(['exec', '-C', fx!.img, '/bin/suid-report', '0'], { nobody: true });
    assert.equal(parse(s.stdout).euid, String(IS_ROOT ? NOBODY : process.getuid!()));
    const noPid = rt(['exec', fx!.img, 'sh', '-c', 'ls /proc | grep -c "^[0-9]"'], { nobody: true });
    assert.ok(Number(noPid.stdout.trim()) > 4, 'without --pid the host processes are visible');
  } finally { rmSync(marker, { force: true }); }
});

test('exit codes: payload code, 128+N on signal, 255 with one FATAL line for runtime errors', (t) => {
  if (!ready(t)) return;
  assert.equal(rt(['exec', fx!.img, 'sh', '-c', 'kill -TERM $$']).code, 143);
  assert.equal(rt(['exec', '-p', fx!.img, 'sh', '-c', 'kill -KILL $$']).code, 137);
  assert.equal(rt(['exec', '-p', fx!.img, 'sh', '-c', 'exit 201']).code, 201, 'a multi-digit code from the status fd, whole');
  const fatal = (r: Result): void => {
    assert.equal(r.code, 255);
    assert.equal(r.stderr.split('\n').filter((l) => l !== '').length, 1, r.stderr);
    assert.match(r.stderr, /^FATAL: {3}/);
  };
  fatal(rt(['exec', join(fx!.dir, 'nope'), '/bin/true']));
  fatal(rt(['exec', '-B', '/nonexistent-src:/x', fx!.img, '/bin/true']));
  fatal(rt(['exec', fx!.img, 'nosuchcommand']));
  fatal(rt(['exec', fx!.probe, 'nosuchcommand']));
  fatal(rt(['exec', '--pwd', '/nowhere', fx!.img, 'true']));
  const sif = join(fx!.dir, 'x.sif');
  writeFileSync(sif, `#!/usr/bin/env run-singularity\nSIF_MAGIC\n`);
  const s = rt(['exec', sif, '/bin/true']);
  fatal(s);
  assert.match(s.stderr, /SIF images are not supported/);
  assert.equal(rt(['exec', fx!.img]).code, 1, 'exec without a command is a usage error');
});

test('signals sent to the runtime reach the payload, with and without a PID namespace', async (t) => {
  if (!ready(t)) return;
  for (const flags of [[], ['--pid'], ['-C']]) {
    const child = spawn(join(fx!.bin, 'apptainer'), ['exec', ...flags, fx!.img, 'sh', '-c', 'trap "exit 42" TERM; echo ready; while :; do sleep 0.05; done'], { env: {}, stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(); }));
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.equal(code, 42, `flags ${flags.join(' ')}`);
  }
});

test('binds onto paths missing from the read-only image work at any depth', (t) => {
  if (!ready(t)) return;
  const data = jobDir('deep');
  writeFileSync(join(data, 'f'), 'deep\n');
  const r = rt(['exec', '-B', `${data}:/usr/share/new/deeper/dir,${data}:/brand/new:ro`, fx!.img, 'sh', '-c', 'cat /usr/share/new/deeper/dir/f /brand/new/f; ls /usr/share; touch /usr/share/x 2>/dev/null || echo ro'], { nobody: true });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'deep\ndeep\ndoc\nnew\nro\n');
});

test('--nv binds a fake driver layout: libraries in /.singularity.d/libs on LD_LIBRARY_PATH, tools in /usr/bin', (t) => {
  if (!ready(t)) return;
  const nv = jobDir('nvroot');
  mkdirSync(join(nv, 'usr/lib/x86_64-linux-gnu'), { recursive: true });
  mkdirSync(join(nv, 'usr/bin'), { recursive: true });
  writeFileSync(join(nv, 'usr/lib/x86_64-linux-gnu/libcuda.so.1'), 'fake');
  writeFileSync(join(nv, 'usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1'), 'fake');
  writeFileSync(join(nv, 'usr/lib/x86_64-linux-gnu/libc.so.6'), 'not a driver lib');
  copyFileSync(join(fx!.dir, 'src/report'), join(nv, 'usr/bin/nvidia-smi'));
  chmodSync(join(nv, 'usr/bin/nvidia-smi'), 0o755);
  const r = rt(['exec', '--nv', '-C', fx!.img, 'sh', '-c', 'ls /.singularity.d/libs; echo LD=$LD_LIBRARY_PATH; nvidia-smi 0 >/dev/null && echo smi'], { nobody: true, env: { GRIDBOX_NV_ROOT: nv } });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'libcuda.so.1\nlibnvidia-ml.so.1\nLD=/.singularity.d/libs\nsmi\n');
});

test('test runs /.singularity.d/test when present and returns its status', (t) => {
  if (!ready(t)) return;
  const img = join(fx!.dir, `img-test-${process.pid}`);
  execFileSync('cp', ['-a', fx!.img, img]);
  writeFileSync(join(img, '.singularity.d/test'), '#!/bin/sh\necho "testing $*"\nexit 9\n', { mode: 0o755 });
  const r = rt(['-s', '-q', 'test', '-C', img, 'x'], { nobody: true });
  assert.deepEqual([r.code, r.stdout], [9, 'testing x\n']);
});

test('--env and --env-file reach the container and beat APPTAINERENV_ values', (t) => {
  if (!ready(t)) return;
  const envFile = join(jobDir('envfile'), 'vars');
  writeFileSync(envFile, '# site vars\nexport FROMFILE="file value"\nX=file\n');
  const r = rt(['exec', '-C', '--env', 'X=cli,Y=2', '--env-file', envFile, fx!.img, 'report', '0', 'X', 'Y', 'FROMFILE'], { env: { APPTAINERENV_X: 'env' }, nobody: true });
  assert.equal(r.code, 0, r.stderr);
  const v = parse(r.stdout);
  assert.deepEqual([v.X, v.Y, v.FROMFILE], ['cli', '2', 'file value']);
});

test('HTCondor launcher mode: a file bound onto a path missing from the image is run and marks the scratch dir', (t) => {
  if (!ready(t)) return;
  const exec = jobDir('launcher', true);
  const launcher = join(jobDir('libexec'), 'condor_container_launcher.sh');
  writeFileSync(launcher, '#!/bin/sh\ntouch "$_CONDOR_SCRATCH_DIR/.condor_container_launched"\nexec "$@"\n', { mode: 0o755 });
  const r = rt(['-s', 'exec', '-S', '/tmp', '-B', `${launcher}:/condor_container_launcher.sh`, '-W', exec, '--pwd', exec, '-B', exec, '--home', exec, '-C', fx!.img, '/condor_container_launcher.sh', 'report', '4'],
    { env: { APPTAINERENV__CONDOR_SCRATCH_DIR: exec }, nobody: true });
  assert.equal(r.code, 4, r.stderr);
  assert.ok(existsSync(join(exec, '.condor_container_launched')));
});

test('inspect shows sorted labels, the runscript and JSON', (t) => {
  if (!ready(t)) return;
  assert.equal(rt(['inspect', fx!.img]).stdout, 'org.a: 1\norg.b: 2\n');
  assert.equal(rt(['inspect', '-r', fx!.img]).stdout, '#!/bin/sh\necho "runscript $*"\nexit 5\n');
  const j = JSON.parse(rt(['inspect', '--json', fx!.img]).stdout) as { type: string; data: { attributes: { labels: Record<string, string> } } };
  assert.deepEqual([j.type, j.data.attributes.labels], ['container', { 'org.b': '2', 'org.a': '1' }]);
});

test('gridbox exec routes to the runtime and the shims work under env -i PATH=/usr/bin:/bin', (t) => {
  if (!ready(t)) return;
  const r = spawnSync('/usr/bin/env', ['-i', 'PATH=/usr/bin:/bin', process.execPath, MAIN_JS, 'exec', '-C', fx!.probe, '/exit_37'], { encoding: 'utf8' });
  assert.deepEqual([r.status, r.stdout, r.stderr], [37, '', '']);
  const shim = readFileSync(join(fx!.bin, 'singularity'), 'utf8');
  assert.ok(shim.startsWith('#!/bin/sh\n') && shim.includes(`'${process.execPath}'`));
  assert.equal(rt(['exec', '-C', fx!.probe, '/exit_37'], { name: 'singularity', env: { PATH: '/usr/bin:/bin' } }).code, 37);
});
