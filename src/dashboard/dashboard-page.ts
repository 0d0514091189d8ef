// The dashboard as one HTML page rendered server side from DashboardData: tables for what people read
// (names, digests, errors) and inline SVG where they would rather look (revisions over time, bytes and
// deduplication per image, container starts, replication lag). No script and nothing fetched from
// elsewhere, so it works offline and behind any proxy. Elements carry ids and data-* for tests and scrapers.
import { humanBytes, renderSvg } from '../accounting/report.js';
import type { DashboardData, ImageRow, RepositoryView, Stratum1View } from './dashboard-data.js';
import { barChart, revisionChart, xml } from './svg-charts.js';

const time = (s: number | undefined): string => (s === undefined || s === 0 ? '-' : `${new Date(s * 1000).toISOString().slice(0, 19).replace('T', ' ')} UTC`);
const timeMs = (ms: number | undefined): string => (ms === undefined ? '-' : time(Math.floor(ms / 1000)));
const short = (d: string): string => (d.length > 23 ? `${d.slice(0, 19)}…` : d);
const ago = (s: number): string => (s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : s < 172_800 ? `${(s / 3600).toFixed(1)} h` : `${(s / 86400).toFixed(1)} d`);

const STYLE = `body{font-family:sans-serif;margin:0;background:#f4f5f7;color:#222}
header{background:#24364b;color:#fff;padding:12px 24px}header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c8d2de;font-size:13px}
main{padding:12px 24px}section{background:#fff;border-radius:6px;padding:12px 16px;margin:0 0 16px;box-shadow:0 1px 2px #0002}
h2{font-size:17px;margin:4px 0 10px}h3{font-size:15px;margin:12px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{padding:3px 10px;text-align:left;border-bottom:1px solid #e3e3e3}th{background:#f0f2f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}code{font-size:12px}.ok{color:#2d7a3e}.bad{color:#b5364a;font-weight:bold}.muted{color:#777}
.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}`;

function statusCell(status: string | undefined): string {
  if (status === undefined) return '<td class="muted">-</td>';
  return `<td class="${status === 'failed' ? 'bad' : 'ok'}" data-status="${xml(status)}">${xml(status)}</td>`;
}

function imagesTable(r: RepositoryView): string {
  if (r.images.length === 0 && r.failedImages.length === 0) return '<p class="muted">no images synced into this repository</p>';
  const row = (i: ImageRow): string => `<tr class="image" data-name="${xml(i.name)}"><td>${xml(i.name)}</td><td><code title="${xml(i.digest)}">${xml(short(i.digest))}</code></td>`
    + `<td class="num files">${i.files ?? '-'}</td><td class="num bytes" data-bytes="${i.bytes ?? ''}">${i.bytes === undefined ? '-' : humanBytes(i.bytes)}</td>`
    + `<td class="num saved" data-bytes="${i.savedBytes ?? ''}">${i.savedBytes === undefined ? '-' : humanBytes(i.savedBytes)}</td>`
    + `${statusCell(i.lastStatus)}<td>${timeMs(i.syncedAt)}</td></tr>${i.lastError ? `<tr><td colspan="7" class="bad">${xml(i.lastError)}</td></tr>` : ''}`;
  const failed = r.failedImages.map((f) => `<tr class="image failed" data-name="${xml(f.name)}"><td>${xml(f.name)}</td><td class="muted">-</td><td></td><td></td><td></td>${statusCell('failed')}<td></td></tr>`
    + `<tr><td colspan="7" class="bad">${xml(f.error ?? '')}</td></tr>`).join('');
  return `<table class="images"><thead><tr><th>public name</th><th>digest</th><th>files</th><th>bytes</th><th>saved by dedup</th><th>last sync</th><th>synced at</th></tr></thead>`
    + `<tbody>${r.images.map(row).join('')}${failed}</tbody></table>`;
}

