// Client option loading: config dir files in CernVM-FS order, --config, CVMFS_* environment and flags,
// with flags winning; master keys from --key or the *.pub files of --keys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { expandServerFlag, loadClientSettings, loadMasterKeys } from './client-options.js';

const FQRN = 'sw.example.org';

test('settings merge config files, --config, CVMFS_* environment and flags in that order', async () => withTempDir(async (dir) => {
  const etc = join(dir, 'etc');
  await mkdir(join(etc, 'domain.d'), { recursive: true });
  await mkdir(join(etc, 'config.d'), { recursive: true });
  await writeFile(join(etc, 'default.local'), 'CVMFS_QUOTA_LIMIT=100\nCVMFS_TIMEOUT=7 # seconds\nSITE=/scratch\n');
  await writeFile(join(etc, 'domain.d', 'example.org.conf'), 'CVMFS_SERVER_URL="http://s1.example.org/cvmfs/@fqrn@;http://s2.example.org/cvmfs/@fqrn@"\n');
  await writeFile(join(etc, 'config.d', `${FQRN}.local`), "CVMFS_CACHE_BASE=$SITE/cvmfs\nCVMFS_HTTP_PROXY='http://p1:3128|http://p2:3128;DIRECT'\n");
  const extra = join(dir, 'extra.conf');
  await writeFile(extra, 'CVMFS_TIMEOUT=9\nCVMFS_MAX_RETRIES=3\n');
  const env = { GRIDBOX_CVMFS_CONFIG_DIR: etc, CVMFS_MAX_RETRIES: '4', HOME: dir };

  const s = await loadClientSettings(FQRN, { config: extra }, env);
  assert.deepEqual(s.serverUrls, ['http://s1.example.org/cvmfs/sw.example.org', 'http://s2.example.org/cvmfs/sw.example.org']);
  assert.deepEqual(s.proxyGroups, [['http://p1:3128', 'http://p2:3128'], ['DIRECT']]);
  assert.equal(s.cacheBase, '/scratch/cvmfs');
  assert.equal(s.quotaLimitBytes, 100 * 1024 * 1024);
  assert.equal(s.timeoutMs, 9000, '--config overrides the config dir');
  assert.equal(s.maxRetries, 4, 'the environment overrides config files');

  const f = await loadClientSettings(FQRN, { server: 'http://127.0.0.1:8000/cvmfs/', proxy: 'DIRECT', cache: join(dir, 'c'), key: '/k.pub' }, env);
  assert.deepEqual(f.serverUrls, ['http://127.0.0.1:8000/cvmfs/sw.example.org']);
  assert.deepEqual(f.proxyGroups, [['DIRECT']]);
  assert.equal(f.cacheBase, join(dir, 'c'));
  assert.deepEqual(f.publicKeys, ['/k.pub']);

  await assert.rejects(loadClientSettings('other.org', {}, { GRIDBOX_CVMFS_CONFIG_DIR: join(dir, 'none') }), { code: 'USAGE' });
  await assert.rejects(loadClientSettings(FQRN, { config: join(dir, 'missing.conf') }, env), { code: 'CONFIG_INVALID' });
}));

test('expandServerFlag appends the repository to a bare /cvmfs base and expands @fqrn@', () => {
  assert.equal(expandServerFlag('http://h/cvmfs;http://g/cvmfs/@fqrn@/;http://x/repo', FQRN), `http://h/cvmfs/${FQRN};http://g/cvmfs/@fqrn@;http://x/repo`);
});

test('master keys come from --key files or every *.pub of --keys', async () => withTempDir(async (dir) => {
  await writeFile(join(dir, 'a.pub'), 'A');
  await writeFile(join(dir, 'b.pub'), 'B');
  await writeFile(join(dir, 'c.masterkey'), 'secret');
  const env = { GRIDBOX_CVMFS_CONFIG_DIR: join(dir, 'none'), HOME: dir };
  const fromDir = await loadClientSettings(FQRN, { server: 'http://h/cvmfs', keys: dir }, env);
  assert.deepEqual(await loadMasterKeys(fromDir), ['A', 'B']);
  const fromFile = await loadClientSettings(FQRN, { server: 'http://h/cvmfs', key: join(dir, 'b.pub') }, env);
  assert.deepEqual(await loadMasterKeys(fromFile), ['B']);
  const none = await loadClientSettings(FQRN, { server: 'http://h/cvmfs', keys: join(dir, 'nothing') }, env);
  await assert.rejects(loadMasterKeys(none), { code: 'CONFIG_INVALID' });
}));
