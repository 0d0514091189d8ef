// Table tests for the image lists of `gridbox sync`: OSG's docker_images.txt, DUCC's wish list, tag-glob
// expansion against a fake tag lister, and public naming (image-sync.md A1.2, A2.1, A1.5/A2.4).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GridboxError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { ImageReference } from '../oci/reference.js';
import {
  defaultPublicName, expandImageList, type ImageList, parseDuccWishlist, parseImageList, parseOsgList, publicNameOf,
  renderOutputName, tagMatches,
} from './image-list.js';

const D1 = `sha256:${'a1'.repeat(32)}` as Digest;
const D2 = `sha256:${'b2'.repeat(32)}` as Digest;

/** The reference fields that matter, without undefined members, for deepEqual. */
function plain(r: ImageReference): Record<string, string> {
  return Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)) as Record<string, string>;
}

test('parseOsgList() resolves one-, two- and three-plus-part names, tags, globs and digests by OSG rules', () => {
  const cases: [string, Record<string, string>][] = [
    ['ubuntu', { registry: 'docker.io', repository: 'library/ubuntu', tag: 'latest' }],
    ['debian:stable', { registry: 'docker.io', repository: 'library/debian', tag: 'stable' }],
    ['python:3.4', { registry: 'docker.io', repository: 'library/python', tag: '3.4' }],
    ['opensciencegrid/osgvo-ants', { registry: 'docker.io', repository: 'opensciencegrid/osgvo-ants', tag: 'latest' }],
    ['gromacs/gromacs:*', { registry: 'docker.io', repository: 'gromacs/gromacs', tag: '*' }],
    ['cailmdaley/sptlab:osg*', { registry: 'docker.io', repository: 'cailmdaley/sptlab', tag: 'osg*' }],
    ['eicweb/jug_xl:*-beta', { registry: 'docker.io', repository: 'eicweb/jug_xl', tag: '*-beta' }],
    ['containers.ligo.org/lscsoft/lalsuite/lalsuite-v6.53:stretch', { registry: 'containers.ligo.org', repository: 'lscsoft/lalsuite/lalsuite-v6.53', tag: 'stretch' }],
    ['gitlab-p4n.aip.de:5005/ns/img:tag', { registry: 'gitlab-p4n.aip.de:5005', repository: 'ns/img', tag: 'tag' }],
    ['hub.opensciencegrid.org/htc/rocky:9', { registry: 'hub.opensciencegrid.org', repository: 'htc/rocky', tag: '9' }],
    ['myhost:5000/ns/img', { registry: 'myhost:5000', repository: 'ns/img', tag: 'latest' }],
    // OSG: the first of three or more parts is the registry even without a dot or port.
    ['abc/def/ghi:1', { registry: 'abc', repository: 'def/ghi', tag: '1' }],
    ['registry.hub.docker.com/library/centos:centos7', { registry: 'docker.io', repository: 'library/centos', tag: 'centos7' }],
    [`ubuntu@${D1}`, { registry: 'docker.io', repository: 'library/ubuntu', digest: D1 }],
    [`ubuntu:22.04@${D1}`, { registry: 'docker.io', repository: 'library/ubuntu', tag: '22.04', digest: D1 }],
    [`ghcr.io/ns/img@${D2}`, { registry: 'ghcr.io', repository: 'ns/img', digest: D2 }],
    ['   padded/name:1.0   ', { registry: 'docker.io', repository: 'padded/name', tag: '1.0' }],
  ];
  for (const [line, want] of cases) {
    const list = parseOsgList(line);
    assert.deepEqual(list.errors, [], `no error for ${JSON.stringify(line)}`);
    assert.equal(list.entries.length, 1, line);
    assert.deepEqual(plain(list.entries[0].reference), want, line);
    assert.equal(list.entries[0].text, line.trim());
  }
});

