// Collapses concurrent work for one key into one run: the first caller starts it, later callers
// share its promise until it settles (spec §7.5: concurrent requests for one object, one download).
// In-process only; two processes sharing a cache may both download (their renames are idempotent).

export type Collapser<T> = (key: string, run: () => Promise<T>) => Promise<T>;

export function collapse<T>(): Collapser<T> {
  const inflight = new Map<string, Promise<T>>();
  return (key, run) => {
    const pending = inflight.get(key);
    if (pending !== undefined) return pending;
    const p = (async () => {
      try { return await run(); } finally { inflight.delete(key); }
    })();
    inflight.set(key, p);
    return p;
  };
}
