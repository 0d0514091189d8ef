// `gridbox report`: container starts per day and per image, from this node's accounting database or from an
// aggregating server, as a table (stdout) and optionally an SVG plot; `--post URL` first sends this node's
// unposted records to `gridbox serve --accounting-db`.
import { existsSync } from 'node:fs';
import { GridboxError, q } from '../../errors.js';
import { hasSpool, listStarts, openAccountingDb } from '../../accounting/accounting-db.js';
import { renderSvg, renderTable, summarize } from '../../accounting/report.js';
import type { StartRecord } from '../../accounting/start-record.js';
import { newCommand, parseCommand, say } from '../options.js';
import { writeAtomic } from './pilot-setup.js';
import { accountingDbPath } from './report-meter.js';
import { postUnposted, startsUrl } from './report-post.js';
import { exchangeText } from '../../accounting/http-exchange.js';

export const summary = 'container starts per day and per image (table and SVG)';

interface ReportFlags { db?: string; server?: string; post?: string; svg?: string; days?: string; json?: boolean }

async function fetchRemote(base: string, since: number): Promise<StartRecord[]> {
  const url = `${startsUrl(base)}?since=${since}`;
  const r = await exchangeText(url, { timeoutMs: 30_000 });
  const text = r.text;
  if (r.status !== 200) throw new GridboxError('ACCOUNTING_POST', `Cannot read accounting records from ${q(url)}: HTTP ${r.status}`, { url });
  return (JSON.parse(text) as { records: StartRecord[] }).records;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = newCommand('gridbox report', summary)
    .option('--db <file>', 'accounting database (default: $GRIDBOX_ACCOUNTING_DB, /var/lib/gridbox/accounting.db as root)')
    .option('--server <url>', 'report the aggregate of a `gridbox serve --accounting-db` instead of this node')
    .option('--post <url>', "send this node's unposted records to that server first")
    .option('--svg <file>', 'also write the two charts as an SVG file')
    .option('--days <n>', 'only the last N days')
    .option('--json', 'print the summary as JSON')
    .action(async (o: ReportFlags) => {
      const dbPath = o.db ?? accountingDbPath();
      if (o.post) say(`posted ${await postUnposted(dbPath, o.post)} records to ${startsUrl(o.post)}`);
      const since = o.days ? Date.now() - Number(o.days) * 86_400_000 : 0;
      let records: StartRecord[];
      if (o.server) records = await fetchRemote(o.server, since);
      else {
        if (!existsSync(dbPath) && !hasSpool(dbPath)) throw new GridboxError('NOT_FOUND', `No accounting database at ${q(dbPath)} (no container start recorded yet?)`, { path: dbPath });
        const db = openAccountingDb(dbPath, { readonly: true });
        try { records = listStarts(db, since); } finally { db.close(); }
      }
      const s = summarize(records);
      if (o.json) say(JSON.stringify(s));
      else process.stdout.write(renderTable(s));
      if (o.svg) {
        writeAtomic(o.svg, renderSvg(s, o.server ? 'gridbox container starts (all nodes)' : 'gridbox container starts'));
        if (!o.json) say(`\nchart written to ${o.svg}`);
      }
    });
  await parseCommand(cmd, argv);
  return 0;
}
