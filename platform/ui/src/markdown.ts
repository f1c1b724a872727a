/**
 * Markdown cells and text/markdown outputs: `marked` for the markdown,
 * DOMPurify for safety, KaTeX (loaded only when a page has math) for
 * `$…$`, `$$…$$`, `\(…\)` and `\[…\]`.
 */

import { Marked } from 'marked';
import { sanitize } from './sanitize';


const marked = new Marked({ gfm: true, breaks: false, async: false });

/** Pull math out before markdown runs so `_` and `*` inside it survive. */
export function extractMath(src: string): { text: string; math: { tex: string; display: boolean }[] } {
  const math: { tex: string; display: boolean }[] = [];
  const keep = (tex: string, display: boolean) => {
    math.push({ tex, display });
    return `@@MATH${math.length - 1}@@`;
  };
  // Leave code spans and fenced blocks alone.
  const parts = src.split(/(```[\s\S]*?```|`[^`\n]*`)/g);
  const text = parts
    .map((part, i) => {
      if (i % 2 === 1) return part;
      return part
        .replace(/\$\$([\s\S]+?)\$\$/g, (_, t) => keep(t, true))
        .replace(/\\\[([\s\S]+?)\\\]/g, (_, t) => keep(t, true))
        .replace(/\\\(([\s\S]+?)\\\)/g, (_, t) => keep(t, false))
        .replace(/(^|[^\\$])\$([^\s$](?:[^$\n]*?[^\s$])?)\$(?!\d)/g, (_, pre, t) => pre + keep(t, false));
    })
    .join('');
  return { text, math };
}

let katexPromise: Promise<any> | null = null;

/** Load KaTeX and its stylesheet once, on first use. */
export function loadKatex(): Promise<any> {
  if (!katexPromise) {
    if (typeof document !== 'undefined' && typeof KATEX_CSS !== 'undefined' && KATEX_CSS) {
      const link = document.createElement('link');
      link.rel = 'stylesheet';
      link.href = new URL(KATEX_CSS, import.meta.url).href;
      document.head.appendChild(link);
    }
    katexPromise = import('katex').then((m) => m.default ?? m);
  }
  return katexPromise;
}

/** Render math placeholders inside `root`; resolves when typeset. */
export async function typeset(root: HTMLElement, math: { tex: string; display: boolean }[]): Promise<void> {
  const spots = root.querySelectorAll<HTMLElement>('span.zh-math');
  if (spots.length === 0) return;
  const katex = await loadKatex();
  spots.forEach((el) => {
    const item = math[Number(el.dataset.math)];
    if (!item) return;
    try {
      katex.render(item.tex, el, { displayMode: item.display, throwOnError: false, trust: false });
    } catch (e) {
      el.textContent = item.tex;
    }
  });
}

/** Markdown to a sanitized element (math typeset asynchronously). */
export function renderMarkdown(src: string, target: HTMLElement): Promise<void> {
  const { text, math } = extractMath(src);
  const html = marked.parse(text) as string;
  const withMath = html.replace(/@@MATH(\d+)@@/g, (_, i) => `<span class="zh-math" data-math="${i}"></span>`);
  target.innerHTML = sanitize(withMath);
  target.classList.add('zh-markdown');
  return typeset(target, math);
}

/** text/latex output: strip the outer `$`/`$$` and typeset. */
export async function renderLatex(src: string, target: HTMLElement): Promise<void> {
  let tex = src.trim();
  let display = true;
  const m = tex.match(/^\$\$([\s\S]*)\$\$$/) || tex.match(/^\\\[([\s\S]*)\\\]$/);
  if (m) tex = m[1];
  else {
    const inline = tex.match(/^\$([\s\S]*)\$$/);
    if (inline) {
      tex = inline[1];
      display = false;
    }
  }
  target.textContent = tex;
  const katex = await loadKatex();
  try {
    katex.render(tex, target, { displayMode: display, throwOnError: false, trust: false });
  } catch {
    target.textContent = src;
  }
}
