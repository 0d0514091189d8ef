// The glidein_config file GlideinWMS's setup scripts share (add_config_line.source): one `KEY value` per
// line, KEY case sensitive, the value is the rest of the line after the first space, the last line for a key
// wins. And the condor_vars.lst lines `advertise` adds so HTCondor publishes a key. Pure text in, text out.

/** What glidein_config holds: the last value per key (GlideinWMS's `tac | grep -m1 "^KEY " | cut -d' ' -f2-`). */
export function parseGlideinConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    // `grep "^KEY "` needs a space after the key: a line with a key and no space holds no value for it.
    const sp = line.indexOf(' ');
    if (sp <= 0) continue;
    // `cut -d ' ' -f 2-` keeps everything after the first space, extra spaces and a trailing \r included.
    out.set(line.slice(0, sp), line.slice(sp + 1));
  }
  return out;
}

/** GlideinWMS advertise types: I integer, S quoted string, C unquoted (a ClassAd keyword or expression). */
export type AdvertiseType = 'I' | 'S' | 'C';

export interface Advertised { key: string; value: string; type: AdvertiseType }

/** Longest line glidein_config takes (GWSM_CONFIG_LINE_MAX=4k, enforced with dd bs=4k). */
export const MAX_CONFIG_LINE_BYTES = 4096;

/**
 * glidein_config after `gconfig_add KEY value` for each entry in order: the old lines of that key are
 * removed and `KEY value` appended, so the file keeps exactly one line per advertised key.
 */
export function addConfigLines(text: string, entries: Array<{ key: string; value: string }>): string {
  let lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
  for (const { key, value } of entries) {
    if (/[\s]/.test(key) || key === '') throw new Error(`glidein_config key ${JSON.stringify(key)} must be one word`);
    if (value.includes('\n')) throw new Error(`glidein_config value for ${key} must be one line`);
    const line = `${key} ${value}`;
    if (Buffer.byteLength(line) > MAX_CONFIG_LINE_BYTES) throw new Error(`glidein_config line for ${key} is longer than ${MAX_CONFIG_LINE_BYTES} bytes`);
    lines = lines.filter((l) => !l.startsWith(`${key} `));
    lines.push(line);
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/**
 * condor_vars.lst after `add_condor_vars_line KEY TYPE - + Y Y +` per entry (what `advertise` writes:
 * no default, same name in HTCondor, not required, published in the machine ad and the job environment).
 * Old lines for the key (`grep -v "^KEY\b"`) go first.
 */
export function addCondorVarsLines(text: string, entries: Advertised[]): string {
  let lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
  for (const { key, type } of entries) {
    lines = lines.filter((l) => !(l.startsWith(key) && (l.length === key.length || /\W/.test(l[key.length]))));
    lines.push(`${key} ${type} - + Y Y +`);
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/** The ClassAd line `advertise` prints for an attribute (S quoted, I and C as they are). */
export function classAdLine(a: Advertised): string {
  return a.type === 'S' ? `${a.key} = "${a.value}"` : `${a.key} = ${a.value}`;
}
