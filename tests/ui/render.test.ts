/** Output renderers: every mime type, truncation, and sanitizing of untrusted markup. */
import './setup-dom';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ansiToHtml, fixCarriageReturns } from '../../platform/ui/src/ansi';
import { extractMath } from '../../platform/ui/src/markdown';
import { pickMime, renderMime, renderOutput, setWidgetRenderer, truncationPoint, WIDGET_VIEW_MIME } from '../../platform/ui/src/render';
import { sanitize } from '../../platform/ui/src/sanitize';

const settle = () => new Promise((r) => setTimeout(r, 50));

test('stream output is escaped text', () => {
  const el = renderOutput({ output_type: 'stream', name: 'stdout', text: ['<b>bold?</b>', ' & more\n'] });
  assert.equal(el.querySelector('pre')!.textContent, '<b>bold?</b> & more\n');
  assert.equal(el.querySelector('b'), null);
  assert.ok(el.classList.contains('zh-stdout'));
});

test('stderr is marked as such', () => {
  const el = renderOutput({ output_type: 'stream', name: 'stderr', text: 'warning\n' });
  assert.ok(el.classList.contains('zh-stderr'));
});

test('error traceback keeps ANSI colours as styled spans', () => {
  const el = renderOutput({ output_type: 'error', ename: 'ZeroDivisionError', evalue: 'division by zero', traceback: ['\x1b[0;31mZeroDivisionError\x1b[0m: division by zero'] });
  const span = el.querySelector('span')!;
  assert.equal(span.textContent, 'ZeroDivisionError');
  assert.match(span.getAttribute('style')!, /ansi-red/);
  assert.equal(el.textContent, 'ZeroDivisionError: division by zero');
});

test('ansi: escapes html, handles 256 colours, bold and reset', () => {
  assert.equal(ansiToHtml('<x>'), '&lt;x&gt;');
  assert.match(ansiToHtml('\x1b[1;38;5;196mhot\x1b[0m cold'), /^<span style="color:rgb\(255,0,0\);font-weight:bold">hot<\/span> cold$/);
  assert.equal(ansiToHtml('a\x1b[2Kb'), 'ab');
});

test('carriage returns overwrite like a terminal (progress bars)', () => {
  assert.equal(fixCarriageReturns('10%\r50%\r100%\ndone'), '100%\ndone');
  assert.equal(fixCarriageReturns('abc\bd'), 'abd');
});

test('mime priority prefers rich output, falls back to text/plain', () => {
  assert.equal(pickMime({ 'text/plain': 'x', 'text/html': '<b>x</b>' }), 'text/html');
  assert.equal(pickMime({ 'text/plain': 'x', 'image/png': 'AAA' }), 'image/png');
  assert.equal(pickMime({ 'application/x-unknown': 1 }), null);
});

test('execute_result text/plain', () => {
  const el = renderOutput({ output_type: 'execute_result', data: { 'text/plain': '42' }, execution_count: 1 });
  assert.equal(el.textContent, '42');
});

test('png and jpeg become data-URL images with metadata size', () => {
  const el = renderOutput({ output_type: 'display_data', data: { 'image/png': 'iVBORw0K\nGgo=\n', 'text/plain': '<Figure>' }, metadata: { 'image/png': { width: 120 } } });
  const img = el.querySelector('img')!;
  assert.equal(img.getAttribute('src'), 'data:image/png;base64,iVBORw0KGgo=');
  assert.equal(img.width, 120);
  const jpg = renderMime('image/jpeg', '/9j/4AAQ');
  assert.equal(jpg.querySelector('img')!.getAttribute('src'), 'data:image/jpeg;base64,/9j/4AAQ');
});

test('svg is shown through <img>, never inlined (scripts in it cannot run)', () => {
  const svg = '<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned=true"><script>window.__pwned=true</script><circle r="4"/></svg>';
  const el = renderMime('image/svg+xml', svg);
  assert.equal(el.querySelector('svg'), null);
  assert.equal(el.querySelector('script'), null);
  const img = el.querySelector('img')!;
  assert.ok(img.getAttribute('src')!.startsWith('data:image/svg+xml'));
  assert.equal((globalThis as any).window.__pwned, false);
});

