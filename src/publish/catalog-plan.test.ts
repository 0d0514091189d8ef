// Table tests for the catalog plan against CernVM-FS's rules: `.cvmfsdirtab` (dirtab.cc, pathspec: strict
// wildcards in positive rules, relaxed ones in negations, only directories, leading dots matched), explicit
// `.cvmfscatalog` mountpoints, and the autocatalog balancer (catalog_balancer_impl.h: split a catalog above
// max, post-order, each directory down to max/2 by cutting its heaviest child of at least min).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { catalogOf, catalogWeight, matchDirtab, parseDirtab, planCatalogs, type PlanTree } from './catalog-plan.js';

/** A nested object is a directory, null a file, 'link' a symlink (not a directory for the plan). */
type Spec = { [name: string]: Spec | null | 'link' };

function treeOf(spec: Spec): PlanTree & { dirs: Set<string> } {
  const kids = new Map<string, string[]>();
  const dirs = new Set<string>(['']);
  const todo: [string, Spec][] = [['', spec]];
  while (todo.length > 0) {
    const [path, s] = todo.pop()!;
    const list: string[] = [];
    kids.set(path, list);
    for (const [name, v] of Object.entries(s)) {
      const p = `${path}/${name}`;
      list.push(p);
      if (v !== null && v !== 'link') { dirs.add(p); todo.push([p, v]); }
    }
  }
  return { dirs, isDir: (p) => dirs.has(p), children: (p) => kids.get(p) ?? [] };
}

/** `n` files named f0…f(n-1). */
function files(n: number, extra: Spec = {}): Spec {
  const s: Spec = {};
  for (let i = 0; i < n; i++) s[`f${i}`] = null;
  return { ...s, ...extra };
}

const SOFTWARE: Spec = {
  software: {
    i686: { '1.0': files(2), '2.0': files(2), common: files(1) },
    x86_64: { '1.0': files(2), common: {} },
    'README': null,
  },
  'grid-certificates': files(3),
  scripts: files(1),
  '.hidden': { inner: {} },
  linkdir: 'link',
};

const sorted = (a: Iterable<string>) => [...a].sort();

test('dirtab: table of patterns, negations and wildcards', () => {
  const t = treeOf(SOFTWARE);
  const cases: { name: string; dirtab: string; want: string[] }[] = [
    {
      name: 'the CernVM-FS documentation example',
      dirtab: '# Nested catalogs for every platform\n/software/*\n# Nested catalogs for every version\n/software/*/*\n! */common\n/grid-certificates\n',
      want: ['/software/i686', '/software/i686/1.0', '/software/i686/2.0', '/software/x86_64', '/software/x86_64/1.0', '/grid-certificates'],
    },
    { name: '* stays inside one component in positive rules', dirtab: '/software/*', want: ['/software/i686', '/software/x86_64'] },
    { name: '? is one character', dirtab: '/software/*/?.0', want: ['/software/i686/1.0', '/software/i686/2.0', '/software/x86_64/1.0'] },
    { name: 'only directories match (files and symlinks do not)', dirtab: '/*', want: ['/software', '/grid-certificates', '/scripts', '/.hidden'] },
    { name: 'wildcards match a leading dot (GLOB_PERIOD)', dirtab: '/*/inner', want: ['/.hidden/inner'] },
    { name: 'a relative negation spans slashes', dirtab: '/software/*/*\n!*/1.0', want: ['/software/i686/2.0', '/software/i686/common', '/software/x86_64/common'] },
    { name: 'an absolute negation matches the whole path, not its children', dirtab: '/software/*\n/software/*/*\n!/software/i686', want: ['/software/x86_64', '/software/i686/1.0', '/software/i686/2.0', '/software/i686/common', '/software/x86_64/1.0', '/software/x86_64/common'] },
    { name: 'a relative negation without wildcard never matches an absolute path', dirtab: '/software/*\n! i686', want: ['/software/i686', '/software/x86_64'] },
    { name: 'negation ? spans a slash too', dirtab: '/software/*/*\n!/software?i686?1.0', want: ['/software/i686/2.0', '/software/i686/common', '/software/x86_64/1.0', '/software/x86_64/common'] },
    { name: 'leading blanks are skipped; blank and comment lines ignored; doubled and trailing slashes fine', dirtab: '\n   # /scripts\n\t /software//i686/\n/scripts/\n', want: ['/software/i686', '/scripts'] },
    { name: 'trailing blanks and a CR are part of the pattern, as in dirtab.cc', dirtab: '/software/i686 \n/scripts\r\n', want: [] },
    { name: 'a relative positive rule is invalid and ignored', dirtab: 'software/*\nscripts', want: [] },
    { name: 'a pattern naming nothing matches nothing', dirtab: '/nope/*\n/software/i686/1.0/f0', want: [] },
    { name: 'the same directory from two rules is listed once', dirtab: '/software/i686\n/software/i68?', want: ['/software/i686'] },
  ];
  for (const c of cases) assert.deepEqual(sorted(matchDirtab(c.dirtab, '', t)), sorted(c.want), c.name);
});

