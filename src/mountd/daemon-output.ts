// A mount daemon's stdout and stderr go to its log. The node front hands the daemon the log as fds 1 and 2;
// the shell front (bin/gridbox) cannot, since only the daemon knows the log's name (run-dir.ts), so it hands
// it /dev/null and the daemon appends here itself. Node has no dup2, hence writes are redirected at the two
// streams, and an uncaught exception, which Node prints to fd 2 directly, is logged before the exit.
import { openSync, writeSync } from 'node:fs';

type Write = typeof process.stdout.write;

/** From now on everything this process writes to stdout or stderr is appended to `file`. */
export function writeOutputTo(file: string): void {
  const fd = openSync(file, 'a', 0o600);
  const write = ((chunk: string | Uint8Array, encoding?: unknown, cb?: unknown): boolean => {
    try {
      writeSync(fd, typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8') : chunk);
    } catch { /* a full disk must not take the mount down */ }
    const done = typeof encoding === 'function' ? encoding : cb;
    if (typeof done === 'function') (done as () => void)();
    return true;
  }) as Write;
  process.stdout.write = write;
  process.stderr.write = write;
  process.on('uncaughtException', (e) => {
    write(`${new Date().toISOString()} uncaught: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1); // what Node exits with on an uncaught exception
  });
}
