// The object store contract: a content-addressed key → bytes map holding objects exactly as they are
// served (compressed where CVMFS compresses). Keys are `objectKey(id, suffix)` ("ab12…[-algo][suffix]").
// Implementations: fs-store.ts (data/XX/rest under a repository's srv/ dir), memory-store.ts (tests).

/**
 * One new object written piece by piece: bytes go to a temp file (never visible under the object's
 * name), `commit` renames it into place under `key`, `abort` removes it. Not for concurrent writes to one
 * writer; several writers may run at once. A writer that is neither committed nor aborted leaks its
 * temp file until gc removes dead writers' temp files.
 */
export interface ObjectWriter {
  /** Appends bytes; resolves once they are handed to the file system (the caller may then reuse them). */
  write(bytes: Uint8Array): Promise<void>;
  /** Makes the object visible under `key` (atomically); an object already there is left as it is. */
  commit(key: string): Promise<void>;
  /** Drops what was written; safe after a failed write or twice. */
  abort(): Promise<void>;
}

export interface ObjectStore {
  /** True when the object is present; never reads its bytes. */
  has(key: string): Promise<boolean>;
  /** The stored bytes, unverified; throws STORE_MISSING when absent. Callers verify (object-io.ts: readObject, verifyObjectBytes). */
  get(key: string): Promise<Buffer>;
  /** Stores bytes atomically (temp file then rename); storing an existing key is a no-op. */
  put(key: string, bytes: Uint8Array): Promise<void>;
  /**
   * Starts a new object whose key is known only at the end (streamed, hashed while written).
   * `keyHint` names the object in error messages when the caller already knows it.
   */
  openWriter(keyHint?: string): ObjectWriter;
  /** Removes an object; removing a missing one is a no-op. */
  delete(key: string): Promise<void>;
  /** Every key present, in no particular order. */
  list(): AsyncIterable<string>;
}
