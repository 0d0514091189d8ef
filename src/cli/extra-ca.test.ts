// NODE_EXTRA_CA_CERTS moved aside by bin/gridbox (plumbing/extra-ca.ts): node starts without it, an https
// repository signed by a CA only that file names is still trusted, and the caller's environment reaches what
// gridbox starts unchanged. A real https server on 127.0.0.1 with a certificate made by openssl here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createSrvHandler } from '../server/srv-handler.js';
import { withTempDir } from '../testing/tmp.js';
import { FQRN, cliEnv, cliMain, gridbox, publishTree, runChild } from '../vfs/mount-fixture.test.js';

/** The variables a process started with (not what it set later). */
function startEnv(pid: number): Map<string, string> {
  const m = new Map<string, string>();
  for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) m.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return m;
}

test('an https repository trusted only through NODE_EXTRA_CA_CERTS is read by bin/gridbox, whose node starts without the variable', () => withTempDir(async (tmp) => {
  const src = join(tmp, 'src');
  await mkdir(src);
  await writeFile(join(src, 'hello.txt'), 'hello over tls\n');
  const env = cliEnv(tmp);
  delete env.NODE_EXTRA_CA_CERTS;
  const repo = await publishTree(join(tmp, 'repo'), src, env);
  const key = join(tmp, 'key.pem'), cert = join(tmp, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=gridbox test CA', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const server = createServer({ key: readFileSync(key), cert: readFileSync(cert) }, createSrvHandler({ srvDir: repo.srvDir }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/cvmfs/${FQRN}`;
  try {
    let n = 0;
    const cat = (e: NodeJS.ProcessEnv, viaMain = false) => {
      const args = ['cat', FQRN, '/hello.txt', '--server', url, '--key', repo.keyFile, '--cache', join(tmp, `cache-${++n}`)];
      return viaMain ? runChild(process.execPath, [cliMain(), ...args], { env: e }) : gridbox(args, e);
    };
    // The control: without the CA file the server's certificate is refused, so the cases below can fail.
    const refused = await cat(env);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /certificate/i);

    const withCa = { ...env, NODE_EXTRA_CA_CERTS: cert };
    const ok = await cat(withCa);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'hello over tls\n');
    // main.js told by the saved name alone (what bin/gridbox hands it) loads the file itself.
    const deferred = await cat({ ...env, GRIDBOX_SHIM_SAVED_NODE_EXTRA_CA_CERTS: cert }, true);
    assert.equal(deferred.code, 0, deferred.stderr);
    assert.equal(deferred.stdout, 'hello over tls\n');

    // A long-running command through bin/gridbox: its node started without the variable, and what it starts
    // (serve's workers) gets the caller's value back.
    const { spawn } = await import('node:child_process');
    const serve = spawn(join(cliMain(), '..', '..', '..', 'bin', 'gridbox'), ['serve', '--root', repo.root, '--listen', '127.0.0.1:0', '--workers', '2'], { env: withCa, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        serve.stdout.once('data', () => resolve());
        serve.once('exit', (c) => reject(new Error(`serve exited ${c}`)));
      });
      const primary = startEnv(serve.pid!);
      assert.equal(primary.get('NODE_EXTRA_CA_CERTS'), undefined, 'node was started with NODE_EXTRA_CA_CERTS');
      assert.equal(primary.get('GRIDBOX_SHIM_SAVED_NODE_EXTRA_CA_CERTS'), cert);
      const workers = readFileSync(`/proc/${serve.pid}/task/${serve.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
      assert.equal(workers.length, 2);
      for (const w of workers) {
        const e = startEnv(w);
        assert.equal(e.get('NODE_EXTRA_CA_CERTS'), cert, 'a child gets the variable back');
        assert.equal(e.get('GRIDBOX_SHIM_SAVED_NODE_EXTRA_CA_CERTS'), undefined);
      }
    } finally {
      serve.kill('SIGTERM');
    }
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}));
