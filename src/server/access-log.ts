// A buffered access log in Common Log Format: lines gather in memory and go out in one write every
// FLUSH_INTERVAL_MS or FLUSH_BYTES, so logging costs no system call per request (nginx's `buffer=`).
// Several processes may append to one file: each flush is a single write on an O_APPEND descriptor.
// Not a logger for anything but requests.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { RequestInfo } from './srv-handler.js';

export const FLUSH_INTERVAL_MS = 200;
export const FLUSH_BYTES = 64 * 1024;

export interface AccessLog {
  record(info: RequestInfo): void;
  /** Writes what is buffered now (synchronously, so it can run at exit). */
  flush(): void;
  close(): void;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "[02/Dec/2026:08:06:38 +0000]", made once per second. */
function clfTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `[${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000]`;
}

/** Logs to `path` (appending), or to stderr for "-". */
export function openAccessLog(path: string): AccessLog {
  const fd = path === '-' ? 2 : openSync(path, 'a');
  let buf = '';
  let stamp = '';
  let stampSecond = -1;
  let timer: NodeJS.Timeout | undefined;
  const flush = (): void => {
    if (timer !== undefined) { clearTimeout(timer); timer = undefined; }
    if (buf === '') return;
    const out = Buffer.from(buf);
    buf = '';
    let off = 0;
    while (off < out.length) off += writeSync(fd, out, off);
  };
  return {
    record(r) {
      const sec = Math.floor(Date.now() / 1000);
      if (sec !== stampSecond) { stampSecond = sec; stamp = clfTime(new Date(sec * 1000)); }
      // The URL is the client's raw request target: quote-safe it so a line stays one parseable line.
      const url = r.url.replace(/[\s"\\]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
      buf += `${r.remote ?? '-'} - - ${stamp} "${r.method} ${url} HTTP/1.1" ${r.status} ${r.bytes} ${r.seconds.toFixed(6)}\n`;
      if (buf.length >= FLUSH_BYTES) flush();
      else if (timer === undefined) { timer = setTimeout(flush, FLUSH_INTERVAL_MS); timer.unref(); }
    },
    flush,
    close() {
      flush();
      if (fd !== 2) closeSync(fd);
    },
  };
}
