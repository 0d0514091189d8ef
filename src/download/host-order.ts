// Server ordering by measured round-trip time: a GeoIP-free stand-in for CernVM-FS's Geo API
// (CVMFS_USE_GEOAPI=yes). Where the Geo API asks a stratum 1 to sort the host list by the client's
// (or its proxy's) location, we time a small request to every host along the very path the downloads
// take (through the current proxy), as CernVM-FS's own `cvmfs_talk host probe` does, and sort by it.
// Pure ordering logic here; the timed request itself is the downloader's (downloader.ts).

/** One host's measurement: the best round trip of the rounds, or undefined when every probe failed. */
export interface HostProbe {
  host: string;
  rttMs?: number;
  /** Why the last failed probe failed (for status output). */
  error?: string;
}

/** Times one probe of `host`; resolves with milliseconds, rejects when the host does not answer well. */
export type ProbeOne = (host: string) => Promise<number>;

/**
 * Probes every host `rounds` times (all hosts at once within a round, so a slow host costs its own
 * time only) and keeps each host's fastest answer: the first round also pays for connections and
 * DNS, which say little about the host (CernVM-FS probes twice for the same reason).
 */
export async function measureHosts(hosts: readonly string[], probe: ProbeOne, rounds = 2): Promise<HostProbe[]> {
  const out: HostProbe[] = hosts.map((host) => ({ host }));
  for (let r = 0; r < rounds; r++) {
    await Promise.all(out.map(async (p) => {
      try {
        const ms = await probe(p.host);
        if (p.rttMs === undefined || ms < p.rttMs) p.rttMs = ms;
      } catch (e) {
        p.error = (e as Error).message;
      }
    }));
  }
  // A host that answered in some round is up: its error from another round is not the news.
  for (const p of out) if (p.rttMs !== undefined) delete p.error;
  return out;
}

/** Fastest first; hosts that never answered go last, in their configured order (stable sort). */
export function orderByRtt(probes: readonly HostProbe[]): string[] {
  return probes.map((p, i) => ({ p, i }))
    .sort((a, b) => (a.p.rttMs ?? Infinity) - (b.p.rttMs ?? Infinity) || a.i - b.i)
    .map(({ p }) => p.host);
}
