// Test helper: a real Distribution registry (Debian's docker-registry) on 127.0.0.1 with a temp config,
// optionally behind htpasswd Basic auth or Bearer tokens from a small in-process token issuer, plus a
// parser for its access log so tests can count requests at the server. Not for production use.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createPrivateKey, randomUUID, sign, X509Certificate } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';

export type RegistryAuth = 'none' | 'htpasswd' | 'token';

export interface TestRegistry {
  /** "127.0.0.1:PORT", usable as the registry part of a reference. */
  host: string;
  url: string;
  auth: RegistryAuth;
  username: string;
  password: string;
  /** Token issuer URL (token mode). */
  realm?: string;
  /** Requests the registry logged so far, oldest first. */
  accessLog(): Promise<{ method: string; path: string; status: number }[]>;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  auth?: RegistryAuth;
  /** Make this registry a pull-through cache of another (Distribution's proxy mode). */
  proxyOf?: string;
}

/** True when the docker-registry binary exists (tests skip with a reason otherwise). */
export function haveRegistry(): boolean {
  return spawnSync('docker-registry', ['--version']).status === 0;
}

export async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** Starts a registry with its state in `dir` (the caller's temp dir). */
export async function startRegistry(dir: string, options: StartRegistryOptions = {}): Promise<TestRegistry> {
  const auth = options.auth ?? 'none';
  const username = 'tester';
  const password = 's3cret';
  await mkdir(join(dir, 'data'), { recursive: true });
  const port = await freePort();
  let config = [
    'version: 0.1',
    'log: {level: info, accesslog: {disabled: false}, fields: {service: registry}}',
    'storage:',
    `  filesystem: {rootdirectory: ${join(dir, 'data')}}`,
    '  delete: {enabled: true}',
    '  cache: {blobdescriptor: inmemory}',
    '  maintenance: {uploadpurging: {enabled: false}}',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '  secret: gridbox-test-secret',
  ].join('\n') + '\n';
  if (options.proxyOf) config += `proxy:\n  remoteurl: ${options.proxyOf}\n`;
  let issuer: Server | undefined;
  let realm: string | undefined;
  if (auth === 'htpasswd') {
    const r = spawnSync('htpasswd', ['-Bbc', join(dir, 'htpasswd'), username, password]);
    if (r.status !== 0) throw new Error(`htpasswd failed: ${r.stderr}`);
    config += `auth:\n  htpasswd:\n    realm: test-realm\n    path: ${join(dir, 'htpasswd')}\n`;
  } else if (auth === 'token') {
    const keyFile = join(dir, 'token.key'), certFile = join(dir, 'token.crt');
    const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=gridbox-test-issuer', '-keyout', keyFile, '-out', certFile]);
    if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
    issuer = await startTokenIssuer(await readFile(keyFile, 'utf8'), await readFile(certFile, 'utf8'), `${username}:${password}`);
    realm = `http://127.0.0.1:${(issuer.address() as AddressInfo).port}/token`;
    config += `auth:\n  token:\n    realm: ${realm}\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: ${certFile}\n`;
  }
  const configFile = join(dir, 'config.yml');
  await writeFile(configFile, config);
  const logFile = join(dir, 'registry.log');
  const log = createWriteStream(logFile);
  // The registry reads REGISTRY_* variables as config overrides: keep the caller's out.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_')));
  const child: ChildProcess = spawn('docker-registry', ['serve', configFile], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    if (issuer) await new Promise((resolve) => issuer!.close(resolve));
    await new Promise((resolve) => log.end(resolve));
  };
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) { await stop(); throw new Error(`docker-registry exited: ${await readFile(logFile, 'utf8')}`); }
    const status = await fetch(`${url}/v2/`).then((r) => r.status, () => 0);
    if (status === 200 || status === 401) break;
    if (i > 200) { await stop(); throw new Error('docker-registry did not come up in 10 s'); }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    host: `127.0.0.1:${port}`, url, auth, username, password, ...(realm ? { realm } : {}), stop,
    async accessLog() {
      const text = await readFile(logFile, 'utf8');
      const out: { method: string; path: string; status: number }[] = [];
      for (const m of text.matchAll(/"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP\/[\d.]+" (\d{3})/g)) out.push({ method: m[1], path: m[2], status: Number(m[3]) });
      return out;
    },
  };
}

/**
 * A token issuer for Distribution's token auth: RS256 JWTs with the signing certificate in `x5c`
 * (the registry checks it against rootcertbundle). Anonymous callers get pull only.
 */
async function startTokenIssuer(keyPem: string, certPem: string, creds: string): Promise<Server> {
  const key = createPrivateKey(keyPem);
  const certDer = new X509Certificate(certPem).raw.toString('base64');
  const b64u = (b: string | Buffer): string => Buffer.from(b).toString('base64url');
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/token') { res.writeHead(404).end(); return; }
    let user = '';
    const auth = req.headers.authorization ?? '';
    if (auth.startsWith('Basic ')) {
      if (Buffer.from(auth.slice(6), 'base64').toString() !== creds) { res.writeHead(401).end(); return; }
      user = creds.split(':')[0];
    }
    const access = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).map((s) => {
      const parts = s.split(':');
      const actions = (parts.pop() ?? '').split(',');
      const [type, ...name] = parts;
      return { type, name: name.join(':'), actions: user ? actions : actions.filter((a) => a === 'pull') };
    });
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: 'test-issuer', sub: user, aud: url.searchParams.get('service') ?? '', exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access };
    const input = `${b64u(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [certDer] }))}.${b64u(JSON.stringify(claims))}`;
    const token = `${input}.${b64u(sign('RSA-SHA256', Buffer.from(input), key))}`;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date(now * 1000).toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
