// `gridbox demo`: the main job end to end on an embedded default. It drives the real commands as a
// site would: make a repository, publish a small container image tree, serve it on 127.0.0.1, read it
// back through the verifying client, mount it with FUSE, run the image from the mount, run a job through
// the GlideinWMS-style pilot (image picked from SINGULARITY_IMAGES_DICT, exit code passed back), then
// unmount and clean up. Each step prints one line. `--keep` leaves the work dir for inspection.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'main.js');
const FQRN = 'demo.gridbox.local';
const BUSYBOX = '/bin/busybox';

function gridbox(args: string[], opts: { input?: string } = {}): string {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', input: opts.input, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`gridbox ${args.join(' ')} failed (exit ${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** A tiny container image: busybox, its applets, Apptainer metadata, and some data (one file chunked). */
function makeSampleTree(root: string): void {
  for (const d of ['bin', 'etc', 'tmp', 'srv', 'cvmfs', 'dev', 'proc', 'sys', 'home', 'data/nested', '.singularity.d/env']) mkdirSync(join(root, d), { recursive: true });
  if (existsSync(BUSYBOX)) {
    copyFileSync(BUSYBOX, join(root, 'bin', 'busybox'));
    chmodSync(join(root, 'bin', 'busybox'), 0o755);
    for (const applet of ['sh', 'ls', 'cat', 'echo', 'id', 'uname', 'sha256sum', 'wc', 'true', 'env']) symlinkSync('busybox', join(root, 'bin', applet));
  }
  writeFileSync(join(root, 'etc', 'os-release'), 'NAME="gridbox demo"\nID=gridbox\n');
  writeFileSync(join(root, '.singularity.d', 'env', '90-environment.sh'), 'export DEMO_GREETING="${DEMO_GREETING:-hello from the grid}"\n');
  writeFileSync(join(root, '.singularity.d', 'runscript'), '#!/bin/sh\necho "$DEMO_GREETING"\n');
  chmodSync(join(root, '.singularity.d', 'runscript'), 0o755);
  writeFileSync(join(root, 'data', 'README'), 'Published by gridbox demo.\n');
  writeFileSync(join(root, 'data', 'nested', '.cvmfscatalog'), '');
  writeFileSync(join(root, 'data', 'nested', 'random.bin'), randomBytes(24 << 20));
}

async function startServer(root: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [MAIN, 'serve', '--root', root, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const rl = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    rl.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`gridbox serve exited with ${code} before listening`)));
  });
  const m = /(http:\/\/127\.0\.0\.1:\d+)/.exec(first);
  if (!m) throw new Error(`unexpected first line from gridbox serve: ${first}`);
  return { url: `${m[1]}/cvmfs/${FQRN}`, child };
}

export async function run(argv: string[]): Promise<number> {
  const keep = argv.includes('--keep');
  const work = mkdtempSync(join(tmpdir(), 'gridbox-demo-'));
  const say = (s: string): void => { process.stdout.write(`demo: ${s}\n`); };
  let server: ChildProcess | undefined;
  let mounted: string | undefined;
  try {
    const root = join(work, 'stratum0');
    gridbox(['mkfs', FQRN, '--root', root]);
    say(`created repository ${FQRN} in ${root}`);
    const tree = join(work, 'image');
    makeSampleTree(tree);
    gridbox(['publish', FQRN, tree, '--root', root, '--at', '/images/demo', '--chunk-min', '1048576', '--chunk-avg', '2097152', '--chunk-max', '4194304']);
    say('published a sample image tree at /images/demo (a nested catalog at data/nested, one chunked 24 MiB file)');
    const s = await startServer(root);
    server = s.child;
    say(`serving on ${s.url}`);
    const client = ['--server', s.url, '--keys', join(root, 'keys'), '--cache', join(work, 'cache')];
    const listing = gridbox(['ls', FQRN, '/images/demo', ...client]);
    say(`client listing of /images/demo:\n${listing.trimEnd().split('\n').map((l) => `    ${l}`).join('\n')}`);
    const readme = gridbox(['cat', FQRN, '/images/demo/data/README', ...client]);
    say(`client read /images/demo/data/README: ${JSON.stringify(readme)}`);
    gridbox(['get', FQRN, '/images/demo/data/nested/random.bin', join(work, 'random.bin'), ...client]);
    const same = spawnSync('cmp', [join(work, 'random.bin'), join(tree, 'data', 'nested', 'random.bin')]).status === 0;
    say(`client fetched the chunked file, verified: ${same ? 'identical to the source' : 'DIFFERENT FROM THE SOURCE'}`);
    if (!same) return 1;

    // The worker node: mount the repository where jobs expect it, then run a job the way a glidein does.
    const cvmfsRoot = join(work, 'cvmfs');
    const mnt = join(cvmfsRoot, FQRN);
    mkdirSync(mnt, { recursive: true });
    const runDir = join(work, 'run');
    process.env.GRIDBOX_RUN_DIR = runDir;
    gridbox(['mount', FQRN, mnt, ...client]);
    mounted = mnt;
    say(`mounted ${FQRN} at ${mnt} (FUSE${process.getuid?.() === 0 ? '' : ', in a user namespace'})`);
    const inside = (argv: string[]): string[] => (process.getuid?.() === 0 ? argv : ['enter', mnt, '--', process.execPath, MAIN, ...argv]);
    const runOut = gridbox(inside(['run', join(mnt, 'images', 'demo')]));
    say(`gridbox run of the image on the mount printed: ${JSON.stringify(runOut.trim())}`);
    const jobScript = 'echo "uid=$(id -u) pwd=$(pwd) image $(head -1 /etc/os-release)"; echo "sha256 of the chunked file: $(sha256sum /data/nested/random.bin | cut -c1-16)..."';
    const pilotEnv = {
      GLIDEIN_Singularity_Use: 'PREFERRED', GLIDEIN_SINGULARITY_REQUIRE: 'REQUIRED', CVMFS_MOUNT_DIR: cvmfsRoot,
      SINGULARITY_IMAGES_DICT: `default:/cvmfs/${FQRN}/images/demo`,
    };
    const job = spawnSync(process.execPath, [MAIN, ...inside(['pilot', 'job', '--', '/bin/sh', '-c', `${jobScript}; exit 42`])], {
      encoding: 'utf8', cwd: work, env: { ...process.env, ...pilotEnv },
    });
    say(`pilot job (REQUIRED_OS any -> /cvmfs/${FQRN}/images/demo) exited ${job.status} (the job's own exit code 42 passed back); it printed:\n${job.stdout.trimEnd().split('\n').map((l) => `    ${l}`).join('\n')}`);
    if (job.status !== 42) {
      process.stderr.write(job.stderr);
      return 1;
    }
    const status = gridbox(['status', mnt]);
    say(`mount status:\n${status.trimEnd().split('\n').map((l) => `    ${l}`).join('\n')}`);
    gridbox(['umount', mnt]);
    mounted = undefined;
    say('unmounted; done');
    return 0;
  } finally {
    if (mounted !== undefined) spawnSync(process.execPath, [MAIN, 'umount', '--lazy', mounted]);
    server?.kill('SIGTERM');
    if (keep) say(`work dir kept: ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}
