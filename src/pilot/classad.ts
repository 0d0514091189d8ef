// Reads the ClassAd files HTCondor hands a job (`_CONDOR_JOB_AD`, `_CONDOR_MACHINE_AD`: one `Name = value`
// per line, old ClassAd syntax) and `condor_q -long:new` style `[ a = 1; b = "x"; ]` ads. Literals are
// interpreted (strings with their escapes, integers, reals, booleans, undefined, error); anything else is an
// expression kept as its text: we never evaluate. Then GlideinWMS's getters (get_prop_str/get_prop_bool).

export type ClassAdValue =
  | { type: 'string'; value: string }
  | { type: 'integer'; value: number }
  | { type: 'real'; value: number }
  | { type: 'boolean'; value: boolean }
  | { type: 'undefined' }
  | { type: 'error' }
  | { type: 'expression'; text: string };

/** Attribute names are case-insensitive in ClassAds: keyed by the lower-cased name, the last definition wins. */
export type ClassAd = Map<string, { name: string; value: ClassAdValue; text: string }>;

/** Longest ad file we read (job ads are a few KiB; a bigger file is not an ad HTCondor wrote). */
export const MAX_CLASSAD_BYTES = 4 * 1024 * 1024;

// A leading `+` is submit-file syntax (`+SingularityImage = ...`); hand-written ads carry it, so it is dropped.
const NAME = /^\+?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$/s;

/**
 * Parses a string literal starting at text[0] === '"'. Old syntax (what HTCondor writes into .job.ad):
 * a backslash escapes only a double quote, other backslashes are literal (Windows paths survive).
 * New syntax: C-like escapes \n \t \r \\ \" \' and octal \ooo. Returns the value and where it ended.
 */
function readString(text: string, syntax: 'old' | 'new'): { value: string; end: number } | undefined {
  let out = '';
  for (let i = 1; i < text.length; i++) {
    const c = text[i];
    if (c === '"') return { value: out, end: i + 1 };
    if (c !== '\\') { out += c; continue; }
    const n = text[i + 1];
    if (n === undefined) return undefined;
    if (syntax === 'old') {
      if (n === '"') { out += '"'; i++; } else out += '\\';
      continue;
    }
    i++;
    const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', v: '\v', a: '\x07', '\\': '\\', '"': '"', "'": "'", '?': '?' };
    if (simple[n] !== undefined) out += simple[n];
    else if (/[0-7]/.test(n)) {
      const m = /^[0-7]{1,3}/.exec(text.slice(i))![0];
      out += String.fromCharCode(parseInt(m, 8));
      i += m.length - 1;
    } else out += n;
  }
  return undefined;
}

/** One value's text → a literal, or the expression text when it is anything more than one literal. */
export function parseClassAdValue(raw: string, syntax: 'old' | 'new' = 'old'): ClassAdValue {
  const text = raw.trim();
  if (text.startsWith('"')) {
    const s = readString(text, syntax);
    if (s !== undefined && text.slice(s.end).trim() === '') return { type: 'string', value: s.value };
    return { type: 'expression', text };
  }
  const lower = text.toLowerCase();
  if (lower === 'true' || lower === 'false') return { type: 'boolean', value: lower === 'true' };
  if (lower === 'undefined') return { type: 'undefined' };
  if (lower === 'error') return { type: 'error' };
  if (/^[+-]?\d+$/.test(text)) return { type: 'integer', value: Number(text) };
  if (/^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$/.test(text)) return { type: 'real', value: Number(text) };
  return { type: 'expression', text };
}

/**
 * Parses an ad file. Old syntax: `Name = value` per line; blank lines, `#` comments and lines that are not
 * assignments (HTCondor's `***` separators, `-- ` headers) are skipped. New syntax (the text starts with
 * `[`): assignments separated by `;`, split outside string literals.
 */
export function parseClassAd(text: string): ClassAd {
  if (text.length > MAX_CLASSAD_BYTES) throw new Error(`ClassAd text is ${text.length} bytes, more than ${MAX_CLASSAD_BYTES}`);
  const ad: ClassAd = new Map();
  const put = (stmt: string, syntax: 'old' | 'new'): void => {
    const m = NAME.exec(stmt.trim());
    if (!m) return;
    ad.set(m[1].toLowerCase(), { name: m[1], value: parseClassAdValue(m[2], syntax), text: m[2].trim() });
  };
  const body = text.trimStart();
  if (body.startsWith('[')) {
    const inner = body.slice(1, body.lastIndexOf(']') > 0 ? body.lastIndexOf(']') : undefined);
    for (const stmt of splitStatements(inner)) put(stmt, 'new');
    return ad;
  }
  for (const line of text.split(/\r?\n/)) {
    if (/^\s*#/.test(line)) continue;
    put(line, 'old');
  }
  return ad;
}

/** Splits on `;` outside string literals (new syntax). */
function splitStatements(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      cur += c;
      if (c === '\\' && i + 1 < text.length) { cur += text[++i]; continue; }
      if (c === '"') inString = false;
    } else if (c === '"') { inString = true; cur += c; } else if (c === ';') { out.push(cur); cur = ''; } else cur += c;
  }
  if (cur.trim() !== '') out.push(cur);
  return out;
}

export function adValue(ad: ClassAd, name: string): ClassAdValue | undefined {
  return ad.get(name.toLowerCase())?.value;
}

/** A string attribute's value, or a literal's text; undefined for absent, `undefined`, `error` and expressions. */
export function adString(ad: ClassAd, name: string): string | undefined {
  const v = adValue(ad, name);
  if (v === undefined) return undefined;
  switch (v.type) {
    case 'string': return v.value;
    case 'integer': case 'real': return String(v.value);
    case 'boolean': return v.value ? 'true' : 'false';
    default: return undefined;
  }
}

/**
 * GlideinWMS's get_prop_str: the value without its quotes, the default when absent, empty or containing
 * "undefined" anywhere (its grep is case-insensitive and unanchored, so an image path with "undefined"
 * in it reads as unset: kept, to decide as the wrapper would). Expressions come back as their text.
 */
export function propStr(ad: ClassAd, name: string, dflt = ''): string {
  const e = ad.get(name.toLowerCase());
  if (e === undefined) return dflt;
  const v = e.value.type === 'string' ? e.value.value : e.value.type === 'expression' ? e.value.text : adString(ad, name) ?? e.text;
  return v === '' || /undefined/i.test(v) ? dflt : v;
}

/**
 * GlideinWMS's get_prop_bool: true when the text contains "true" (any case, anywhere: an expression such
 * as `MY.X =?= true` counts), a non-zero integer; the default when absent, empty or undefined; else false.
 */
export function propBool(ad: ClassAd, name: string, dflt: boolean): boolean {
  const e = ad.get(name.toLowerCase());
  if (e === undefined) return dflt;
  const text = e.text.replace(/[\s]/g, '');
  if (/true/i.test(text)) return true;
  if (/^\d+$/.test(text)) return Number(text) !== 0;
  if (text === '' || /undefined/i.test(text)) return dflt;
  return false;
}
