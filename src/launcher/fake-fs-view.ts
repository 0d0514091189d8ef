// An in-memory FsView for table tests of the launcher: paths map to a directory, a file (text, mode) or a
// symlink. Not used at run time.
import { posix } from 'node:path';
import type { EntryType, FsView } from './launch-spec.js';

export type FakeEntry = 'dir' | { file: string; exec?: boolean } | { link: string };

export function fakeFsView(entries: Record<string, FakeEntry>): FsView {
  const all = new Map<string, FakeEntry>(Object.entries(entries));
  // Every ancestor of a listed path is a directory.
  for (const p of [...all.keys()]) {
    for (let d = posix.dirname(p); d !== '/' && !all.has(d); d = posix.dirname(d)) all.set(d, 'dir');
  }
  all.set('/', 'dir');
  const typeOf = (p: string): EntryType | undefined => {
    const e = all.get(posix.normalize(p));
    return e === undefined ? undefined : e === 'dir' ? 'dir' : 'file' in e ? 'file' : 'link';
  };
  return {
    typeOf,
    isExecutable: (p) => { const e = all.get(p); return e !== undefined && e !== 'dir' && 'file' in e && e.exec === true; },
    list: (p) => [...all.keys()].filter((k) => k !== '/' && posix.dirname(k) === p).map((k) => posix.basename(k)).sort(),
    read: (p) => { const e = all.get(p); return e !== undefined && e !== 'dir' && 'file' in e ? e.file : undefined; },
    readLink: (p) => { const e = all.get(p); return e !== undefined && e !== 'dir' && 'link' in e ? e.link : undefined; },
  };
}
