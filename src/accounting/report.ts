// `gridbox report`'s content: container starts per day and per image (the seed's two charts), as a text
// table and as a self-contained SVG (two bar charts, hand-written: no plotting dependency). Pure functions
// over StartRecords, so the server's aggregate and a node's local view render the same way.
import type { StartRecord } from './start-record.js';

export interface DayRow { day: string; starts: number; failed: number; medianFirstMs: number | null; bytesFetched: number }
export interface ImageRow { image: string; digests: string[]; starts: number; failed: number; medianFirstMs: number | null; medianExitMs: number; bytesFetched: number; nodes: number }
export interface Summary { total: number; nodes: number; from: number | null; to: number | null; perDay: DayRow[]; perImage: ImageRow[] }

const median = (xs: number[]): number | null => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** UTC calendar day of a time in ms, `YYYY-MM-DD`. */
export const utcDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

export function summarize(records: StartRecord[]): Summary {
  const days = new Map<string, StartRecord[]>();
  const images = new Map<string, StartRecord[]>();
  for (const r of records) {
    const d = utcDay(r.startedAt);
    days.set(d, [...(days.get(d) ?? []), r]);
    images.set(r.imageName, [...(images.get(r.imageName) ?? []), r]);
  }
  const failed = (rs: StartRecord[]): number => rs.filter((r) => r.exitStatus !== 0).length;
  const firsts = (rs: StartRecord[]): number[] => rs.flatMap((r) => (r.firstInstructionMs === null ? [] : [r.firstInstructionMs]));
  const bytes = (rs: StartRecord[]): number => rs.reduce((s, r) => s + (r.bytesFetched ?? 0), 0);
  const perDay = [...days.entries()].sort(([a], [b]) => a.localeCompare(b))
    .map(([day, rs]) => ({ day, starts: rs.length, failed: failed(rs), medianFirstMs: median(firsts(rs)), bytesFetched: bytes(rs) }));
  const perImage = [...images.entries()].map(([image, rs]) => ({
    image, digests: [...new Set(rs.flatMap((r) => (r.imageDigest ? [r.imageDigest] : [])))], starts: rs.length, failed: failed(rs),
    medianFirstMs: median(firsts(rs)), medianExitMs: median(rs.map((r) => r.exitMs)) ?? 0, bytesFetched: bytes(rs), nodes: new Set(rs.map((r) => r.node)).size,
  })).sort((a, b) => b.starts - a.starts || a.image.localeCompare(b.image));
  const times = records.map((r) => r.startedAt);
  return {
    total: records.length, nodes: new Set(records.map((r) => r.node)).size,
    from: times.length ? Math.min(...times) : null, to: times.length ? Math.max(...times) : null, perDay, perImage,
  };
}

const ms = (v: number | null): string => (v === null ? '-' : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);
export const humanBytes = (n: number): string => (n >= 1 << 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ').trimEnd();
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}

export function renderTable(s: Summary): string {
  if (s.total === 0) return 'no container starts recorded\n';
  const out = [`${s.total} container starts on ${s.nodes} node${s.nodes === 1 ? '' : 's'}, ${utcDay(s.from!)} .. ${utcDay(s.to!)} (UTC)`, '', 'starts per day'];
  out.push(table(['day', 'starts', 'failed', 'median start', 'fetched'], s.perDay.map((d) => [d.day, String(d.starts), String(d.failed), ms(d.medianFirstMs), humanBytes(d.bytesFetched)])));
  out.push('', 'starts per image');
  out.push(table(['image', 'starts', 'failed', 'median start', 'median run', 'fetched', 'nodes', 'digest'], s.perImage.map((i) => [
    i.image, String(i.starts), String(i.failed), ms(i.medianFirstMs), ms(i.medianExitMs), humanBytes(i.bytesFetched), String(i.nodes),
    i.digests.length === 0 ? '-' : i.digests.length === 1 ? `${i.digests[0].slice(0, 19)}…` : `${i.digests.length} digests`,
  ])));
  return `${out.join('\n')}\n`;
}

const xml = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);