test('parseOsgList() skips comments and blank lines and reports each malformed line with its number, keeping the others', () => {
  const text = [
    '# OSG images', // 1
    '', // 2
    'ubuntu', // 3
    '   ', // 4
    'Bad/Name', // 5: uppercase repository
    '  # indented comment', // 6
    'ubuntu:', // 7: empty tag
    'x/y@sha256:zz', // 8: bad digest
    'a b', // 9: space inside
    'bad_host!/ns/img:1', // 10: bad registry host
    'opensciencegrid/osgvo-el7:latest\r', // 11: CRLF line end
    'ns/img:tag:extra', // 12: two colons
    'ghcr.io/ns/img:1', // 13
  ].join('\n');
  const list = parseOsgList(text);
  assert.equal(list.format, 'osg');
  assert.deepEqual(list.entries.map((e) => [e.line, e.text]), [[3, 'ubuntu'], [11, 'opensciencegrid/osgvo-el7:latest'], [13, 'ghcr.io/ns/img:1']]);
  assert.deepEqual(list.errors.map((e) => [e.line, e.text]), [[5, 'Bad/Name'], [7, 'ubuntu:'], [8, 'x/y@sha256:zz'], [9, 'a b'], [10, 'bad_host!/ns/img:1'], [12, 'ns/img:tag:extra']]);
  for (const e of list.errors) assert.ok(e.message.length > 0 && e.message.includes('Cannot parse'), e.message);
  assert.match(list.errors.find((e) => e.line === 8)!.message, /digest/);
  assert.match(list.errors.find((e) => e.line === 10)!.message, /registry host "bad_host!"/);
});

test('parseImageList() tells a DUCC wish list from an OSG list by content', () => {
  assert.equal(parseImageList('ubuntu\n# version: 1 in a comment is not YAML\n').format, 'osg');
  assert.equal(parseImageList('\uFEFFversion: 1\ninput:\n  - https://ghcr.io/ns/img:1\n').format, 'ducc');
});

test('tagMatches() matches a * glob against the whole tag, every other character literal', () => {
  const cases: [string, string, boolean][] = [
    ['21.2.1*', '21.2.10', true],
    ['21.2.1*', '21.2.100-20191127', true],
    ['21.2.1*', '21.2.1', true],
    ['21.2.1*', '21.3.10', false],
    ['21.2.1*', 'x21.2.10', false],
    ['*', 'anything-at_all.1', true],
    ['osg*', 'osg', true],
    ['osg*', 'xosg1', false],
    ['*-beta', '1.0-beta', true],
    ['*-beta', '1.0-beta2', false],
    ['1.0*', '1x0', false],
    ['1.0*', '1.0.3', true],
    ['a*b*c', 'aXXbYc', true],
    ['a*b*c', 'aXXbYcd', false],
    ['latest', 'latest', true],
    ['latest', 'latest2', false],
  ];
  for (const [glob, tag, want] of cases) assert.equal(tagMatches(glob, tag), want, `${glob} ~ ${tag}`);
});

/** A fake tag lister that records its calls; a repository mapped to an Error throws it. */
function fakeTags(tags: Record<string, string[] | Error>): { calls: string[]; listTags: (r: string, repo: string) => Promise<string[]> } {
  const calls: string[] = [];
  return {
    calls,
    listTags: async (registry, repository) => {
      const key = `${registry}/${repository}`;
      calls.push(key);
      const t = tags[key];
      if (t === undefined) throw new GridboxError('OCI_NOT_FOUND', `no repository ${key}`);
      if (t instanceof Error) throw t;
      return [...t];
    },
  };
}

test('expandImageList() expands globs to the sorted whole-tag matches and reports globs matching nothing, without stopping the rest', async () => {
  const list = parseOsgList([
    'atlas/analysisbase:21.2.1*',
    'ubuntu:22.04',
    'pyhf/pyhf:*',
    'org/none:v9*',
    'org/broken:*',
    'ghcr.io/ns/tool:*-beta',
  ].join('\n'));
  const fake = fakeTags({
    'docker.io/atlas/analysisbase': ['21.3.10', '21.2.100-20191127', '21.2.10', 'x21.2.10', '21.2.1'],
    'docker.io/pyhf/pyhf': ['b', 'a', 'c'],
    'docker.io/org/none': ['v1', 'v2', 'latest'],
    'docker.io/org/broken': new GridboxError('OCI_REGISTRY', 'Cannot list tags: 503'),
    'ghcr.io/ns/tool': ['2.0-beta', '1.0-beta', '1.0-beta2', '1.0'],
  });
  const out = await expandImageList(list, fake.listTags);
  assert.deepEqual(out.images.map((w) => w.name), [
    'atlas/analysisbase:21.2.1', 'atlas/analysisbase:21.2.10', 'atlas/analysisbase:21.2.100-20191127',
    'library/ubuntu:22.04',
    'pyhf/pyhf:a', 'pyhf/pyhf:b', 'pyhf/pyhf:c',
    'ghcr.io/ns/tool:1.0-beta', 'ghcr.io/ns/tool:2.0-beta',
  ]);
  // Concrete entries never list tags.
  assert.ok(!fake.calls.includes('docker.io/library/ubuntu'));
  for (const w of out.images) assert.ok(!w.reference.tag!.includes('*'));
  assert.equal(out.images[0].entry.text, 'atlas/analysisbase:21.2.1*');
  assert.deepEqual(out.failed.map((f) => f.entry.text), ['org/none:v9*', 'org/broken:*']);
  const none = out.failed[0].error as GridboxError;
  assert.equal(none.code, 'OCI_NOT_FOUND');
  assert.match(none.message, /"docker\.io\/org\/none".*"v9\*".*3 tags/);
  assert.equal((out.failed[1].error as GridboxError).code, 'OCI_REGISTRY');
});