test('dirtab: escapes are literal, regex metacharacters are plain text, base shifts the patterns', () => {
  const t = treeOf({ 'a*b': {}, axb: {}, 'v1.2': {}, v1x2: {}, sub: { '(x)': {}, 'y+': {} } });
  assert.deepEqual(sorted(matchDirtab('/a\\*b', '', t)), ['/a*b']);
  assert.deepEqual(sorted(matchDirtab('/a*b', '', t)), ['/a*b', '/axb']);
  assert.deepEqual(sorted(matchDirtab('/v1.2', '', t)), ['/v1.2']);
  // A dirtab at the top of a source published at /sub: its patterns and negations are relative to /sub.
  assert.deepEqual(sorted(matchDirtab('/*\n!/y+', '/sub', t)), ['/sub/(x)']);
});

test('parseDirtab sorts lines into rules and reports the ones CernVM-FS refuses', () => {
  const tab = parseDirtab('# c\n/a/*\n!  */b\nrel/x\n!\n   \n');
  assert.equal(tab.include.length, 1);
  assert.equal(tab.exclude.length, 1);
  assert.deepEqual(tab.invalid, ['rel/x']);
  assert.ok(tab.exclude[0].test('/q/r/b') && tab.exclude[0].test('/q/b/') && !tab.exclude[0].test('/q/bb'));
});

test('autocatalogs: table of splits (max, min, post-order, explicit mountpoints)', () => {
  const cases: { name: string; spec: Spec; max: number; min?: number; explicit?: string[]; want: string[] }[] = [
    { name: 'at or below max nothing is split', spec: { a: files(60), b: files(37) }, max: 100, min: 1, want: [''] }, // 1 + (1+60) + (1+37) = 100
    { name: 'max 0 never splits', spec: { a: files(500) }, max: 0, want: [''] },
    { name: 'one cut of the heaviest child brings the root to max/2', spec: { a: files(59), b: files(29), c: files(9) }, max: 100, min: 1, want: ['', '/a'] },
    { name: 'cuts repeat while the root is above max/2', spec: { a: files(40), b: files(40), c: files(40) }, max: 100, min: 1, want: ['', '/a', '/b'] },
    { name: 'post-order: an inner directory above max/2 is split below itself first', spec: { a: { a1: files(39), a2: files(34) }, b: files(30) }, max: 100, min: 1, want: ['', '/a', '/a/a1'] },
    { name: 'a child lighter than min is never cut', spec: { a: files(40), b: files(40), c: files(40) }, max: 100, min: 42, want: [''] },
    { name: 'min is inclusive', spec: { a: files(40), b: files(40), c: files(40) }, max: 100, min: 41, want: ['', '/a', '/b'] },
    { name: 'a flat directory of many files cannot be split', spec: files(500), max: 100, min: 1, want: [''] },
    { name: 'ties go to the first child in order', spec: { x: files(30), y: files(30), z: files(30), w: files(30) }, max: 100, min: 1, want: ['', '/x', '/y', '/z'] },
    { name: 'an explicit mountpoint weighs 1 in its parent', spec: { a: files(80), b: files(30) }, max: 100, min: 1, explicit: ['/a'], want: ['', '/a'] },
    { name: 'an overflowing explicit catalog is split inside', spec: { m: { p: files(70), q: files(70) } }, max: 100, min: 1, explicit: ['/m'], want: ['', '/m', '/m/p', '/m/q'] },
  ];
  for (const c of cases) {
    const t = treeOf(c.spec);
    assert.deepEqual(planCatalogs(t, { explicit: c.explicit ?? [], autocatalogMax: c.max, autocatalogMin: c.min }), c.want, c.name);
  }
});

