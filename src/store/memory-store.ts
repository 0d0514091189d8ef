// An in-memory ObjectStore for tests and for staging small repositories; holds copies of the bytes.
// Not persistent and not size-limited.
import { GridboxError, q } from '../errors.js';
import { parseObjectKey } from '../hash/object-id.js';
import type { ObjectStore } from './object-store.js';

export class MemoryStore implements ObjectStore {
  private readonly objects = new Map<string, Buffer>();

  async has(key: string): Promise<boolean> {
    return this.objects.has(key);
  }

  async get(key: string): Promise<Buffer> {
    const bytes = this.objects.get(key);
    if (bytes === undefined) throw new GridboxError('STORE_MISSING', `Cannot read object ${q(key)}: not in the store`, { objectId: key });
    return Buffer.from(bytes);
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    parseObjectKey(key);
    if (!this.objects.has(key)) this.objects.set(key, Buffer.from(bytes));
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  async *list(): AsyncIterable<string> {
    yield* [...this.objects.keys()];
  }

  /** Replaces an object's bytes unconditionally: lets tests corrupt or truncate a stored object. */
  overwriteForTest(key: string, bytes: Uint8Array): void {
    this.objects.set(key, Buffer.from(bytes));
  }
}
