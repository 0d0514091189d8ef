// The whole chain on real distribution images (issue 9): the mmdebstrap corpus (Debian minbase, scientific
// Python, busybox, hostile shapes, two layers with whiteouts) pushed to a loopback docker-registry →
// `gridbox sync` → `gridbox serve` → `gridbox mount` (FUSE) → the installed `apptainer` shim run as uid 65534
// with GlideinWMS's flags and HTCondor's pre-job test → a job that checks what grid jobs rely on. One registry,
// one repository, one server and one mount for all images. Timings go to diagnostics, never into assertions.
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CORPUS_NAMES, corpusLayerFiles, corpusUnavailable, ensureCorpus, pushCorpusImage, type CorpusImage, type CorpusName } from '../testing/corpus.js';
import { haveRegistry, startRegistry, type TestRegistry } from '../testing/registry.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const FQRN = 'corpus.gridbox.test';
const NOBODY = 65534;
const execFileP = promisify(execFile);
// GRIDBOX_CORPUS_IMAGES=debian,busybox narrows the run while working on one image; CI runs them all.
const NAMES: CorpusName[] = process.env.GRIDBOX_CORPUS_IMAGES
  ? CORPUS_NAMES.filter((n) => process.env.GRIDBOX_CORPUS_IMAGES!.split(',').includes(n)) : CORPUS_NAMES;

interface Chain {
  dir: string; reg: TestRegistry; server: ChildProcess; cvmfs: string; mnt: string; bin: string;
  images: Map<CorpusName, CorpusImage>; syncSeconds: Map<CorpusName, number>;
}
let chain: Chain | undefined;
let skipReason: string | undefined;

