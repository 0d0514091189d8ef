// A SnapshotSource policy wrapper: objects come through the pipelined bulk path (http-pipeline.ts) when it
// can, and through the full source (the Downloader: retries, proxy and host failover, error labels)
// whenever it cannot: a transport failure, a status other than 200, a response it does not frame, or
// bytes that do not hash to the object's name. So the fast path never decides an error; at worst it
// costs one extra request, and what the caller sees on failure is exactly the Downloader's verdict.
import { hash as oneShotHash } from 'node:crypto';
import { createContentHash, objectPath, type ObjectId, type ObjectSuffix } from '../hash/object-id.js';
import type { HttpPipeline } from './http-pipeline.js';
import type { SnapshotSource } from './object-copier.js';

export interface FastSourceStats {
  /** Objects that came through the pipeline and verified. */
  pipelined: number;
  /** Objects fetched again through the full source. */
  fallbacks: number;
}

/** True when `bytes` hash to `id` (the raw stored bytes name the object, spec §1.3). */
export function hashMatches(bytes: Uint8Array, id: ObjectId): boolean {
  if (id.algorithm === 'sha1') return oneShotHash('sha1', bytes, 'hex') === id.hex;
  return createContentHash(id.algorithm).update(bytes).digest('hex') === id.hex;
}

export class PipelinedSource implements SnapshotSource {
  readonly stats: FastSourceStats = { pipelined: 0, fallbacks: 0 };

  constructor(private readonly full: SnapshotSource, private readonly pipeline: HttpPipeline) {}

  fetchFile(relPath: string, opts?: { maxBytes?: number }): Promise<Buffer> {
    return this.full.fetchFile(relPath, opts);
  }

  async fetchObject(id: ObjectId, suffix: ObjectSuffix, opts: { compression: 'none' }): Promise<Buffer> {
    try {
      const r = await this.pipeline.get(`data/${objectPath(id, suffix)}`);
      if (r.status === 200 && hashMatches(r.body, id)) {
        this.stats.pipelined++;
        return r.body;
      }
    } catch {
      // Whatever went wrong, the full source tries again and reports it properly.
    }
    this.stats.fallbacks++;
    return this.full.fetchObject(id, suffix, opts);
  }
}
