// Worker-node integration as a site admin runs it: `gridbox config setup` installs the mount helper and the
// autofs map; `mount -t <type>` (util-linux running /sbin/mount.<type>), an fstab line (mount -T) and the
// autofs program map called as automount calls it; then talk, probe, showconfig, chksetup, reload, umount.
// The helper goes to /sbin under a name unique to this run and is removed afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FQRN, fuseSkipReason, gridbox, runChild, mustRun as must } from '../../vfs/mount-fixture.test.js';
import { OTHER, siteSetup } from '../../mountd/site-fixture.test.js';
import { AUTOMOUNT_SPEC, helperCommand, parseHelperArgs } from './mount-helper.js';

test('mount.gridbox parses what mount(8), fstab and autofs pass', () => {
  assert.deepEqual(helperCommand(parseHelperArgs([FQRN, '/cvmfs/x', '-o', 'ro,nodev,_netdev,config=/etc/x.conf'])), ['mount', FQRN, '/cvmfs/x', '--config', '/etc/x.conf']);
  assert.deepEqual(helperCommand(parseHelperArgs([`:${FQRN}`, '/cvmfs/x', '-n', '-o', 'nosuid,x-systemd.automount'])), ['mount', FQRN, '/cvmfs/x']);
  assert.deepEqual(helperCommand(parseHelperArgs([AUTOMOUNT_SPEC, '/cvmfs', '-o', 'idle=60,userns'])), ['automount', '/cvmfs', '--idle', '60', '--userns']);
  assert.throws(() => parseHelperArgs([FQRN, '/x', '-o', 'bogus=1']), /unknown option "bogus=1"/);
  assert.equal(parseHelperArgs([FQRN, '/x', '-s', '-o', 'bogus=1']).spec, FQRN, '-s (sloppy) ignores unknown options');
  assert.throws(() => parseHelperArgs([FQRN]), /usage: mount.gridbox/);
  assert.throws(() => parseHelperArgs(['../etc', '/x']), /not a repository name/);
  assert.throws(() => helperCommand(parseHelperArgs([FQRN, '/x', '-o', 'idle=5'])), /idle= applies to gridbox-automount only/);
});