/** A "nice" axis maximum (1, 2, 5 × 10^k) at or above `n`. */
function niceMax(n: number): number {
  if (n <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(n));
  return [1, 2, 5, 10].map((f) => f * p).find((v) => v >= n)!;
}

/** Two charts in one SVG: vertical bars of starts per day (failed part darker), horizontal bars per image. */
export function renderSvg(s: Summary, title = 'gridbox container starts'): string {
  const W = 760;
  const dayH = 220;
  const barRow = 22;
  const imgs = s.perImage.slice(0, 20);
  const H = 60 + dayH + 70 + Math.max(1, imgs.length) * barRow + 30;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="20" y="24" font-size="16" font-weight="bold">${xml(title)}</text>`,
    `<text x="20" y="44" fill="#555">${s.total} starts, ${s.nodes} node${s.nodes === 1 ? '' : 's'}${s.from !== null ? `, ${utcDay(s.from)} .. ${utcDay(s.to!)} UTC` : ''}</text>`,
  ];
  // Starts per day.
  const x0 = 60, y0 = 60, plotW = W - x0 - 20, plotH = dayH - 40;
  const maxDay = niceMax(Math.max(0, ...s.perDay.map((d) => d.starts)));
  parts.push(`<text x="${x0}" y="${y0 + 12}" font-weight="bold">starts per day</text>`);
  const top = y0 + 20;
  for (let k = 0; k <= 4; k++) {
    const v = (maxDay * k) / 4;
    const y = top + plotH - (plotH * k) / 4;
    parts.push(`<line x1="${x0}" y1="${y}" x2="${x0 + plotW}" y2="${y}" stroke="#ddd"/>`, `<text x="${x0 - 6}" y="${y + 4}" text-anchor="end" fill="#555">${Number.isInteger(v) ? v : v.toFixed(1)}</text>`);
  }
  const n = Math.max(1, s.perDay.length);
  const slot = plotW / n;
  const bw = Math.max(2, Math.min(40, slot * 0.7));
  s.perDay.forEach((d, i) => {
    const x = x0 + i * slot + (slot - bw) / 2;
    const h = (plotH * d.starts) / maxDay;
    const hf = (plotH * d.failed) / maxDay;
    parts.push(`<rect x="${x.toFixed(1)}" y="${(top + plotH - h).toFixed(1)}" width="${bw.toFixed(1)}" height="${h.toFixed(1)}" fill="#4a7fb5"><title>${d.day}: ${d.starts} starts, ${d.failed} failed</title></rect>`);
    if (hf > 0) parts.push(`<rect x="${x.toFixed(1)}" y="${(top + plotH - hf).toFixed(1)}" width="${bw.toFixed(1)}" height="${hf.toFixed(1)}" fill="#b5564a"/>`);
    if (n <= 16 || i % Math.ceil(n / 16) === 0) parts.push(`<text x="${(x + bw / 2).toFixed(1)}" y="${top + plotH + 14}" text-anchor="middle" fill="#555" font-size="10">${d.day.slice(5)}</text>`);
  });
  // Starts per image.
  const iy = top + plotH + 40;
  parts.push(`<text x="20" y="${iy}" font-weight="bold">starts per image</text>`);
  const labelW = 300, bx = 20 + labelW, bwMax = W - bx - 60;
  const maxImg = Math.max(1, ...imgs.map((r) => r.starts));
  imgs.forEach((r, i) => {
    const y = iy + 12 + i * barRow;
    const w = (bwMax * r.starts) / maxImg;
    const label = r.image.length > 48 ? `…${r.image.slice(-47)}` : r.image;
    parts.push(`<text x="${bx - 8}" y="${y + 14}" text-anchor="end">${xml(label)}</text>`,
      `<rect x="${bx}" y="${y + 2}" width="${w.toFixed(1)}" height="${barRow - 6}" fill="#5b9a68"><title>${xml(r.image)}: ${r.starts} starts</title></rect>`,
      `<text x="${(bx + w + 6).toFixed(1)}" y="${y + 14}" fill="#333">${r.starts}</text>`);
  });
  if (imgs.length === 0) parts.push(`<text x="${bx}" y="${iy + 26}" fill="#555">no starts recorded</text>`);
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
