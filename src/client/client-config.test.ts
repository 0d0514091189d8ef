import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseShellConfig, parseProxyList, resolveClientSettings, configFileOrder } from './client-config.js';

test('parseShellConfig reads quotes, comments, exports and variable references', () => {
  const text = [
    '# site config',
    'export CVMFS_REPOSITORIES="a.example.org,b.example.org"   # trailing comment',
    "CVMFS_HTTP_PROXY='http://p1:3128|http://p2:3128;DIRECT'",
    'BASE=/scratch',
    'CVMFS_CACHE_BASE=$BASE/cvmfs',
    'CVMFS_KEYS_DIR="${HOME_KEYS:-/etc/cvmfs/keys}/sub"',
    'CVMFS_QUOTA_LIMIT=2000 ; ',
    'if [ -f /x ]; then',
    'ESC=a\\ b',
  ].join('\n');
  const { values, ignored } = parseShellConfig(text, {}, { HOME: '/root' });
  assert.equal(values.CVMFS_REPOSITORIES, 'a.example.org,b.example.org');
  assert.equal(values.CVMFS_HTTP_PROXY, 'http://p1:3128|http://p2:3128;DIRECT');
  assert.equal(values.CVMFS_CACHE_BASE, '/scratch/cvmfs');
  assert.equal(values.CVMFS_KEYS_DIR, '/etc/cvmfs/keys/sub');
  assert.equal(values.CVMFS_QUOTA_LIMIT, '2000');
  assert.equal(values.ESC, 'a b');
  assert.deepEqual(ignored, ['if [ -f /x ]; then']);
});

test('later files override earlier ones and can refer to their values', () => {
  const first = parseShellConfig('CVMFS_SERVER_URL="http://s1/cvmfs/@fqrn@"\nCVMFS_TIMEOUT=5').values;
  const second = parseShellConfig('CVMFS_SERVER_URL="$CVMFS_SERVER_URL;http://s2/cvmfs/@fqrn@"', first).values;
  assert.equal(second.CVMFS_SERVER_URL, 'http://s1/cvmfs/@fqrn@;http://s2/cvmfs/@fqrn@');
  assert.equal(second.CVMFS_TIMEOUT, '5');
});

test('an unterminated quote is a CONFIG_INVALID error quoting the line', () => {
  assert.throws(() => parseShellConfig('A="abc'), { code: 'CONFIG_INVALID' });
});

test('parseProxyList splits failover groups and load-balanced members and adds the scheme', () => {
  assert.deepEqual(parseProxyList('p1:3128|http://p2:3128;DIRECT'), [['http://p1:3128', 'http://p2:3128'], ['DIRECT']]);
  assert.throws(() => parseProxyList(' ; '), { code: 'CONFIG_INVALID' });
});

test('resolveClientSettings expands @fqrn@ and converts units', () => {
  const s = resolveClientSettings('sw.example.org', {
    CVMFS_SERVER_URL: 'http://127.0.0.1:1/cvmfs/@fqrn@;http://127.0.0.1:2/cvmfs/@fqrn@/',
    CVMFS_HTTP_PROXY: 'DIRECT',
    CVMFS_QUOTA_LIMIT: '10',
    CVMFS_TIMEOUT: '3',
  });
  assert.deepEqual(s.serverUrls, ['http://127.0.0.1:1/cvmfs/sw.example.org', 'http://127.0.0.1:2/cvmfs/sw.example.org']);
  assert.equal(s.quotaLimitBytes, 10 * 1024 * 1024);
  assert.equal(s.timeoutMs, 3000);
  assert.equal(s.timeoutDirectMs, 10000);
  assert.throws(() => resolveClientSettings('x.org', { CVMFS_HTTP_PROXY: 'DIRECT' }), { code: 'CONFIG_INVALID' });
  assert.throws(() => resolveClientSettings('x.org', { CVMFS_SERVER_URL: 'http://h', CVMFS_HTTP_PROXY: 'DIRECT', CVMFS_TIMEOUT: 'x' }), /CVMFS_TIMEOUT/);
});

test('configFileOrder follows the CernVM-FS load order', () => {
  assert.deepEqual(configFileOrder('sw.example.org', ['b.conf', 'a.conf']), [
    'default.conf', 'default.d/a.conf', 'default.d/b.conf', 'default.local',
    'domain.d/example.org.conf', 'domain.d/example.org.local',
    'config.d/sw.example.org.conf', 'config.d/sw.example.org.local',
  ]);
});

test('CVMFS_USE_GEOAPI and CVMFS_PROXY_SHARD switch server ordering and proxy sharding; CVMFS_MAX_TTL takes fractional minutes', () => {
  const base = { CVMFS_SERVER_URL: 'http://h/cvmfs/@fqrn@', CVMFS_HTTP_PROXY: 'DIRECT' };
  const off = resolveClientSettings('sw.example.org', base);
  assert.equal(off.hostOrder, 'configured');
  assert.equal(off.proxyShard, false);
  assert.equal(off.maxTtlMs, undefined);
  const on = resolveClientSettings('sw.example.org', { ...base, CVMFS_USE_GEOAPI: 'YES', CVMFS_PROXY_SHARD: 'on', CVMFS_MAX_TTL: '0.1' });
  assert.equal(on.hostOrder, 'rtt');
  assert.equal(on.proxyShard, true);
  assert.equal(on.maxTtlMs, 6000);
  assert.equal(resolveClientSettings('sw.example.org', { ...base, CVMFS_USE_GEOAPI: 'no' }).hostOrder, 'configured');
  assert.throws(() => resolveClientSettings('sw.example.org', { ...base, CVMFS_MAX_TTL: 'soon' }), /CVMFS_MAX_TTL/);
});
