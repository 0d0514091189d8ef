// The dashboard's small charts as self-contained SVG text, drawn server side (no script, no CDN): a step
// line of revisions over time, horizontal stacked bars, and plain horizontal bars. Pure functions over
// numbers and labels; the page decides what they show.
export const xml = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);

/** A "nice" axis maximum (1, 2, 5 × 10^k) at or above `n`. */
export function niceMax(n: number): number {
  if (n <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(n));
  return [1, 2, 5, 10].map((f) => f * p).find((v) => v >= n)!;
}

const day = (s: number): string => new Date(s * 1000).toISOString().slice(0, 16).replace('T', ' ');

/** Revisions (y) over publish time (x, Unix seconds) as a step line with a dot per revision. */
export function revisionChart(points: { revision: number; timestamp: number; label: string }[], title: string): string {
  const W = 560, H = 200, x0 = 50, y0 = 30, pw = W - x0 - 20, ph = H - y0 - 40;
  const pts = [...points].sort((a, b) => a.timestamp - b.timestamp || a.revision - b.revision);
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" class="chart revisions" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<text x="10" y="16" font-weight="bold">${xml(title)}</text>`];
  if (pts.length === 0) return `${parts.join('')}<text x="${x0}" y="${y0 + 20}" fill="#555">no revisions recorded</text></svg>`;
  const t0 = pts[0].timestamp, t1 = Math.max(t0 + 1, pts[pts.length - 1].timestamp);
  // Revisions are integers: a top that four divides keeps every tick on one.
  const rMax = Math.max(4, Math.ceil(niceMax(Math.max(...pts.map((p) => p.revision))) / 4) * 4);
  const X = (t: number): number => x0 + ((t - t0) / (t1 - t0)) * pw;
  const Y = (r: number): number => y0 + ph - (r / rMax) * ph;
  for (let k = 0; k <= 4; k++) {
    const v = (rMax * k) / 4, y = Y(v);
    parts.push(`<line x1="${x0}" y1="${y}" x2="${x0 + pw}" y2="${y}" stroke="#ddd"/><text x="${x0 - 5}" y="${y + 4}" text-anchor="end" fill="#555">${Number.isInteger(v) ? v : v.toFixed(1)}</text>`);
  }
  let d = `M${X(pts[0].timestamp).toFixed(1)},${Y(pts[0].revision).toFixed(1)}`;
  for (const p of pts.slice(1)) d += ` H${X(p.timestamp).toFixed(1)} V${Y(p.revision).toFixed(1)}`;
  parts.push(`<path d="${d}" fill="none" stroke="#4a7fb5" stroke-width="2"/>`);
  for (const p of pts) parts.push(`<circle cx="${X(p.timestamp).toFixed(1)}" cy="${Y(p.revision).toFixed(1)}" r="3.5" fill="#4a7fb5"><title>${xml(`revision ${p.revision} ${p.label} ${day(p.timestamp)} UTC`)}</title></circle>`);
  parts.push(`<text x="${x0}" y="${H - 12}" fill="#555">${day(t0)}</text><text x="${x0 + pw}" y="${H - 12}" text-anchor="end" fill="#555">${day(t1)} UTC</text>`);
  return `${parts.join('')}</svg>`;
}

export interface BarRow { label: string; values: number[]; title: string }

/**
 * Horizontal bars, one row per label, each split into `series` (stacked left to right). `format` writes the
 * total beside the bar.
 */
export function barChart(rows: BarRow[], series: { name: string; color: string }[], title: string, format: (n: number) => string, cls = ''): string {
  const W = 760, labelW = 290, row = 22, top = 44;
  const H = top + Math.max(1, rows.length) * row + 10;
  const bx = 10 + labelW, bwMax = W - bx - 110;
  const max = Math.max(1, ...rows.map((r) => r.values.reduce((a, b) => a + b, 0)));
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" class="chart ${cls}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<text x="10" y="16" font-weight="bold">${xml(title)}</text>`];
  let lx = 10;
  for (const s of series) {
    parts.push(`<rect x="${lx}" y="24" width="10" height="10" fill="${s.color}"/><text x="${lx + 14}" y="33" fill="#333">${xml(s.name)}</text>`);
    lx += 24 + s.name.length * 6.5;
  }
  rows.forEach((r, i) => {
    const y = top + i * row;
    const label = r.label.length > 46 ? `…${r.label.slice(-45)}` : r.label;
    parts.push(`<text x="${bx - 8}" y="${y + 14}" text-anchor="end">${xml(label)}</text>`);
    let x = bx;
    r.values.forEach((v, k) => {
      const w = (bwMax * v) / max;
      if (w > 0) parts.push(`<rect x="${x.toFixed(1)}" y="${y + 3}" width="${w.toFixed(1)}" height="${row - 7}" fill="${series[k]?.color ?? '#888'}"><title>${xml(`${r.title}: ${series[k]?.name ?? ''} ${format(v)}`)}</title></rect>`);
      x += w;
    });
    parts.push(`<text x="${(x + 6).toFixed(1)}" y="${y + 14}" fill="#333">${xml(format(r.values.reduce((a, b) => a + b, 0)))}</text>`);
  });
  if (rows.length === 0) parts.push(`<text x="${bx}" y="${top + 14}" fill="#555">nothing to show</text>`);
  return `${parts.join('')}</svg>`;
}
