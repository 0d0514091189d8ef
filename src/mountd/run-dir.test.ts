// Mount records: found by name (the hash of the mountpoint) and by reading the directory (the runtime's
// accounting, which does not load node:crypto for it); both give the same record, and neither fails on junk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { findMountRecord, readMountRecord, writeMountRecord, type MountRecord } from './run-dir.js';

test('findMountRecord finds what writeMountRecord wrote, like readMountRecord, and skips files that are not records', async () => {
  await withTempDir(async (dir) => {
    const rec = (m: string): MountRecord => ({ fqrn: 'a.org', mountpoint: m, pid: 1, userns: false, socket: `${m}.sock`, log: `${m}.log` });
    await writeMountRecord(dir, rec('/mnt/one'));
    await writeMountRecord(dir, rec('/mnt/two'));
    writeFileSync(join(dir, 'junk.json'), '{not json');
    writeFileSync(join(dir, 'other.json'), '{"x": 1}');
    assert.deepEqual(findMountRecord(dir, '/mnt/two'), rec('/mnt/two'));
    assert.deepEqual(findMountRecord(dir, '/mnt/two/'), rec('/mnt/two'), 'the same mountpoint spelled with a trailing slash');
    assert.deepEqual(await readMountRecord(dir, '/mnt/two'), rec('/mnt/two'));
    assert.equal(findMountRecord(dir, '/mnt/three'), undefined);
    assert.equal(findMountRecord(join(dir, 'absent'), '/mnt/one'), undefined);
  });
});