async function gridbox(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, [MAIN, ...args], { maxBuffer: 64 << 20, env: { ...process.env, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

function missingCapability(): string | undefined {
  const corpus = corpusUnavailable();
  if (corpus) return corpus;
  if (!haveRegistry()) return 'docker-registry is not installed';
  if (!existsSync('/usr/bin/bwrap')) return '/usr/bin/bwrap is not installed';
  if (!existsSync('/dev/fuse')) return '/dev/fuse is missing';
  if (!existsSync('/usr/bin/setpriv')) return 'setpriv is not installed';
  const probe = spawnSync('/usr/bin/setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '/usr/bin/bwrap', '--unshare-user', '--ro-bind', '/', '/', '/bin/true']);
  if (probe.status !== 0) return `unprivileged user namespaces are unavailable: ${probe.stderr.toString().trim()}`;
  return undefined;
}

const publicName = (reg: TestRegistry, name: CorpusName): string => `${reg.host}/corpus/${name}:bookworm`;

before(async () => {
  skipReason = missingCapability();
  if (skipReason) return;
  const dir = mkdtempSync(join(tmpdir(), 'gridbox-real-images-'));
  chmodSync(dir, 0o755); // uid 65534 walks to its job directories and the mount
  let reg: TestRegistry | undefined;
  let server: ChildProcess | undefined;
  try {
    // The corpus builds in parallel (cached on disk after the first run) while the registry starts.
    const [images, registry] = await Promise.all([ensureCorpus(NAMES), startRegistry(join(dir, 'registry'))]);
    reg = registry;
    for (const img of images) await pushCorpusImage(reg.url, img.name, `corpus/${img.name}:bookworm`);
    const root = join(dir, 'stratum0');
    const mk = await gridbox(['mkfs', FQRN, '--root', root]);
    assert.equal(mk.code, 0, mk.stderr);
    // One sync cycle per image (the list grows), so each image's sync time can be told apart.
    const list = join(dir, 'docker_images.txt');
    const syncSeconds = new Map<CorpusName, number>();
    for (let i = 0; i < images.length; i++) {
      writeFileSync(list, images.slice(0, i + 1).map((img) => `${publicName(reg!, img.name)}\n`).join(''));
      const t0 = performance.now();
      const s = await gridbox(['sync', list, '--repo', FQRN, '--root', root]);
      syncSeconds.set(images[i].name, (performance.now() - t0) / 1000);
      assert.equal(s.code, 0, `sync of ${images[i].name}: ${s.stdout}\n${s.stderr}`);
    }
    server = spawn(process.execPath, [MAIN, 'serve', '--root', root, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const first = await new Promise<string>((resolve, reject) => {
      createInterface({ input: server!.stdout! }).once('line', resolve);
      server!.once('exit', (code) => reject(new Error(`gridbox serve exited with ${code}`)));
    });
    const url = /(http:\/\/127\.0\.0\.1:\d+)/.exec(first)?.[1];
    assert.ok(url, `gridbox serve said: ${first}`);
    const cvmfs = join(dir, 'cvmfs');
    const mnt = join(cvmfs, FQRN);
    mkdirSync(mnt, { recursive: true });
    const m = await gridbox(['mount', FQRN, mnt, '--server', `${url}/cvmfs/${FQRN}`, '--keys', join(root, 'keys'), '--cache', join(dir, 'cache')], { GRIDBOX_RUN_DIR: join(dir, 'run') });
    assert.equal(m.code, 0, m.stderr);
    const bin = join(dir, 'bin');
    const shims = await gridbox(['install-shims', bin]);
    assert.equal(shims.code, 0, shims.stderr);
    chain = { dir, reg, server, cvmfs, mnt, bin, images: new Map(images.map((img) => [img.name, img])), syncSeconds };
  } catch (e) {
    server?.kill('SIGKILL');
    await reg?.stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
});

after(async () => {
  if (!chain) return;
  await gridbox(['umount', chain.mnt], { GRIDBOX_RUN_DIR: join(chain.dir, 'run') });
  if (readFileSync('/proc/self/mountinfo', 'utf8').includes(chain.mnt)) spawnSync(process.execPath, [MAIN, 'umount', '--lazy', chain.mnt], { env: { ...process.env, GRIDBOX_RUN_DIR: join(chain.dir, 'run') } });
  chain.server.kill('SIGTERM');
  await chain.reg.stop();
  rmSync(chain.dir, { recursive: true, force: true });
});

interface Run { code: number | null; stdout: string; stderr: string; seconds: number }

/** Runs the apptainer shim as uid 65534 (setpriv), in `cwd`, with the environment GlideinWMS hands over. */
function asNobody(args: string[], cwd: string, env: Record<string, string>): Run {
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', join(chain!.bin, 'apptainer'), ...args],
    { cwd, env: { PATH: '/usr/bin:/bin', ...env }, encoding: 'utf8', timeout: 180_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, seconds: (performance.now() - t0) / 1000 };
}

function jobDir(name: string): string {
  const d = join(chain!.dir, 'jobs', name);
  mkdirSync(d, { recursive: true });
  chmodSync(join(chain!.dir, 'jobs'), 0o755);
  chownSync(d, NOBODY, NOBODY);
  return d;
}

const hostUser = (): string => readFileSync('/etc/passwd', 'utf8').split('\n').map((l) => l.split(':')).find((f) => f[2] === String(NOBODY))?.[0] ?? `uid${NOBODY}`;

/** What every job checks, then the image's own checks; exits 42 when all pass (the code must come back). */
function jobScript(name: CorpusName): string {
  const common = [
    'fail() { echo "FAIL: $*"; exit 99; }',
    '[ "$(id -u)" = "$EXPECT_UID" ] || fail "id -u is $(id -u)"',
    '[ "$(id -un)" = "$EXPECT_USER" ] || fail "id -un is $(id -un)"',
    '[ "$(whoami)" = "$EXPECT_USER" ] || fail "whoami is $(whoami)"',
    '[ "$(date +%z)" = "$EXPECT_TZ" ] || fail "date +%z is $(date +%z), the host says $EXPECT_TZ"',
    '[ "$HOME" = /srv ] || fail "HOME is $HOME"',
    '[ "$(pwd)" = /srv ] || fail "pwd is $(pwd)"',
    'echo from-the-job > /srv/written-by-job || fail "HOME is not writable"',
    '[ ! -e "/tmp/$HOST_TMP_MARKER" ] || fail "/tmp is the host\'s"',
    'echo t > /tmp/job-tmp && [ "$(cat /tmp/job-tmp)" = t ] || fail "/tmp is not writable"',
    '[ -d "/cvmfs/$FQRN/$REGISTRY_HOST/corpus" ] || fail "/cvmfs is not bound in"',
    'grep -q localhost /etc/hosts || fail "/etc/hosts has no localhost"',
  ];
  const dpkg = ['dpkg -l base-files | grep -q "^ii  base-files" || fail "dpkg -l does not list base-files"'];
  const perl = ['[ "$(perl -MPOSIX -e \'print floor(2.5)\')" = 2 ] || fail "perl POSIX"'];
  const extra: Record<CorpusName, string[]> = {
    debian: [...dpkg, ...perl, 'grep -q "^ID=debian" /etc/os-release || fail "not Debian"'],
    scientific: [...dpkg, '[ "$(python3 -c "import numpy, scipy.linalg; print(round(scipy.linalg.det(numpy.eye(3) * 2)))")" = 8 ] || fail "numpy/scipy"',
      'dpkg -l python3-scipy | grep -q "^ii" || fail "dpkg -l python3-scipy"'],
    busybox: ['[ "$(readlink /bin/sh)" = busybox ] || fail "not busybox"', '[ ! -e /var/lib/dpkg/status ] || fail "a dpkg database in busybox"'],
    // (gridbox sync publishes /etc/hosts and /etc/resolv.conf as empty files; the unpacked-sandbox run below keeps them links.)
    hostile: [...dpkg, ...perl, '[ -L /etc/passwd ] && [ -L /etc/group ] || fail "the image symlinks are gone"',
      '[ -L /var/run ] || fail "/var/run is not a symlink"', '[ "$(cat /etc/timezone)" = Pacific/Chatham ] || fail "/etc/timezone"'],
    layered: [...dpkg, '! command -v apt-get >/dev/null || fail "apt-get was purged in layer 2"',
      'grep -q "^griduser:x:2001:" /etc/passwd || fail "griduser from layer 2 missing"', '[ -d /home/griduser ] || fail "/home/griduser missing"',
      '[ -e /usr/share/doc/README.gridbox ] || fail "layer 2 README missing"', '[ ! -e /usr/share/doc/bash ] || fail "opaque /usr/share/doc shows layer 1"',
      '! dpkg -l apt 2>/dev/null | grep -q "^ii" || fail "apt still installed"'],
  };
  return [...common, ...extra[name], 'echo ALL-CHECKS-PASSED', 'exit 42'].join('\n');
}

const diag: string[] = [];
const mb = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;

for (const name of NAMES) {
  test(`real image "${name}": synced, mounted and run unprivileged with GlideinWMS's flags and HTCondor's pre-job test`, { timeout: 600_000 }, async (t: TestContext) => {
    if (skipReason) { t.skip(skipReason); return; }
    const c = chain!;
    const image = join(c.mnt, publicName(c.reg, name));
    const job = jobDir(name);
    const marker = `gridbox-host-marker-${process.pid}-${name}`;
    writeFileSync(join('/tmp', marker), 'host');
    try {
      const hostTz = spawnSync('date', ['+%z'], { encoding: 'utf8' }).stdout.trim();
      const env = {
        APPTAINERENV_EXPECT_UID: String(NOBODY), APPTAINERENV_EXPECT_USER: hostUser(), APPTAINERENV_EXPECT_TZ: hostTz,
        APPTAINERENV_HOST_TMP_MARKER: marker, APPTAINERENV_FQRN: FQRN, APPTAINERENV_REGISTRY_HOST: c.reg.host,
      };
      // GlideinWMS: `exec --contain --ipc --pid --home $PWD:/srv --pwd /srv --bind <defaults> IMAGE /bin/sh -c …`.
      const gwms = ['exec', '--contain', '--ipc', '--pid', '--home', `${job}:/srv`, '--pwd', '/srv', '--bind', `/etc/hosts,/etc/localtime,${c.cvmfs}:/cvmfs`, image, '/bin/sh', '-c', jobScript(name)];
      const cold = asNobody(gwms, job, env);
      assert.ok(existsSync(join(image, 'bin')), `${image} is not on the mount`);
      assert.equal(cold.code, 42, `job on ${name} exited ${cold.code}\nstdout: ${cold.stdout}\nstderr: ${cold.stderr}`);
      assert.match(cold.stdout, /ALL-CHECKS-PASSED/);
      assert.equal(cold.stderr, '', 'a successful run says nothing on stderr');
      assert.equal(readFileSync(join(job, 'written-by-job'), 'utf8'), 'from-the-job\n');
      assert.equal(readFileSync(join('/tmp', marker), 'utf8'), 'host', 'the host /tmp is untouched');
      const warm = asNobody(gwms, job, env);
      assert.equal(warm.code, 42, `warm job on ${name}: ${warm.stdout}${warm.stderr}`);
      // HTCondor's pre-job test (no test script in these images: exit 0, silent), then its job command line,
      // exit code passed back unchanged. After the GlideinWMS runs, so the first of those starts cold.
      const pre = asNobody(['-s', '-q', 'test', '-S', '/tmp', '-S', '/var/tmp', '-W', job, '--pwd', job, '-B', job, '--home', job, '-C', image], job, {});
      assert.deepEqual([pre.code, pre.stdout, pre.stderr], [0, '', ''], 'HTCondor pre-job test');
      const condor = asNobody(['-s', 'exec', '-S', '/tmp', '-S', '/var/tmp', '-W', job, '--pwd', job, '-B', job, '--home', job, '-C', image, '/bin/sh', '-c', 'test "$(id -u)" = 65534 && test -w /tmp && exit 7'], job, {});
      assert.equal(condor.code, 7, `HTCondor job on ${name}: ${condor.stdout}${condor.stderr}`);
      const img = c.images.get(name)!;
      if (name === 'hostile') {
        // The same image unpacked as it is in the registry (no sync layout): /etc/hosts a relative link,
        // /etc/resolv.conf an absolute dangling one, no /tmp, /home, /srv-less binds, read as a plain sandbox.
        const sandbox = join(c.dir, 'hostile-sandbox');
        mkdirSync(sandbox);
        for (const layer of await corpusLayerFiles(img)) {
          const x = spawnSync('tar', ['--extract', '--gzip', '--file', layer, '--numeric-owner', '--same-permissions', '-C', sandbox]);
          assert.equal(x.status, 0, x.stderr.toString());
        }
        assert.ok(!existsSync(join(sandbox, 'tmp')) && !existsSync(join(sandbox, 'home')), 'the sandbox has no /tmp and no /home');
        const resolvSum = spawnSync('sh', ['-c', 'cksum < /etc/resolv.conf'], { encoding: 'utf8' }).stdout.trim();
        const script = jobScript(name).replace('echo ALL-CHECKS-PASSED', [
          '[ -L /etc/hosts ] && [ -L /etc/resolv.conf ] || fail "hosts/resolv.conf are not links in the sandbox"',
          '! grep -q image-hosts-file /etc/hosts || fail "the image hosts file shows, not the host\'s"',
          '[ "$(cksum < /etc/resolv.conf)" = "$RESOLV_SUM" ] || fail "resolv.conf is not the host\'s"',
          'echo ALL-CHECKS-PASSED'].join('\n'));
        const direct = asNobody(['exec', '--contain', '--ipc', '--pid', '--home', `${job}:/srv`, '--pwd', '/srv', '--bind', `/etc/hosts,/etc/localtime,${c.cvmfs}:/cvmfs`, sandbox, '/bin/sh', '-c', script],
          job, { ...env, APPTAINERENV_RESOLV_SUM: resolvSum });
        assert.equal(direct.code, 42, `job on the unpacked hostile sandbox exited ${direct.code}\nstdout: ${direct.stdout}\nstderr: ${direct.stderr}`);
        assert.equal(direct.stderr, '');
        spawnSync('chmod', ['-R', 'u+w', sandbox]);
      }
      const line = `${name}: ${img.layers} layer(s), ${mb(img.sizeBytes)} compressed, ${mb(img.unpackedBytes)} unpacked, ${img.files} entries; `
        + `sync ${c.syncSeconds.get(name)!.toFixed(1)} s; job cold ${cold.seconds.toFixed(2)} s, warm ${warm.seconds.toFixed(2)} s (load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]})`;
      diag.push(line);
      t.diagnostic(line);
    } finally {
      rmSync(join('/tmp', marker), { force: true });
    }
  });
}

test('corpus summary', (t) => {
  if (skipReason) { t.skip(skipReason); return; }
  for (const l of diag) t.diagnostic(l);
  assert.equal(diag.length, NAMES.length, 'every image ran its job');
});