test('autocatalogs: the default min is max/100 (CernVM-FS: 1000 of 100000)', () => {
  const spec: Spec = {};
  for (let i = 0; i < 100; i++) spec[`d${String(i).padStart(2, '0')}`] = files(14); // 100 children of weight 15: 1501 entries
  const t = treeOf(spec);
  // max 1000 (so min 10): cut children of 15 until the root is at most 500: 1501 - 14k <= 500, k = 72.
  assert.equal(planCatalogs(t, { explicit: [], autocatalogMax: 1000 }).length, 1 + 72);
  assert.deepEqual(planCatalogs(t, { explicit: [], autocatalogMax: 1000, autocatalogMin: 16 }), ['']);
});

test('autocatalogs: every resulting catalog holds at most max entries when the tree allows it, and no new catalog is lighter than min', () => {
  // A wide and deep generated tree: 8 top dirs x 8 subdirs x 30 files, plus a deep chain.
  const spec: Spec = {};
  for (let i = 0; i < 8; i++) { const d: Spec = {}; for (let j = 0; j < 8; j++) d[`s${j}`] = files(30 + i + j); spec[`t${i}`] = d; }
  let chain: Spec = files(5);
  for (let i = 0; i < 50; i++) chain = { [`c${i}`]: chain, ...files(2) };
  spec.chain = chain;
  const t = treeOf(spec);
  const max = 600, min = 20;
  const mounts = planCatalogs(t, { explicit: [], autocatalogMax: max, autocatalogMin: min });
  const set = new Set(mounts);
  assert.ok(mounts.length > 3);
  for (const m of mounts) {
    const w = catalogWeight(t, m, set);
    assert.ok(w <= max, `${m || '/'} holds ${w} > ${max}`);
    if (m !== '') assert.ok(catalogWeight(t, m, new Set([m])) >= min, `${m} is lighter than min`);
  }
  // The plan is a function of the tree: the same tree gives the same plan (republishing keeps catalogs).
  assert.deepEqual(planCatalogs(t, { explicit: [], autocatalogMax: max, autocatalogMin: min }), mounts);
});

test('autocatalogs: a very deep tree does not overflow the stack', () => {
  let spec: Spec = files(3);
  for (let i = 0; i < 4_000; i++) spec = { d: spec }; // deeper than a recursive walk could go in 1 MB of stack
  const t = treeOf(spec);
  const mounts = planCatalogs(t, { explicit: [], autocatalogMax: 400, autocatalogMin: 20 });
  assert.ok(mounts.length > 1);
  for (const m of mounts) assert.ok(catalogWeight(t, m, new Set(mounts)) <= 400);
});

test('catalogOf finds the deepest mountpoint at or above a path; explicit non-directories are ignored', () => {
  const mounts = new Set(['', '/a', '/a/b/c']);
  assert.equal(catalogOf('', mounts), '');
  assert.equal(catalogOf('/x/y', mounts), '');
  assert.equal(catalogOf('/a', mounts), '/a');
  assert.equal(catalogOf('/a/b', mounts), '/a');
  assert.equal(catalogOf('/a/b/c/d/e', mounts), '/a/b/c');
  assert.equal(catalogOf('/ab', mounts), '');
  const t = treeOf({ d: {}, f: null });
  assert.deepEqual(planCatalogs(t, { explicit: ['/d', '/f', '/missing'], autocatalogMax: 0 }), ['', '/d']);
});
