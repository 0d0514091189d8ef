// The object store contract: a content-addressed key → bytes map holding objects exactly as they are
// served (compressed where CVMFS compresses). Keys are `objectKey(id, suffix)` ("ab12…[-algo][suffix]").
// Implementations: fs-store.ts (data/XX/rest under a repository's srv/ dir), memory-store.ts (tests).

export interface ObjectStore {
  /** True when the object is present; never reads its bytes. */
  has(key: string): Promise<boolean>;
  /** The stored bytes, unverified; throws STORE_MISSING when absent. Callers verify (object-io.ts: readObject, verifyObjectBytes). */
  get(key: string): Promise<Buffer>;
  /** Stores bytes atomically (temp file then rename); storing an existing key is a no-op. */
  put(key: string, bytes: Uint8Array): Promise<void>;
  /** Removes an object; removing a missing one is a no-op. */
  delete(key: string): Promise<void>;
  /** Every key present, in no particular order. */
  list(): AsyncIterable<string>;
}
