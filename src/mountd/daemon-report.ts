// What a mount daemon tells the front that started it, on an inherited pipe, before it closes that pipe:
//   ready {"revision":R,"pid":P}        then the lines the front prints on stdout, or
//   fail EXIT CODE                      then the lines the front prints on stderr.
// Two fronts read it: start-daemon.ts (node) and bin/gridbox (sh, which only looks at the first word and
// EXIT). A daemon that exits without a report (killed, a usage error commander printed to its log) closes
// the pipe with nothing on it; the fronts then fall back to the log and the node path respectively.
import { ERROR_TABLE, GridboxError, describeError, edgeOf, isGridboxError, type ErrorCode } from '../errors.js';

/** What the daemon reports once its mount answers. */
export interface DaemonReady {
  revision: number;
  pid: number;
}

export type DaemonReport =
  | { ok: true; ready: DaemonReady; lines: string[] }
  | { ok: false; error: GridboxError; lines: string[] };

export function readyReport(ready: DaemonReady, lines: readonly string[] = []): string {
  return [`ready ${JSON.stringify(ready)}`, ...lines].join('\n') + '\n';
}

/** The report of a daemon that could not mount: its exit code, error code and the line the CLI prints for it. */
export function failReport(e: unknown): string {
  const code: ErrorCode = isGridboxError(e) ? e.code : 'INTERNAL';
  return `fail ${edgeOf(e).exit} ${code}\ngridbox: ${describeError(e)}\n`;
}

/** Undefined when the daemon closed the pipe without a report (or with one this version does not know). */
export function parseReport(text: string): DaemonReport | undefined {
  const [first, ...rest] = text.replace(/\n$/, '').split('\n');
  if (first.startsWith('ready ')) {
    let ready: DaemonReady;
    try { ready = JSON.parse(first.slice(6)) as DaemonReady; } catch { return undefined; }
    if (!Number.isInteger(ready?.pid)) return undefined;
    return { ok: true, ready, lines: rest };
  }
  const m = /^fail \d+ ([A-Z_]+)$/.exec(first);
  if (m === null) return undefined;
  const code = (m[1] in ERROR_TABLE ? m[1] : 'INTERNAL') as ErrorCode;
  // The daemon's line is describeError's "message [CODE]: causes"; rebuilt as message and one cause, the
  // error prints the same line again in the node front.
  const line = rest.join(' ').replace(/^gridbox: /, '');
  const at = line.indexOf(` [${code}]`);
  const message = at < 0 ? line : line.slice(0, at);
  const causes = at < 0 ? '' : line.slice(at + code.length + 3).replace(/^: /, '');
  return { ok: false, error: new GridboxError(code, message, causes === '' ? {} : { cause: new Error(causes) }), lines: rest };
}
