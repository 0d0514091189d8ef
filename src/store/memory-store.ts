// An in-memory ObjectStore for tests and for staging small repositories; holds copies of the bytes.
// Not persistent and not size-limited.
import { GridboxError, q } from '../errors.js';
import { parseObjectKey } from '../hash/object-id.js';
import type { ObjectStore, ObjectWriter } from './object-store.js';

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

  openWriter(): ObjectWriter {
    let parts: Buffer[] | undefined = [];
    return {
      write: async (bytes) => { if (parts === undefined) throw new GridboxError('STORE_IO', 'Cannot write to an object writer after commit or abort'); parts.push(Buffer.from(bytes)); },
      commit: async (key) => {
        if (parts === undefined) throw new GridboxError('STORE_IO', `Cannot commit object ${q(key)}: the writer was already committed or aborted`, { objectId: key });
        const bytes = Buffer.concat(parts);
        parts = undefined;
        await this.put(key, bytes);
      },
      abort: async () => { parts = undefined; },
    };
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
