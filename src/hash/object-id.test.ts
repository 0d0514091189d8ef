import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatObjectId, HASH_ALGORITHM_CODE, hashAlgorithmFromCode, hashBytes, objectKey, objectPath, parseObjectId, parseObjectKey } from './object-id.js';
import { isGridboxError } from '../errors.js';

test('digest vectors of spec §1.2 for sha1, rmd160 and shake128', () => {
  const empty = Buffer.alloc(0);
  assert.equal(hashBytes('sha1', empty).hex, 'da39a3ee5e6b4b0d3255bfef95601890afd80709');
  assert.equal(hashBytes('rmd160', empty).hex, '9c1185a5c5e9fc54612808977ee8f548b2258d31');
  assert.equal(hashBytes('shake128', empty).hex, '7f9c2ba4e88f827d616045507605853ed73b8093');
  assert.equal(hashBytes('shake128', Buffer.from('abc')).hex, '5881092dd818bf5cf8a3ddb793fbcba74097d5c5');
  assert.equal(hashBytes('sha1', Buffer.from('789c030000000001', 'hex')).hex, 'e8ec3d88b62ebf526e4e5a4ff6162a3aa48a6b78');
});

test('textual forms and paths carry the algorithm id and the suffix', () => {
  const rmd = parseObjectId('aa1deda59d5329553580d78fcd0b393157a5d28e-rmd160');
  assert.equal(rmd.algorithm, 'rmd160');
  assert.equal(objectPath(rmd, 'C'), 'aa/1deda59d5329553580d78fcd0b393157a5d28e-rmd160C');
  assert.equal(objectPath(parseObjectId('6ed3d49a5c64f21f36936ab350d49aaf57585b9a'), 'C'), '6e/d3d49a5c64f21f36936ab350d49aaf57585b9aC');
  const shake = hashBytes('shake128', Buffer.from('x'));
  assert.equal(formatObjectId(shake), `${shake.hex}-shake128`);
  assert.deepEqual(parseObjectKey(objectKey(shake, 'P')), { id: shake, suffix: 'P' });
});

test('catalog hash-algorithm codes map back to their names; any other code is HASH_BAD_ID', () => {
  for (const [name, code] of Object.entries(HASH_ALGORITHM_CODE)) assert.equal(hashAlgorithmFromCode(code), name);
  for (const bad of [0, 4, 7, -1, 1.5, Number.NaN]) {
    assert.throws(() => hashAlgorithmFromCode(bad), (e) => isGridboxError(e, 'HASH_BAD_ID'), String(bad));
  }
});