test('expandImageList() keeps the first entry of a duplicate name', async () => {
  const list = parseOsgList('ns/img:1\nns/img:*\ndocker.io/ns/img:1\n');
  const out = await expandImageList(list, fakeTags({ 'docker.io/ns/img': ['1', '2'] }).listTags);
  assert.deepEqual(out.images.map((w) => [w.name, w.entry.line]), [['ns/img:1', 1], ['ns/img:2', 2]]);
  assert.deepEqual(out.failed, []);
});

const RECIPE = `version: 1
user: cvmfsunpacker
cvmfs_repo: unpacked.cern.ch
output_format: '$(scheme)://$(registry)/$(repository)_thin:$(tag)'
input:
  - 'https://registry.hub.docker.com/library/centos:centos7'
  - 'https://gitlab-registry.cern.ch/group/image:latest'
  - 'https://registry.hub.docker.com/atlas/analysisbase:21.2.1*'
  - 'http://localhost:5000/team/tool/sub:2.1'
  - 'ghcr.io/ns/img@${D1}'
  - 'https://ghcr.io/ns/img:v1@${D2}'
  - 'centos:7'
  - 42
  - 'https://ghcr.io/ns/Bad:1'
  - 'https://ghcr.io/ns/img:a:b'
`;

test('parseDuccWishlist() reads version 1 with input URLs, schemes, globs, digests and reports bad inputs by index', () => {
  const list = parseDuccWishlist(RECIPE);
  assert.equal(list.format, 'ducc');
  const got = list.entries.map((e) => [e.line, plain(e.reference)]);
  assert.deepEqual(got, [
    [1, { registry: 'docker.io', repository: 'library/centos', tag: 'centos7', scheme: 'https' }],
    [2, { registry: 'gitlab-registry.cern.ch', repository: 'group/image', tag: 'latest', scheme: 'https' }],
    [3, { registry: 'docker.io', repository: 'atlas/analysisbase', tag: '21.2.1*', scheme: 'https' }],
    [4, { registry: 'localhost:5000', repository: 'team/tool/sub', tag: '2.1', scheme: 'http' }],
    [5, { registry: 'ghcr.io', repository: 'ns/img', digest: D1 }],
    [6, { registry: 'ghcr.io', repository: 'ns/img', tag: 'v1', digest: D2, scheme: 'https' }],
  ]);
  for (const e of list.entries) assert.equal(e.outputFormat, '$(scheme)://$(registry)/$(repository)_thin:$(tag)');
  assert.deepEqual(list.errors.map((e) => [e.line, e.text]), [[7, 'centos:7'], [8, '42'], [9, 'https://ghcr.io/ns/Bad:1'], [10, 'https://ghcr.io/ns/img:a:b']]);
  for (const e of list.errors) assert.match(e.message, /^Cannot parse wish-list input "/);
});

test('parseDuccWishlist() refuses unknown versions, missing or mistyped fields and unknown output_format variables', () => {
  const input = 'input:\n  - https://ghcr.io/ns/img:1\n';
  const cases: [string, RegExp][] = [
    [`version: 2\n${input}`, /version "2" \(only 1 is supported\)/],
    [`version: "1"\n${input}`, /version "1"/],
    [input, /version .*undefined.* \(only 1 is supported\)/],
    ['version: 1\n', /`input` must be a list/],
    ['version: 1\ninput: https://ghcr.io/ns/img:1\n', /`input` must be a list/],
    [`version: 1\noutput_format: [a]\n${input}`, /`output_format` must be a string/],
    [`version: 1\noutput_format: '$(registry)/$(name):$(tag)'\n${input}`, /unknown variable "\$\(name\)"/],
    ['version: 1\ninput: [unclosed\n', /not valid YAML/],
    ['- just\n- a list\n', /expected a YAML mapping/],
  ];
  for (const [text, want] of cases) {
    assert.throws(() => parseDuccWishlist(text), (e: unknown) => {
      assert.ok(e instanceof GridboxError, String(e));
      assert.equal(e.code, 'SYNC_LIST_INVALID');
      assert.match(e.message, want);
      return true;
    }, text);
  }
  // `user` and `cvmfs_repo` belong to DUCC's thin images and repository choice: not needed here.
  assert.equal(parseDuccWishlist(`version: 1\n${input}`).entries.length, 1);
  // An empty output_format means the default naming.
  assert.equal(parseDuccWishlist(`version: 1\noutput_format: ''\n${input}`).entries[0].outputFormat, undefined);
});

test('renderOutputName() substitutes every DUCC variable and drops a leading scheme', () => {
  const hub: ImageReference = { registry: 'docker.io', repository: 'library/centos', tag: 'centos7', scheme: 'https' };
  const both: ImageReference = { registry: 'ghcr.io', repository: 'ns/img', tag: 'v1', digest: D2 };
  const dig: ImageReference = { registry: 'localhost:5000', repository: 'a/b', digest: D1, scheme: 'http' };
  const cases: [string, ImageReference, string][] = [
    ['$(scheme)://$(registry)/$(repository)_thin:$(tag)', hub, 'docker.io/library/centos_thin:centos7'],
    ['https://gitlab-registry.cern.ch/unpacked/sync/$(image)', hub, 'gitlab-registry.cern.ch/unpacked/sync/library/centos:centos7'],
    ['$(registry)/$(repository)$(reference)', both, `ghcr.io/ns/img:v1@${D2}`],
    ['$(registry)/$(image)', dig, `localhost:5000/a/b@${D1}`],
    ['by-digest/$(repository)/$(digest)', dig, `by-digest/a/b/${D1}`],
    ['$(scheme)/$(repository):$(tag)', dig, 'http/a/b:'],
    ['$(scheme)/$(repository)', both, 'https/ns/img'],
  ];
  for (const [format, ref, want] of cases) assert.equal(renderOutputName(format, ref), want, format);
});

test('public names stay relative, inside the repository and out of dot directories', () => {
  const ref: ImageReference = { registry: 'ghcr.io', repository: 'ns/img', tag: '1' };
  for (const format of ['../$(image)', '/abs/$(image)', '.images/$(image)', '$(registry)//$(image)', 'a/./$(image)', 'https:///$(image)']) {
    assert.throws(() => renderOutputName(format, ref), (e: unknown) => e instanceof GridboxError && e.code === 'SYNC_LIST_INVALID' && /Refusing public name/.test(e.message), format);
  }
  assert.throws(() => renderOutputName('$(nope)/$(image)', ref), /Unknown variable "\$\(nope\)"/);
});

test('defaultPublicName() uses <ns>/<image>:<tag> for Docker Hub and <registry>/<ns>/<image>:<tag> elsewhere', () => {
  const cases: [string, string][] = [
    ['ubuntu', 'library/ubuntu:latest'],
    ['debian:stable', 'library/debian:stable'],
    ['opensciencegrid/osgvo-el7:latest', 'opensciencegrid/osgvo-el7:latest'],
    ['registry.hub.docker.com/library/centos:7', 'library/centos:7'],
    ['ghcr.io/ns/img:1', 'ghcr.io/ns/img:1'],
    ['containers.ligo.org/lscsoft/lalsuite/lalsuite-v6.53:stretch', 'containers.ligo.org/lscsoft/lalsuite/lalsuite-v6.53:stretch'],
    ['gitlab-p4n.aip.de:5005/ns/img:tag', 'gitlab-p4n.aip.de:5005/ns/img:tag'],
    [`ubuntu@${D1}`, `library/ubuntu@${D1}`],
    [`ghcr.io/ns/img:v1@${D1}`, 'ghcr.io/ns/img:v1'],
  ];
  for (const [line, want] of cases) {
    const list: ImageList = parseOsgList(line);
    assert.deepEqual(list.errors, [], line);
    assert.equal(defaultPublicName(list.entries[0].reference), want, line);
    assert.equal(publicNameOf(list.entries[0], list.entries[0].reference), want, line);
  }
  const ducc = parseDuccWishlist("version: 1\noutput_format: 'mirror/$(image)'\ninput:\n  - https://ghcr.io/ns/img:1\n");
  assert.equal(publicNameOf(ducc.entries[0], ducc.entries[0].reference), 'mirror/ns/img:1');
});
