import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Downloader } from '../download/downloader.js';
import { nginxBinary, startNginx } from '../testing/nginx.js';
import { withTempDir } from '../testing/tmp.js';
import { makeRawObject, pseudoRandomBytes, writeRawObjects } from '../testing/raw-repo.js';

const FQRN = 'plain.example.org';

test('the srv/ layout alone is servable by plain nginx, and our downloader reads it', { skip: nginxBinary() === undefined ? 'nginx is not installed' : false, timeout: 30_000 }, () => withTempDir(async (dir) => {
  const srv = join(dir, 'srv');
  const objs = await writeRawObjects(srv, FQRN, [
    makeRawObject(pseudoRandomBytes(50_000, 9), 'C'),
    makeRawObject(Buffer.alloc(0)),
    makeRawObject(pseudoRandomBytes(200_000, 10), 'P', 'shake128'),
    makeRawObject(Buffer.from('plain text, stored uncompressed'), '', 'rmd160', false),
  ]);
  await writeFile(join(srv, FQRN, '.cvmfspublished'), 'Cabc\n');
  const nginx = await startNginx(srv, join(dir, 'nginx'));
  const d = new Downloader({ serverUrls: [`${nginx.url}${FQRN}`], timeoutDirectMs: 5000 });
  try {
    for (const [i, o] of objs.entries()) {
      const got = await d.fetchObject(o.id, o.suffix, { compression: i === 3 ? 'none' : 'zlib', expectedSize: o.suffix === 'C' ? undefined : o.content.length });
      assert.ok(got.equals(o.content));
    }
    assert.equal((await d.fetchFile('.cvmfspublished')).toString(), 'Cabc\n');
    const r = await fetch(`${nginx.url}${FQRN}/.cvmfspublished`);
    assert.match(r.headers.get('cache-control') ?? '', /max-age=61/);
    await r.arrayBuffer();
    const listing = await fetch(`${nginx.url}${FQRN}/data/`);
    assert.notEqual(listing.status, 200, 'no directory listing');
    await listing.arrayBuffer();
    assert.equal(d.status().counters.hostFailovers, 0);
  } finally { await d.close(); await nginx.stop(); }
}));
