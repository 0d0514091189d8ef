// Worker thread of ReplicaWritePool: stores batches of verified objects with ReplicaObjectWriter (temp file
// in data/txn, rename into data/XX/) and answers with the keys that failed. Holds no state of its own.
import { parentPort, workerData } from 'node:worker_threads';
import { ReplicaObjectWriter } from './replica-object-writer.js';

export interface WriteBatch {
  id: number;
  keys: string[];
  bodies: Uint8Array[];
}

export interface WriteResult {
  id: number;
  failures: { index: number; message: string }[];
}

const writer = new ReplicaObjectWriter((workerData as { dataDir: string }).dataDir);
parentPort!.on('message', (b: WriteBatch) => {
  const failures: WriteResult['failures'] = [];
  for (let i = 0; i < b.keys.length; i++) {
    try {
      writer.put(b.keys[i], b.bodies[i]);
    } catch (e) {
      failures.push({ index: i, message: (e as Error).message });
    }
  }
  parentPort!.postMessage({ id: b.id, failures } satisfies WriteResult);
});
