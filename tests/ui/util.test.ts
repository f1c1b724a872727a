/** Cursor offsets (Jupyter counts code points, JS counts UTF-16 units) and formatting helpers. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { basename, codepointToJsIndex, formatDuration, jsIndexToCodepoint } from '../../platform/ui/src/util';

test('cursor offsets survive astral characters', () => {
  const code = 'x = "😀"; y';
  const jsEnd = code.length; // the emoji is two UTF-16 units
  assert.equal(jsIndexToCodepoint(code, jsEnd), jsEnd - 1);
  assert.equal(codepointToJsIndex(code, jsEnd - 1), jsEnd);
  assert.equal(codepointToJsIndex('abc', 2), 2);
});

test('durations read naturally', () => {
  assert.equal(formatDuration(12.4), '12 ms');
  assert.equal(formatDuration(1530), '1.5 s');
  assert.equal(formatDuration(125_000), '2 min 5 s');
});

test('basename', () => {
  assert.equal(basename('a/b/c.ipynb'), 'c.ipynb');
  assert.equal(basename('top.txt'), 'top.txt');
});
