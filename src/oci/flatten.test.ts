import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { disposeFlatTree, flattenLayers, openContent, symlinkEscapes, type ContentSink, type FlatTree, type FlattenOptions, type LayerRecord, type LayerSource } from './flatten.js';
import { buildTar, gzip, rawHeader, zstdCompress, type TarSpec } from '../testing/images.js';
import { withTempDir } from '../testing/tmp.js';
import { harmlessImage, hostileImages } from '../testing/hostile-layers.js';
import { isGridboxError } from '../errors.js';

async function layer(specs: TarSpec[], compress: 'gzip' | 'none' | 'zstd' = 'gzip'): Promise<LayerSource> {
  const tar = await buildTar(specs);
  const data = compress === 'gzip' ? gzip(tar) : compress === 'zstd' ? zstdCompress(tar) ?? gzip(tar) : tar;
  return { digest: `test-layer-${specs[0]?.name ?? 'empty'}`, open: async function* () { yield data; } };
}

async function text(tree: FlatTree, path: string): Promise<string> {
  const ref = tree.contents.get(path);
  assert.ok(ref, `no content for ${path}`);
  const parts: Buffer[] = [];
  for await (const c of openContent(ref)) parts.push(c as Buffer);
  return Buffer.concat(parts).toString();
}

const paths = (t: FlatTree): string[] => t.entries.map((e) => e.path);
const get = (t: FlatTree, p: string) => t.entries.find((e) => e.path === p);

async function flatten(dir: string, layers: LayerSource[], opts: Partial<FlattenOptions> = {}): Promise<FlatTree> {
  return flattenLayers(layers, { spoolDir: dir, ...opts });
}

test('flattenLayers() applies whiteouts and opaque dirs to lower layers only', async () => {
  await withTempDir(async (dir) => {
    const l1 = await layer([
      { name: 'app/', type: 'directory' }, { name: 'app/keep.txt', content: 'keep' }, { name: 'app/gone.txt', content: 'gone' },
      { name: 'app/data/a.txt', content: 'a' }, { name: 'opt/old/x', content: 'x' }, { name: 'opt/old/sub/y', content: 'y' },
    ]);
    const l2 = await layer([
      { name: 'app/.wh.gone.txt', content: '' },
      // same-layer file next to its own whiteout: whiteouts only hide lower layers
      { name: 'app/new.txt', content: 'new' }, { name: 'app/.wh.new.txt', content: '' },
      // opaque marker before its directory, as umoci writes it
      { name: './opt/old/.wh..wh..opq', content: '' }, { name: './opt/old/', type: 'directory', mode: 0o750 }, { name: './opt/old/fresh', content: 'fresh' },
    ], 'none');
    const l3 = await layer([{ name: 'app/.wh.data', content: '' }], 'zstd');
    const t = await flatten(dir, [l1, l2, l3]);
    assert.deepEqual(paths(t), ['', 'app', 'app/keep.txt', 'app/new.txt', 'opt', 'opt/old', 'opt/old/fresh']);
    assert.equal(await text(t, 'app/new.txt'), 'new');
    assert.equal(await text(t, 'opt/old/fresh'), 'fresh');
    assert.equal(t.stats.whiteouts, 3);
    assert.equal(t.stats.opaqueDirs, 1);
    assert.equal(get(t, 'opt/old')?.mode, 0o755, 'owner r/x propagated to other');
    assert.ok(paths(t).every((p) => !p.includes('.wh.')));
  });
});

test('flattenLayers() replaces files and directories across layers and creates missing parents', async () => {
  await withTempDir(async (dir) => {
    const l1 = await layer([{ name: 'etc/hostname', content: 'one' }, { name: 'd/x', content: 'x' }, { name: 'f', content: 'file' }]);
    const l2 = await layer([{ name: 'etc/hostname', content: 'two' }, { name: 'd', type: 'symlink', linkname: 'etc' }, { name: 'f/', type: 'directory' }, { name: 'deep/a/b/c', content: 'c' }]);
    const t = await flatten(dir, [l1, l2]);
    assert.equal(await text(t, 'etc/hostname'), 'two');
    assert.equal(get(t, 'd')?.type, 'symlink');
    assert.equal(get(t, 'd/x'), undefined);
    assert.equal(get(t, 'f')?.type, 'dir');
    assert.deepEqual(['deep', 'deep/a', 'deep/a/b'].map((p) => get(t, p)?.type), ['dir', 'dir', 'dir']);
  });
});