function repositorySection(r: RepositoryView): string {
  const out = [`<div class="repository" data-fqrn="${xml(r.fqrn)}" data-revision="${r.revision}"><h3>${xml(r.fqrn)}</h3>`];
  if (r.error) out.push(`<p class="bad">${xml(r.error)}</p>`);
  out.push(`<p>revision <b class="revision">${r.revision}</b> published ${time(r.timestamp)}, root catalog <code>${xml(short(r.rootHash))}</code></p>`);
  const tags = r.tags;
  // Tags name few revisions (trunk, trunk-previous, named ones); sync cycles add the ones they published.
  const points = new Map<number, { revision: number; timestamp: number; label: string }>();
  for (const c of r.cycles) if (c.revision !== undefined) points.set(c.revision, { revision: c.revision, timestamp: Math.floor(c.endedAt / 1000), label: 'sync' });
  for (const t of r.tags) points.set(t.revision, { revision: t.revision, timestamp: t.timestamp, label: t.name });
  out.push('<div class="charts">', revisionChart([...points.values()], `revisions of ${r.fqrn}`));
  const withStats = r.images.filter((i) => i.bytes !== undefined);
  if (withStats.length > 0) {
    out.push(barChart(withStats.map((i) => ({ label: i.name, values: [i.newBytes!, i.savedBytes!], title: i.name })),
      [{ name: 'stored by this image', color: '#4a7fb5' }, { name: 'shared (deduplicated)', color: '#9cc59f' }], 'image bytes', humanBytes, 'image-bytes'));
  }
  out.push('</div>');
  out.push(`<table class="tags"><thead><tr><th>tag</th><th>revision</th><th>published</th><th>description</th></tr></thead><tbody>${tags.map((t) =>
    `<tr class="tag" data-tag="${xml(t.name)}"><td>${xml(t.name)}</td><td class="num">${t.revision}</td><td>${time(t.timestamp)}</td><td>${xml(t.description)}</td></tr>`).join('')}</tbody></table>`);
  out.push('<h3>images</h3>');
  if (r.dedup) out.push(`<p class="dedup">${humanBytes(r.dedup.bytes)} in image files, ${humanBytes(r.dedup.newBytes)} distinct: <b>${humanBytes(r.dedup.savedBytes)}</b> saved by deduplication</p>`);
  if (r.lastCycle) {
    const c = r.lastCycle;
    out.push(`<p class="last-cycle" data-failed="${c.failed}">last sync ${timeMs(c.endedAt)}: <span class="${c.failed ? 'bad' : 'ok'}">${c.failed ? 'failed' : 'ok'}</span>`
      + `${c.published ? `, published revision ${c.published.revision} (${c.published.objectsWritten} new objects, ${humanBytes(c.published.bytesWritten)})` : ', nothing to publish'}`
      + `${c.listErrors.length ? `, ${c.listErrors.length} list errors` : ''}</p>`);
  }
  out.push(imagesTable(r), '</div>');
  return out.join('\n');
}

function replicationSection(s1: Stratum1View[]): string {
  if (s1.length === 0) return '<p class="muted">no stratum 1 configured (gridbox serve --stratum1 URL)</p>';
  const ok = s1.filter((s) => s.error === undefined);
  const chart = barChart(ok.map((s) => ({ label: `${s.url}`, values: [s.revisionsBehind ?? 0], title: `${s.url}: ${s.secondsBehind ?? 0} s behind` })),
    [{ name: 'revisions behind the stratum 0', color: '#c98a3a' }], 'replication lag', (n) => `${n} behind`, 'replication-lag');
  const rows = s1.map((s) => `<tr class="stratum1" data-url="${xml(s.url)}" data-behind="${s.revisionsBehind ?? ''}"><td>${xml(s.url)}</td><td>${xml(s.fqrn)}</td>`
    + `<td class="num">${s.revision ?? '-'}</td><td class="num ${s.revisionsBehind ? 'bad' : 'ok'}">${s.revisionsBehind ?? '-'}</td>`
    + `<td class="num">${s.secondsBehind === undefined ? '-' : ago(s.secondsBehind)}</td><td>${time(s.timestamp)}</td><td>${xml(s.lastSnapshot ?? '-')}</td></tr>`
    + `${s.error ? `<tr><td colspan="7" class="bad">${xml(s.error)}</td></tr>` : ''}`).join('');
  return `${ok.length > 0 ? chart : ''}<table class="replication"><thead><tr><th>stratum 1</th><th>repository</th><th>revision</th><th>behind</th><th>lag</th><th>published</th><th>last snapshot</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function startsSection(d: DashboardData): string {
  if (d.starts === undefined) return '<p class="muted">no accounting database (gridbox serve --accounting-db FILE)</p>';
  const s = d.starts;
  const perImage = s.perImage.map((i) => `<tr class="start-image" data-image="${xml(i.image)}" data-starts="${i.starts}"><td>${xml(i.image)}</td><td class="num">${i.starts}</td>`
    + `<td class="num">${i.failed}</td><td class="num">${i.nodes}</td><td class="num">${humanBytes(i.bytesFetched)}</td></tr>`).join('');
  return `<div class="starts-chart">${renderSvg(s, 'container starts (all nodes)').replace(/^<svg /, '<svg class="chart starts" ')}</div>`
    + `<table class="starts"><thead><tr><th>image</th><th>starts</th><th>failed</th><th>nodes</th><th>fetched</th></tr></thead><tbody>${perImage}</tbody></table>`;
}

export function renderDashboardPage(d: DashboardData): string {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>gridbox dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="refresh" content="60">
<style>${STYLE}</style></head>
<body><header><h1>gridbox</h1><p>generated ${timeMs(d.generatedAt)} · data as JSON: <a style="color:#fff" href="/dashboard/data.json">data.json</a></p></header>
<main>
<section id="repositories"><h2>Repositories</h2>
${d.repositories.length === 0 ? '<p class="muted">no repository under this root</p>' : d.repositories.map(repositorySection).join('\n')}
</section>
<section id="starts-section"><h2>Container starts</h2>
${startsSection(d)}
</section>
<section id="replication"><h2>Replication</h2>
${replicationSection(d.stratum1)}
</section>
</main></body></html>
`;
}
