// Sends this node's unposted start records to an aggregating `gridbox serve --accounting-db` and marks
// them posted once the server has stored them (it ignores records it already has, so a retry is safe).
import { GridboxError, q } from '../../errors.js';
import { markPosted, openAccountingDb, unposted } from '../../accounting/accounting-db.js';
import { ACCOUNTING_PREFIX, MAX_RECORDS_PER_POST } from '../../accounting/http-handler.js';
import { exchangeText } from '../../accounting/http-exchange.js';

/** `http://host:port` (or a URL already ending in the accounting path) → the starts endpoint. */
export function startsUrl(base: string): string {
  const u = new URL(base);
  if (!u.pathname.startsWith(ACCOUNTING_PREFIX)) u.pathname = `${ACCOUNTING_PREFIX}starts`;
  if (!/^127\.|^localhost$|^\[::1\]$/.test(u.hostname) && process.env.GRIDBOX_ACCOUNTING_ANY_HOST !== '1') {
    // Tests and the demo stay on loopback; a real fleet sets GRIDBOX_ACCOUNTING_ANY_HOST=1 deliberately.
    throw new GridboxError('USAGE', `Refusing to post accounting records to ${q(u.hostname)}: not a loopback address (set GRIDBOX_ACCOUNTING_ANY_HOST=1)`);
  }
  return u.toString();
}

/** Posts in batches; returns how many records the server acknowledged. */
export async function postUnposted(dbPath: string, base: string, timeoutMs = 10_000): Promise<number> {
  const url = startsUrl(base);
  const db = openAccountingDb(dbPath);
  let sent = 0;
  try {
    for (;;) {
      const batch = unposted(db, Math.min(1000, MAX_RECORDS_PER_POST));
      if (batch.length === 0) return sent;
      const r = await exchangeText(url, { method: 'POST', body: JSON.stringify({ records: batch }), contentType: 'application/json', timeoutMs });
      if (r.status !== 200) throw new GridboxError('ACCOUNTING_POST', `Posting ${batch.length} accounting records to ${q(url)} failed: HTTP ${r.status} ${r.text.trim()}`, { url });
      markPosted(db, batch.map((b) => b.id));
      sent += batch.length;
    }
  } finally { db.close(); }
}