test('flattenLayers() keeps hard links as shared contents with a per-directory link key', async () => {
  await withTempDir(async (dir) => {
    const l1 = await layer([
      { name: 'app/hardlink-to-hello', content: 'hello\n' },
      { name: 'app/hello.txt', type: 'link', linkname: 'app/hardlink-to-hello' },
      { name: 'other/elsewhere', type: 'link', linkname: './app/hello.txt' },
      { name: 'bad', type: 'link', linkname: 'missing' },
    ]);
    const t = await flatten(dir, [l1]);
    assert.equal(await text(t, 'app/hello.txt'), 'hello\n');
    assert.equal(await text(t, 'other/elsewhere'), 'hello\n');
    const a = get(t, 'app/hello.txt'), b = get(t, 'app/hardlink-to-hello');
    assert.ok(a?.hardlinkKey && a.hardlinkKey === b?.hardlinkKey);
    assert.equal(get(t, 'other/elsewhere')?.hardlinkKey, undefined, 'no cross-directory link groups');
    assert.equal(t.stats.hardlinks, 2);
    assert.equal(get(t, 'bad'), undefined);
    assert.match(t.warnings[0].message, /hard link "bad".*"missing" does not exist/);
  });
});

test('flattenLayers() handles devices by policy and counts them', async () => {
  await withTempDir(async (dir) => {
    const specs: TarSpec[] = [{ name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 }, { name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0 }, { name: 'run/fifo', type: 'fifo' }];
    const skip = await flatten(dir, [await layer(specs)]);
    assert.equal(skip.stats.devicesSkipped, 2);
    assert.deepEqual(paths(skip), ['', 'dev', 'run', 'run/fifo']);
    const empty = await flatten(dir, [await layer(specs)], { devices: 'empty-file' });
    assert.equal(empty.stats.devicesEmptied, 2);
    assert.deepEqual([get(empty, 'dev/null')?.type, get(empty, 'dev/null')?.mode], ['file', 0]);
    const keep = await flatten(dir, [await layer(specs)], { devices: 'keep' });
    assert.deepEqual([get(keep, 'dev/null')?.type, get(keep, 'dev/null')?.rdev], ['chardev', 0x103]);
  });
});

test('flattenLayers() strips setuid/setgid and normalises permissions by policy', async () => {
  await withTempDir(async (dir) => {
    const specs: TarSpec[] = [
      { name: 'usr/bin/suid-demo', content: 'x', mode: 0o4755 }, { name: 'usr/bin/sgid', content: 'x', mode: 0o2711 },
      { name: 'root/', type: 'directory', mode: 0o700 }, { name: 'root/secret', content: 's', mode: 0o600 },
      { name: 'tmp/', type: 'directory', mode: 0o1777 }, { name: 'noread', content: 'n', mode: 0o200 },
    ];
    const t = await flatten(dir, [await layer(specs)]);
    const mode = (p: string) => get(t, p)?.mode;
    assert.deepEqual([mode('usr/bin/suid-demo'), mode('usr/bin/sgid'), mode('root'), mode('root/secret'), mode('tmp'), mode('noread')],
      [0o755, 0o755, 0o755, 0o644, 0o1777, 0o200]);
    assert.equal(t.stats.setidStripped, 2);
    const kept = await flatten(dir, [await layer(specs)], { permissions: 'keep', keepSetid: true });
    assert.deepEqual([get(kept, 'usr/bin/suid-demo')?.mode, get(kept, 'root/secret')?.mode], [0o4755, 0o600]);
  });
});

test('flattenLayers() refuses each hostile layer by default, naming layer, entry and rule; lenient skips the entries', async () => {
  await withTempDir(async (dir) => {
    const limits: Partial<FlattenOptions> = { decompress: { maxBytes: 8 * 2 ** 20 }, tar: { maxPaxBytes: 64 * 1024 } };
    for (const [tag, img] of Object.entries(await hostileImages())) {
      const sources = img.layers.map((l, i): LayerSource => ({ digest: `sha256:${tag}-${i}`, open: async function* () { yield l.data; } }));
      await assert.rejects(flatten(dir, sources, limits), (e) => {
        assert.ok(isGridboxError(e, img.code), `${tag}: ${String(e)}`);
        if (img.rule) {
          assert.equal(e.fields.rule, img.rule, `${tag}: ${e.message}`);
          assert.equal(e.fields.path, img.entry, tag);
          assert.match(e.fields.layer as string, new RegExp(`^sha256:${tag}-\\d$`));
          assert.ok(e.message.includes(JSON.stringify(img.entry)) && e.message.includes(`rule ${img.rule}`) && e.message.includes(`sha256:${tag}-`), `${tag}: ${e.message}`);
        }
        return true;
      });
      if (!img.lenientPaths) {
        await assert.rejects(flatten(dir, sources, { ...limits, lenient: true }), (e) => isGridboxError(e, img.code), `${tag} fails even when lenient`);
        continue;
      }
      const t = await flatten(dir, sources, { ...limits, lenient: true });
      assert.deepEqual(paths(t).slice(1), img.lenientPaths, tag);
      assert.equal(t.stats.unsafeSkipped, 1, tag);
      assert.deepEqual(t.warnings.map((w) => [w.code, w.rule, w.path]), [['OCI_UNSAFE_PATH', img.rule, img.entry]], tag);
    }
  });
});