test('site setup: mount -t, fstab, the autofs map, talk and the config commands', { skip: fuseSkipReason(), timeout: 300_000 }, async () => {
  const s = await siteSetup('gridbox-site-');
  const env = s.env;
  const type = `gridbox-t${randomBytes(4).toString('hex')}`;
  const helper = `/sbin/mount.${type}`;
  const m1 = join(s.tmp, 'm1'), cvmfs = join(s.tmp, 'cvmfs'), autoDir = join(s.tmp, 'auto', OTHER);
  for (const d of [m1, cvmfs, autoDir]) await mkdir(d, { recursive: true });
  const map = join(s.tmp, 'auto.gridbox'), master = join(s.tmp, 'auto.master');
  try {
    const setup = await must(gridbox(['config', 'setup', '--type', type, '--map', map, '--master', master], env), 'setup');
    assert.match(setup, new RegExp(`installed ${helper}`));
    assert.ok(existsSync(helper));
    assert.equal(await readFile(master, 'utf8'), `/cvmfs ${map}\n`);

    // mount -t: util-linux finds /sbin/mount.<type> and runs it with (spec, dir, -o options).
    await must(runChild('mount', ['-t', type, '-o', 'ro,nodev', FQRN, m1], { env }), 'mount -t');
    assert.equal(await readFile(join(m1, 'a.txt'), 'utf8'), 'hello from the repository\n');
    // An fstab line for the on-demand /cvmfs (mount -T: another fstab than /etc/fstab).
    const fstab = join(s.tmp, 'fstab');
    await writeFile(fstab, `${AUTOMOUNT_SPEC} ${cvmfs} ${type} ro,nodev,_netdev,idle=60 0 0\n`);
    await must(runChild('mount', ['-T', fstab, cvmfs], { env }), 'mount from fstab');
    assert.deepEqual((await must(runChild('ls', [cvmfs]), 'ls')).trim().split('\n'), [FQRN, OTHER]);
    // The autofs map, called as automount calls it, then its entry mounted as automount mounts it.
    const entry = (await must(runChild(map, [OTHER], { env }), 'map')).trim();
    assert.equal(entry, `-fstype=${type},nodev,nosuid,ro :${OTHER}`);
    const none = await runChild(map, ['no-dots'], { env });
    assert.equal(none.stdout, '', 'a key that is no repository name has no map entry (as auto.cvmfs)');
    assert.notEqual(none.code, 0);
    const [, fstype, opts] = /^-fstype=([^,]+),(\S+) :(\S+)$/.exec(entry)!;
    await must(runChild('mount', ['-t', fstype, '-o', opts, entry.split(':')[1], autoDir], { env }), 'mount the map entry');
    assert.equal(await readFile(join(autoDir, 'x.txt'), 'utf8'), 'the other one\n');

    // talk, to the plain mount and through the on-demand one.
    const rev = Number(await must(gridbox(['talk', FQRN, 'revision'], env), 'revision'));
    assert.equal(await must(gridbox(['talk', FQRN, 'remount'], env), 'remount'), `Catalog up to date (revision ${rev})\n`);
    // A new revision: remount applies it at once (no waiting for the TTL).
    await writeFile(join(s.tmp, `src-${FQRN}`, 'new.txt'), 'published later\n');
    await must(gridbox(['publish', FQRN, join(s.tmp, `src-${FQRN}`), '--root', join(s.tmp, 'repo')], env), 'publish');
    assert.equal(await must(gridbox(['talk', FQRN, 'remount'], env), 'remount'), `New revision applied (revision ${rev + 1})\n`);
    assert.equal(await readFile(join(m1, 'new.txt'), 'utf8'), 'published later\n');
    assert.match(await must(gridbox(['talk', '-i', OTHER, 'proxy info'], env), 'proxy info'), /^Active proxy: DIRECT\n$/);
    assert.match(await must(gridbox(['talk', cvmfs, 'repositories'], env), 'repositories'), new RegExp(`^${FQRN}\n${OTHER}\n$`));
    const affairs = await must(gridbox(['talk', FQRN, 'internal affairs'], env), 'internal affairs');
    assert.match(affairs, /^fqrn: mount\.test\.org$/m);
    assert.match(affairs, /^hits: \d+$/m);
    const before = Number(/\((\d+) Bytes\)/.exec(await must(gridbox(['talk', FQRN, 'cache size'], env), 'cache size'))![1]);
    assert.ok(before > 0);
    const cleaned = await must(gridbox(['talk', FQRN, 'cleanup', '0'], env), 'cleanup');
    assert.match(cleaned, /^(OK|Not fully cleaned \(there might be pinned chunks\))/);
    const after = Number(/\((\d+) Bytes\)/.exec(await must(gridbox(['talk', FQRN, 'cache size'], env), 'cache size'))![1]);
    assert.ok(after < before, `cleanup evicted something (${before} -> ${after})`);
    assert.equal(await readFile(join(m1, 'a.txt'), 'utf8'), 'hello from the repository\n', 'the mount still reads after cleanup');
    const bad = await gridbox(['talk', FQRN, 'make coffee'], env);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /Unknown talk command "make coffee"/);

    // probe goes through the on-demand /cvmfs; showconfig names each parameter's source.
    assert.equal(await must(gridbox(['config', 'probe', '--mount-dir', cvmfs], env), 'probe'), `Probing ${cvmfs}/${FQRN}... OK\nProbing ${cvmfs}/${OTHER}... OK\n`);
    const failed = await gridbox(['config', 'probe', '--mount-dir', cvmfs, 'absent.test.org'], env);
    assert.equal(failed.code, 1);
    assert.match(failed.stdout, /Probing .*absent\.test\.org\.\.\. Failed!/);
    // A plain directory is not a mounted repository.
    await mkdir(join(s.tmp, 'plain', FQRN), { recursive: true });
    const plain = await gridbox(['config', 'probe', '--mount-dir', join(s.tmp, 'plain'), FQRN], env);
    assert.match(plain.stdout, /Failed! \(not a gridbox mount/);
    // CVMFS_STRICT_MOUNT: the map and the helper refuse a repository outside CVMFS_REPOSITORIES.
    const strict = { ...env, CVMFS_STRICT_MOUNT: 'yes' };
    assert.equal((await must(runChild(map, [OTHER], { env: strict }), 'strict map')).trim(), entry);
    assert.equal((await runChild(map, ['unlisted.test.org'], { env: strict })).stdout, '');
    const refused = await runChild('mount', ['-t', type, 'unlisted.test.org', join(s.tmp, 'plain')], { env: strict });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /Not allowed to mount unlisted\.test\.org, add it to CVMFS_REPOSITORIES/);
    const show = await must(gridbox(['config', 'showconfig', OTHER], env), 'showconfig');
    assert.match(show, new RegExp(`^CVMFS_TIMEOUT=7    # from ${s.etc}/config.d/other.test.org.local$`, 'm'));
    assert.match(show, new RegExp(`^CVMFS_SERVER_URL=http://127.0.0.1:\\d+/cvmfs/other.test.org    # from ${s.etc}/default.local$`, 'm'));
    assert.match(show, /^CVMFS_REPOSITORY_NAME=other.test.org$/m);
    assert.match(show, /^CVMFS_TIMEOUT_DIRECT=10    # from built-in default$/m);
    // chksetup: fine as set up; a keys directory that does not exist is an error naming the repository.
    const ok = await must(gridbox(['config', 'chksetup'], env), 'chksetup');
    assert.match(ok, /\nOK\n$|^OK\n$/);
    const broken = await gridbox(['config', 'chksetup'], { ...env, CVMFS_KEYS_DIR: join(s.tmp, 'no-keys') });
    assert.equal(broken.code, 1);
    assert.match(broken.stdout, /^Error: mount\.test\.org: .*keys directory/m);

    // reload: the on-demand mount re-reads CVMFS_REPOSITORIES.
    const conf = join(s.etc, 'default.local');
    await writeFile(conf, (await readFile(conf, 'utf8')).replace(`CVMFS_REPOSITORIES=${FQRN},${OTHER}`, `CVMFS_REPOSITORIES=${FQRN}`));
    const reload = await must(gridbox(['config', 'reload'], env), 'reload');
    assert.match(reload, new RegExp(`Reloading ${cvmfs}: OK\n  repositories: ${FQRN}\n  removed: ${OTHER}`));
    assert.equal((await must(runChild('ls', [cvmfs]), 'ls')).trim(), FQRN);

    // umount: every mount of the run dir.
    const um = await must(gridbox(['config', 'umount'], env), 'umount');
    for (const d of [m1, cvmfs, autoDir]) assert.match(um, new RegExp(`Unmounting ${d}: OK`));
    const left = await readFile('/proc/self/mountinfo', 'utf8');
    assert.ok(!left.includes(s.tmp), 'nothing of the test is mounted any more');
  } finally {
    await gridbox(['config', 'umount'], env);
    await rm(helper, { force: true });
    await s.close();
  }
});
