// `gridbox serve --root DIR --listen HOST:PORT`: serves DIR/srv as /cvmfs/ over HTTP until SIGTERM
// or SIGINT. The first stdout line is the URL it listens on (port 0 picks a free port).
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { GridboxError, q } from '../../errors.js';
import { listenSrv } from '../../server/srv-handler.js';
import { openAccountingDb } from '../../accounting/accounting-db.js';
import { attachAccounting } from '../../accounting/http-handler.js';

export const summary = 'serve a repository root over HTTP';

function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new GridboxError('USAGE', `--listen wants HOST:PORT, got ${q(text)}`);
  return { host: m[1] ?? m[2], port };
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('gridbox serve')
    .requiredOption('--root <dir>', 'repository root (its srv/ is served)')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8000')
    .option('--quiet', 'no request log on stderr')
    .option('--accounting-db <file>', 'also aggregate container-start records posted by nodes (gridbox report --post)')
    .exitOverride();
  cmd.parse(argv, { from: 'user' });
  const o = cmd.opts<{ root: string; listen: string; quiet?: boolean; accountingDb?: string }>();
  const srvDir = join(o.root, 'srv');
  if (!existsSync(srvDir) || !statSync(srvDir).isDirectory()) throw new GridboxError('NOT_FOUND', `No srv/ directory under ${q(o.root)}`, { path: srvDir });
  const { host, port } = parseListen(o.listen);
  const running = await listenSrv({
    srvDir,
    onRequest: o.quiet ? undefined : (r) => process.stderr.write(`${r.method} ${r.url} ${r.status} ${r.bytes}\n`),
  }, host, port);
  if (o.accountingDb) attachAccounting(running.server, openAccountingDb(o.accountingDb));
  process.stdout.write(`serving ${running.url}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => { process.off('SIGTERM', stop); process.off('SIGINT', stop); resolve(); };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  await running.close();
  return 0;
}