test('flattenLayers() publishes shapes Docker accepts: absolute names, ".." inside, writes through symlinked parents', async () => {
  await withTempDir(async (dir) => {
    const h = await harmlessImage();
    const t = await flatten(dir, h.layers.map((l, i): LayerSource => ({ digest: `sha256:harmless-${i}`, open: async function* () { yield l.data; } })));
    assert.deepEqual(t.warnings, []);
    for (const [p, content] of Object.entries(h.files)) assert.equal(await text(t, p), content, p);
    for (const [p, target] of Object.entries(h.symlinks)) assert.deepEqual([get(t, p)?.type, get(t, p)?.target], ['symlink', target], p);
    assert.equal(get(t, 'lib/libx.so'), undefined, 'written at the real path, not below the symlink');
    assert.equal(t.stats.throughSymlinks, 2);
  });
});

test('flattenLayers() follows symlinked parents for whiteouts and hard-link targets, and refuses devices by policy', async () => {
  await withTempDir(async (dir) => {
    const l1 = await layer([{ name: 'usr/bin/tool', content: 'tool' }, { name: 'usr/bin/old', content: 'old' }, { name: 'bin', type: 'symlink', linkname: '/usr/bin' }]);
    const l2 = await layer([{ name: 'bin/.wh.old', content: '' }, { name: 'tool-link', type: 'link', linkname: 'bin/tool' }, { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 }]);
    const t = await flatten(dir, [l1, l2]);
    assert.deepEqual(paths(t), ['', 'bin', 'dev', 'tool-link', 'usr', 'usr/bin', 'usr/bin/tool']);
    assert.equal(await text(t, 'tool-link'), 'tool');
    await assert.rejects(flatten(dir, [l1, l2], { devices: 'refuse' }), (e) => isGridboxError(e, 'OCI_UNSAFE_PATH') && e.fields.rule === 'device' && /"dev\/null"/.test(e.message));
    const lenient = await flatten(dir, [l1, l2], { devices: 'refuse', lenient: true });
    assert.equal(get(lenient, 'dev/null'), undefined);
    assert.equal(lenient.warnings[0]?.rule, 'device');
  });
});

test('symlinkEscapes() is Docker\'s lexical check from the link\'s directory', () => {
  assert.equal(symlinkEscapes('a', '../x'), true);
  assert.equal(symlinkEscapes('a/b/c', '../../x'), false);
  assert.equal(symlinkEscapes('a/b/c', '../../../x'), true);
  assert.equal(symlinkEscapes('a/b/c', 'd/../../../../x'), true);
  assert.equal(symlinkEscapes('a', '/../../etc'), false, 'absolute targets resolve inside the image');
  assert.equal(symlinkEscapes('a', './.'), false);
});

test('flattenLayers() fails a corrupt layer with a clear error', async () => {
  await withTempDir(async (dir) => {
    const tar = await buildTar([{ name: 'f', content: Buffer.alloc(40_000, 1) }]);
    const gz = gzip(tar);
    const truncated: LayerSource = { digest: 'sha256:trunc', open: async function* () { yield gz.subarray(0, gz.length - 30); } };
    await assert.rejects(flatten(dir, [truncated]), (e) => isGridboxError(e, 'TAR_INVALID') && /sha256:trunc/.test(e.message));
    const bomb: LayerSource = { digest: 'sha256:bomb', open: async function* () { yield gzip(Buffer.concat([rawHeader('z', '0', Buffer.alloc(4 * 2 ** 20))])); } };
    await assert.rejects(flatten(dir, [bomb], { decompress: { maxBytes: 2 ** 20 } }), (e) => isGridboxError(e, 'TAR_LIMIT') && /sha256:bomb/.test(e.message));
    const pax: LayerSource = await layer([{ name: 'p', content: 'x', pax: { comment: 'c'.repeat(100_000) } }]);
    await assert.rejects(flatten(dir, [pax], { tar: { maxPaxBytes: 65536 } }), (e) => isGridboxError(e, 'TAR_LIMIT') && /PAX header/.test(e.message));
  });
});

test('disposeFlatTree() removes the spool files', async () => {
  await withTempDir(async (dir) => {
    const t = await flatten(dir, [await layer([{ name: 'a', content: 'a' }]), await layer([{ name: 'b', content: 'b' }])]);
    assert.equal((await readdir(dir)).length, 2);
    await disposeFlatTree(t);
    assert.deepEqual(await readdir(dir), []);
  });
});

