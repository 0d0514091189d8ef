// The shims' image hint (shim-image-hint.ts): its sh finds the same image as the runtime's own parser for every
// form of command line, nothing for the commands without one, and its lookup never stops the shim.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseApptainerArgs } from '../launcher/parse-apptainer-args.js';
import { findImageFunction, imageHintLines } from './shim-image-hint.js';

/** What the sh hint finds for `argv`: the image it would look up, or undefined. */
function hinted(argv: string[]): string | undefined {
  const r = spawnSync('/bin/sh', ['-c', `${findImageFunction()}\nfound() { printf '%s' "$1"; }\ngridbox_find_image found "$@"`, 'sh', ...argv], { encoding: 'utf8' });
  assert.equal(r.stderr, '');
  return r.stdout === '' ? undefined : r.stdout;
}

function parsed(argv: string[]): string | undefined {
  try {
    const p = parseApptainerArgs(argv, {});
    return p.kind === 'action' ? p.options.image : undefined;
  } catch { return undefined; }
}

test('the hint finds the image the runtime parses, or none, for each command line', () => {
  const lines: string[][] = [
    ['exec', '/cvmfs/r/img', '/bin/true'],
    ['exec', '-C', '/img', 'true'],
    // GlideinWMS's own call: binds with values, --pwd, combined and long flags.
    ['-s', 'exec', '--home', '/srv:/srv', '--pwd', '/srv', '-B', '/cvmfs,/etc/hosts', '--ipc', '--contain', '--pid', '/cvmfs/x/y:z', '/srv/job.sh', 'a b'],
    ['-q', '-v', 'run', '--bind=/a:/b', '-B/c', '-ce', '/images/two words', 'arg'],
    ['--debug', 'shell', '--env', 'A=1,B=2', '--env-file', '/f', '-S', '/tmp', '-W', '/w', 'img-relative'],
    ['test', '--', '-odd-image'],
    ['exec', '--nv', '--cleanenv', '--hostname', 'h', '--scratch', '/s', '/img', 'cmd'],
    ['-c', '/etc/apptainer.conf', 'exec', '/img', 'x'],
    ['version'], ['--version'], ['help', 'exec'], ['inspect', '/img'], ['exec'], ['exec', '-B'], [],
  ];
  for (const argv of lines) assert.equal(hinted(argv), parsed(argv), JSON.stringify(argv));
  // The forms the table depends on, stated: an image was found where there is one.
  assert.equal(hinted(lines[2]), '/cvmfs/x/y:z');
  assert.equal(hinted(lines[3]), '/images/two words');
  assert.equal(hinted(['exec']), undefined);
});

test('the lines look up .singularity.d inside the image, and neither a missing image nor a file stops the shim', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gridbox-hint-'));
  try {
    mkdirSync(join(dir, 'img', '.singularity.d'), { recursive: true });
    writeFileSync(join(dir, 'file'), '');
    // The probe's answer, seen through a wrapper around it: true for a sandbox image, false otherwise.
    const probe = (image: string): string => {
      const r = spawnSync('/bin/sh', ['-c', `${imageHintLines()}\ngridbox_find_image gridbox_image_hint "$@" && echo found || echo none\necho went on`, 'sh', 'exec', image, 'true'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '');
      return r.stdout;
    };
    assert.match(imageHintLines(), /\ngridbox_find_image gridbox_image_hint "\$@"$/, 'the shim calls the probe itself');
    assert.equal(probe(join(dir, 'img')), 'found\nwent on\n');
    for (const other of [join(dir, 'missing'), join(dir, 'file'), 'docker://debian:12']) assert.equal(probe(other), 'none\nwent on\n', other);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
