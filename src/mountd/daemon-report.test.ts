// The daemon's report to its front: what the node front rebuilds prints exactly the daemon's own line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GridboxError, describeError, edgeOf } from '../errors.js';
import { failReport, parseReport, readyReport } from './daemon-report.js';

test('a ready report carries the revision, pid and the lines to print', () => {
  const r = parseReport(readyReport({ revision: 7, pid: 4242 }, ['mounted x', '  second line']));
  assert.deepEqual(r, { ok: true, ready: { revision: 7, pid: 4242 }, lines: ['mounted x', '  second line'] });
  assert.deepEqual(parseReport(readyReport({ revision: 0, pid: 1 })), { ok: true, ready: { revision: 0, pid: 1 }, lines: [] });
});

test('a fail report rebuilds an error with the same code, exit and printed line', () => {
  const e = new GridboxError('MOUNT_POINT_BUSY', 'Cannot mount at "/m": busy', { cause: new Error('EBUSY: stat') });
  const text = failReport(e);
  assert.match(text, /^fail 1 MOUNT_POINT_BUSY\ngridbox: Cannot mount at "\/m": busy \[MOUNT_POINT_BUSY\]: EBUSY: stat\n$/);
  const r = parseReport(text);
  assert.ok(r !== undefined && !r.ok);
  assert.equal(r.error.code, 'MOUNT_POINT_BUSY');
  assert.equal(edgeOf(r.error).exit, edgeOf(e).exit);
  assert.equal(describeError(r.error), describeError(e));
  // Not a GridboxError: INTERNAL.
  const internal = parseReport(failReport(new TypeError('x is not a function')));
  assert.ok(internal !== undefined && !internal.ok);
  assert.equal(internal.error.code, 'INTERNAL');
  assert.equal(describeError(internal.error), 'x is not a function [INTERNAL]');
});

test('anything else is no report (the fronts then fall back to the log or to main.js)', () => {
  for (const text of ['', '\n', 'ready', 'ready {not json}', 'ready {"revision":1}', 'fail', 'fail x Y', 'mounted ...']) {
    assert.equal(parseReport(text), undefined, JSON.stringify(text));
  }
  const unknown = parseReport('fail 3 SOMETHING_NEW\ngridbox: m [SOMETHING_NEW]\n');
  assert.ok(unknown !== undefined && !unknown.ok);
  assert.equal(unknown.error.code, 'INTERNAL', 'a code this version does not know');
});