/** A sink that "stores" bytes as their text, counting what it was given. */
function textSink(): ContentSink & { given: string[] } {
  const given: string[] = [];
  return {
    given,
    put: async (bytes) => { given.push(Buffer.from(bytes).toString()); return { stored: Promise.resolve(`stored:${Buffer.from(bytes).toString()}`) }; },
    flush: () => undefined,
  };
}

test('flattenLayers() gives a sink only the files no upper layer shadows and spools the rest', async () => {
  await withTempDir(async (dir) => {
    const l1 = await layer([
      { name: 'keep.txt', content: 'keep' }, { name: 'over.txt', content: 'old' }, { name: 'gone/a', content: 'a' },
      { name: 'opq/b', content: 'b' }, { name: 'file-then-dir', content: 'f' }, { name: 'dir/c', content: 'c' },
    ]);
    const l2 = await layer([
      { name: 'over.txt', content: 'new' }, { name: '.wh.gone', content: '' }, { name: 'opq/.wh..wh..opq', content: '' },
      { name: 'file-then-dir/', type: 'directory' }, { name: 'dir/', type: 'directory' }, { name: 'link', type: 'link', linkname: 'keep.txt' },
    ]);
    const sink = textSink();
    const t = await flatten(dir, [l1, l2], { sink });
    assert.deepEqual(sink.given.sort(), ['c', 'keep', 'new'], 'shadowed files (over.txt, gone/a, opq/b, file-then-dir) are not stored');
    assert.equal(t.contents.get('keep.txt')?.stored, 'stored:keep');
    assert.equal(t.contents.get('link')?.stored, 'stored:keep', 'a hard link shares the stored content');
    assert.equal(t.contents.get('over.txt')?.stored, 'stored:new');
    assert.equal(t.contents.get('dir/c')?.stored, 'stored:c', 'a directory entry above does not shadow');
    assert.deepEqual(paths(t), ['', 'dir', 'dir/c', 'file-then-dir', 'keep.txt', 'link', 'opq', 'over.txt']);
  });
});

test('flattenLayers() uses remembered layers without opening them, and reads again when one lacks needed bytes', async () => {
  await withTempDir(async (dir) => {
    const base = await layer([{ name: 'a', content: 'aaa' }, { name: 'b', content: 'bbb' }]);
    const top1 = await layer([{ name: 'b', content: 'B1' }]);
    for (const d of ['1', '2', '3', '4']) await mkdir(join(dir, d));
    const remembered = new Map<string, LayerRecord[]>();
    let opens = 0;
    const tracked = (l: LayerSource, key: string): LayerSource => ({
      digest: key,
      open: () => { opens++; return l.open(); },
      remembered: async () => remembered.get(key),
      remember: (r) => { remembered.set(key, r); },
    });
    const first = await flatten(join(dir, '1'), [tracked(base, 'base'), tracked(top1, 'top1')], { sink: textSink() });
    assert.equal(opens, 2);
    assert.equal(first.contents.get('a')?.stored, 'stored:aaa');
    assert.deepEqual(remembered.get('base')!.map((r) => [r.entry.path, r.stored]), [['a', 'stored:aaa'], ['b', undefined]], 'b was shadowed, so spooled, not stored');

    // Only the top layer changed, and still shadows b: the base comes from memory.
    opens = 0;
    const top2 = await layer([{ name: 'b', content: 'B2' }, { name: 'c', content: 'C' }]);
    const second = await flatten(join(dir, '2'), [tracked(base, 'base'), tracked(top2, 'top2')], { sink: textSink() });
    assert.equal(opens, 1, 'only the new top layer is read');
    assert.deepEqual([second.contents.get('a')?.stored, second.contents.get('b')?.stored, second.contents.get('c')?.stored], ['stored:aaa', 'stored:B2', 'stored:C']);

    // A top layer that no longer shadows b: the base is read again for b's bytes.
    opens = 0;
    const top3 = await layer([{ name: 'c', content: 'C3' }]);
    const third = await flatten(join(dir, '3'), [tracked(base, 'base'), tracked(top3, 'top3')], { sink: textSink() });
    assert.equal(opens, 2);
    assert.equal(third.contents.get('b')?.stored, 'stored:bbb');

    // An upper entry meant to shadow b is refused (a hard link to nothing): b stays, so the image is read again.
    remembered.set('base', [{ entry: remembered.get('base')![0].entry, stored: 'stored:aaa' }, { entry: { ...remembered.get('base')![0].entry, path: 'b', size: 3 } }]);
    opens = 0;
    const top4 = await layer([{ name: 'b', type: 'link', linkname: 'missing' }]);
    const fourth = await flatten(join(dir, '4'), [tracked(base, 'base'), tracked(top4, 'top4')], { sink: textSink() });
    assert.equal(opens, 3, 'top layer, then both layers again');
    assert.equal(await text(fourth, 'b'), 'bbb', 'shadowed as far as reading could tell, so spooled');
  });
});
