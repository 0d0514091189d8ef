// Reads the flat ClassAd text HTCondor writes for a job or machine (`_CONDOR_JOB_AD`,
// `_CONDOR_MACHINE_AD`: one `Name = value` per line) and glidein_config (`KEY value`, last wins).
// Only literals are interpreted; expressions are kept as their text.

export type ClassAd = Map<string, string | number | boolean>;

/** Attribute names are case-insensitive in ClassAds: keys are stored lower-cased. */
export function parseClassAd(text: string): ClassAd {
  const ad: ClassAd = new Map();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z_+][A-Za-z0-9_.]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    ad.set(m[1].replace(/^\+/, '').toLowerCase(), parseLiteral(m[2]));
  }
  return ad;
}

function parseLiteral(v: string): string | number | boolean {
  if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) return v.slice(1, -1).replace(/\\(["\\])/g, '$1');
  if (/^(true|false)$/i.test(v)) return v.toLowerCase() === 'true';
  if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(v)) return Number(v);
  return v;
}

export function adString(ad: ClassAd, name: string): string | undefined {
  const v = ad.get(name.toLowerCase());
  return v === undefined ? undefined : String(v);
}

/** glidein_config: `KEY value` per line, the last occurrence wins. */
export function parseGlideinConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const m = /^(\S+)(?:\s+(.*))?$/.exec(raw.trim());
    if (m && !m[1].startsWith('#')) out.set(m[1], m[2] ?? '');
  }
  return out;
}