test('html output: tables kept, script and handlers removed', async () => {
  const html =
    '<table><tr><th>a</th></tr><tr><td>1</td></tr></table>' +
    '<script>window.__pwned=true</script>' +
    '<img src="x" onerror="window.__pwned=true">' +
    '<a href="javascript:window.__pwned=true">click</a>' +
    '<iframe srcdoc="<script>parent.__pwned=true</script>"></iframe>' +
    '<svg><script>window.__pwned=true</script></svg>' +
    '<form action="/api/shutdown"><button>x</button></form>';
  const el = renderMime('text/html', html);
  document.body.append(el);
  await settle();
  assert.ok(el.querySelector('table td'));
  assert.equal(el.querySelector('script'), null);
  assert.equal(el.querySelector('iframe'), null);
  assert.equal(el.querySelector('form'), null);
  const img = el.querySelector('img')!;
  assert.equal(img.getAttribute('onerror'), null);
  const a = el.querySelector('a')!;
  assert.ok(!(a.getAttribute('href') ?? '').startsWith('javascript:'));
  assert.equal((globalThis as any).window.__pwned, false);
  el.remove();
});

test('sanitize: links open in a new tab without opener', () => {
  const out = sanitize('<a href="https://example.org/">x</a>');
  assert.match(out, /target="_blank"/);
  assert.match(out, /rel="noopener noreferrer"/);
});

test('markdown output is rendered and sanitized', async () => {
  const el = renderMime('text/markdown', '# Title\n\n**bold** <img src=x onerror="window.__pwned=true">');
  await settle();
  assert.equal(el.querySelector('h1')!.textContent, 'Title');
  assert.equal(el.querySelector('strong')!.textContent, 'bold');
  assert.equal(el.querySelector('img')!.getAttribute('onerror'), null);
});

test('markdown math is typeset with KaTeX', async () => {
  const el = renderMime('text/markdown', 'Inline $a_1^2$ and display $$\\frac{1}{2}$$');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(el.querySelectorAll('.katex').length, 2);
  assert.ok(el.querySelector('.katex-display'));
});

test('math extraction leaves code and prices alone', () => {
  const { text, math } = extractMath('cost $5 and `$x$` but $y_1$');
  assert.equal(math.length, 1);
  assert.equal(math[0].tex, 'y_1');
  assert.ok(text.includes('`$x$`'));
});

test('text/latex output is typeset', async () => {
  const el = renderMime('text/latex', '$$x^2$$');
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(el.querySelector('.katex'));
});

test('application/json is pretty-printed text', () => {
  const el = renderMime('application/json', { a: [1, '<b>'] });
  assert.equal(el.querySelector('pre')!.textContent, '{\n  "a": [\n    1,\n    "<b>"\n  ]\n}');
});

test('large text is truncated with a working "show more"', () => {
  const text = Array.from({ length: 2000 }, (_, i) => `line ${i}`).join('\n');
  const el = renderOutput({ output_type: 'stream', name: 'stdout', text });
  const pre = el.querySelector('pre')!;
  assert.ok(pre.textContent!.length < text.length);
  const btn = el.querySelector('button.zh-show-more') as HTMLButtonElement;
  assert.ok(btn);
  btn.click();
  assert.equal(pre.textContent, text);
  assert.equal(el.querySelector('button.zh-show-more'), null);
});

test('truncation point respects both limits', () => {
  assert.equal(truncationPoint('short'), -1);
  assert.equal(truncationPoint('a\nb\nc\nd', 100, 2), 4);
  assert.equal(truncationPoint('x'.repeat(50), 10, 100), 10);
});

test('unknown output types say so instead of failing', () => {
  const el = renderOutput({ output_type: 'bogus' } as any);
  assert.match(el.textContent!, /Unsupported output type/);
});

test('widget views: live widget when the kernel has it, else the text/plain stand-in', () => {
  const data = { [WIDGET_VIEW_MIME]: { version_major: 2, version_minor: 0, model_id: 'abc' }, 'text/plain': 'IntSlider(value=3)' };
  const out = { output_type: 'display_data' as const, data, metadata: {} };
  // No widget manager (a saved notebook): the repr is shown.
  setWidgetRenderer(null);
  assert.equal(renderOutput(out).textContent, 'IntSlider(value=3)');
  const seen: string[] = [];
  setWidgetRenderer((d) => {
    seen.push(d.model_id);
    if (d.model_id !== 'abc') return null;
    const el = document.createElement('div');
    el.className = 'live-widget';
    return el;
  });
  try {
    assert.ok(renderOutput(out).querySelector('.live-widget'));
    // A model the manager does not know falls back to text too.
    const other = { ...out, data: { ...data, [WIDGET_VIEW_MIME]: { model_id: 'gone' } } };
    assert.equal(renderOutput(other).textContent, 'IntSlider(value=3)');
    assert.deepEqual(seen, ['abc', 'gone']);
  } finally {
    setWidgetRenderer(null);
  }
});
