import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReference, parseReference } from './reference.js';
import { digestOf, parseDigest, verifyDigestStream } from './digest.js';
import { isGridboxError } from '../errors.js';

const D = `sha256:${'a'.repeat(64)}`;

test('parseReference() applies Docker Hub defaults to one- and two-part names', () => {
  assert.deepEqual(parseReference('debian:stable'), { registry: 'docker.io', repository: 'library/debian', tag: 'stable' });
  assert.deepEqual(parseReference('opensciencegrid/osgvo-ants'), { registry: 'docker.io', repository: 'opensciencegrid/osgvo-ants', tag: 'latest' });
  assert.deepEqual(parseReference('index.docker.io/library/python:3.4'), { registry: 'docker.io', repository: 'library/python', tag: '3.4' });
});

test('parseReference() reads registries with ports, deep paths, digests and URL schemes', () => {
  assert.deepEqual(parseReference('containers.ligo.org/lscsoft/lalsuite/lalsuite-v6.53:stretch'),
    { registry: 'containers.ligo.org', repository: 'lscsoft/lalsuite/lalsuite-v6.53', tag: 'stretch' });
  assert.deepEqual(parseReference(`gitlab-p4n.aip.de:5005/a/b@${D}`), { registry: 'gitlab-p4n.aip.de:5005', repository: 'a/b', digest: D });
  assert.deepEqual(parseReference(`localhost:5000/x:t@${D}`), { registry: 'localhost:5000', repository: 'x', tag: 't', digest: D });
  assert.deepEqual(parseReference('https://registry.hub.docker.com/library/centos:centos7'), { registry: 'docker.io', repository: 'library/centos', tag: 'centos7', scheme: 'https' });
  assert.equal(formatReference(parseReference('ghcr.io/a/b')), 'ghcr.io/a/b:latest');
});

test('parseReference() allows tag globs only when asked and rejects malformed names', () => {
  assert.equal(parseReference('eicweb/jug_xl:*-beta', { allowTagGlob: true }).tag, '*-beta');
  for (const bad of ['eicweb/jug_xl:*-beta', 'UPPER/case', 'a//b', 'a/b:', `a@sha256:xyz`, '']) {
    assert.throws(() => parseReference(bad), (e) => isGridboxError(e, 'OCI_BAD_REFERENCE'), bad);
  }
});

test('verifyDigestStream() passes good bytes and rejects wrong digest or size before the last chunk', async () => {
  const data = [Buffer.from('abc'), Buffer.from('def')];
  const d = digestOf(Buffer.from('abcdef'));
  const out: Buffer[] = [];
  for await (const c of verifyDigestStream(data, d, { size: 6 })) out.push(c);
  assert.equal(Buffer.concat(out).toString(), 'abcdef');
  const seen: string[] = [];
  await assert.rejects((async () => { for await (const c of verifyDigestStream(data, parseDigest(D))) seen.push(c.toString()); })(), (e) => isGridboxError(e, 'OCI_DIGEST_MISMATCH'));
  assert.deepEqual(seen, ['abc'], 'the final chunk is withheld');
  await assert.rejects((async () => { for await (const _ of verifyDigestStream(data, d, { size: 5 })) { /* */ } })(), /more than the declared 5 bytes/);
  assert.throws(() => parseDigest('sha256:abc'), (e) => isGridboxError(e, 'OCI_BAD_REFERENCE'));
});
