// Test helper: Debian nginx serving a srv/ directory as /cvmfs/ on 127.0.0.1:<free port>, with a
// temp config, pid, logs and temp paths, in the foreground. Shows that srv/ alone is servable.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, realpath, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freeLoopbackPort, waitForPort } from './free-port.js';

export interface Nginx {
  /** "http://127.0.0.1:<port>/cvmfs/" */
  url: string;
  port: number;
  stop(): Promise<void>;
}

export function nginxBinary(): string | undefined {
  return ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
}

/** Serves `srvDir` at /cvmfs/ with state in `stateDir`; as root the workers stay root so 0700 temp dirs stay readable. */
export async function startNginx(srvDir: string, stateDir: string): Promise<Nginx> {
  const bin = nginxBinary();
  if (bin === undefined) throw new Error('nginx is not installed (apt-get install nginx-light)');
  const srv = await realpath(srvDir);
  for (const d of ['tmp', 'logs']) await mkdir(join(stateDir, d), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    const port = await freeLoopbackPort();
    const conf = join(stateDir, 'nginx.conf');
    const t = join(stateDir, 'tmp');
    await writeFile(conf, `
${process.getuid?.() === 0 ? 'user root root;' : ''}
worker_processes 1;
daemon off;
pid ${join(stateDir, 'nginx.pid')};
error_log ${join(stateDir, 'logs', 'error.log')} warn;
events { worker_connections 64; }
http {
  access_log ${join(stateDir, 'logs', 'access.log')};
  client_body_temp_path ${t}/body; proxy_temp_path ${t}/proxy; fastcgi_temp_path ${t}/fastcgi;
  uwsgi_temp_path ${t}/uwsgi; scgi_temp_path ${t}/scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    location /cvmfs/ {
      alias ${srv}/;
      autoindex off;
      location ~ /\\.cvmfs { expires 61s; }
      location ~ /data/ { expires 3d; }
    }
  }
}
`);
    const child: ChildProcess = spawn(bin, ['-p', stateDir, '-c', conf, '-e', join(stateDir, 'logs', 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => { stderr += c.toString(); });
    try {
      await waitForPort(port, 10_000, () => child.exitCode === null && child.signalCode === null);
    } catch (e) {
      child.kill('SIGKILL');
      if (attempt < 2 && /in use/i.test(stderr)) continue;
      throw new Error(`nginx did not start: ${(e as Error).message}\n${stderr.slice(-2000)}`);
    }
    const exited = new Promise<void>((r) => { if (child.exitCode !== null || child.signalCode !== null) r(); else child.once('exit', () => r()); });
    return {
      url: `http://127.0.0.1:${port}/cvmfs/`, port,
      // SIGQUIT lets the master stop its workers; SIGKILL if it lingers.
      stop: async () => {
        child.kill('SIGQUIT');
        const t = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      },
    };
  }
}
