/**
 * Output renderers: nbformat outputs (stream, execute_result, display_data,
 * error) to DOM.  Everything from a kernel or a notebook file is untrusted:
 * HTML and markdown go through `sanitize`; SVG is shown through <img>, where
 * its scripts never run; text is escaped.
 */

import { ansiToHtml, fixCarriageReturns } from './ansi';
import { renderLatex, renderMarkdown } from './markdown';
import { sanitize } from './sanitize';

export interface StreamOutput {
  output_type: 'stream';
  name: 'stdout' | 'stderr';
  text: string | string[];
}
export interface DataOutput {
  output_type: 'execute_result' | 'display_data';
  data: Record<string, any>;
  metadata?: Record<string, any>;
  execution_count?: number | null;
  transient?: { display_id?: string };
}
export interface ErrorOutput {
  output_type: 'error';
  ename: string;
  evalue: string;
  traceback: string[];
}
export type Output = StreamOutput | DataOutput | ErrorOutput;

/** Richest first; the first one present wins. */
export const MIME_ORDER = [
  'text/html',
  'image/svg+xml',
  'image/png',
  'image/jpeg',
  'image/gif',
  'text/markdown',
  'text/latex',
  'application/json',
  'text/plain',
];

/** Above this many characters text is cut, with a "show more" button. */
export const TRUNCATE_CHARS = 20000;
export const TRUNCATE_LINES = 500;

export function joinText(t: string | string[] | undefined): string {
  return Array.isArray(t) ? t.join('') : (t ?? '');
}

export function pickMime(data: Record<string, any>): string | null {
  for (const m of MIME_ORDER) if (m in data) return m;
  return null;
}

/** Where text must be cut to stay within the limits, or -1. */
export function truncationPoint(text: string, maxChars = TRUNCATE_CHARS, maxLines = TRUNCATE_LINES): number {
  let cut = text.length > maxChars ? maxChars : -1;
  let lines = 0;
  for (let i = 0; i < text.length && (cut < 0 || i < cut); i++) {
    if (text.charCodeAt(i) === 10 && ++lines >= maxLines) {
      cut = i + 1;
      break;
    }
  }
  return cut >= 0 && cut < text.length ? cut : -1;
}

/** A <pre> of ANSI-coloured text, truncated with a "show more" button. */
export function renderText(text: string, className: string): HTMLElement {
  const pre = document.createElement('pre');
  pre.className = className;
  const fixed = fixCarriageReturns(text);
  const cut = truncationPoint(fixed);
  if (cut < 0) {
    pre.innerHTML = ansiToHtml(fixed);
    return pre;
  }
  pre.innerHTML = ansiToHtml(fixed.slice(0, cut));
  const wrap = document.createElement('div');
  wrap.className = 'zh-truncated';
  const more = document.createElement('button');
  more.className = 'zh-show-more';
  const hidden = fixed.length - cut;
  more.textContent = `Show more (${hidden.toLocaleString()} more characters)`;
  more.addEventListener('click', () => {
    pre.innerHTML = ansiToHtml(fixed);
    more.remove();
  });
  wrap.append(pre, more);
  return wrap;
}

function b64(data: string | string[]): string {
  return joinText(data).replace(/\s+/g, '');
}

function renderImage(mime: string, data: any, metadata: Record<string, any> | undefined): HTMLElement {
  const img = document.createElement('img');
  if (mime === 'image/svg+xml') {
    // As an <img>, SVG is a static picture: no script, no external loads.
    img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(joinText(data));
  } else {
    img.src = `data:${mime};base64,${b64(data)}`;
  }
  const meta = (metadata && metadata[mime]) || {};
  if (typeof meta.width === 'number') img.width = meta.width;
  if (typeof meta.height === 'number') img.height = meta.height;
  img.alt = 'output image';
  img.className = 'zh-output-image';
  return img;
}

/** Render one mime bundle entry. */
export function renderMime(mime: string, value: any, metadata?: Record<string, any>): HTMLElement {
  const div = document.createElement('div');
  div.className = 'zh-mime';
  div.dataset.mime = mime;
  switch (mime) {
    case 'text/html':
      div.innerHTML = sanitize(joinText(value));
      div.classList.add('zh-html');
      break;
    case 'image/svg+xml':
    case 'image/png':
    case 'image/jpeg':
    case 'image/gif':
      div.append(renderImage(mime, value, metadata));
      break;
    case 'text/markdown':
      void renderMarkdown(joinText(value), div);
      break;
    case 'text/latex':
      void renderLatex(joinText(value), div);
      break;
    case 'application/json': {
      const pre = document.createElement('pre');
      pre.className = 'zh-json';
      pre.textContent = JSON.stringify(value, null, 2);
      div.append(pre);
      break;
    }
    default:
      div.append(renderText(joinText(value), 'zh-text'));
  }
  return div;
}

/** Application/vnd.jupyter.widget-view+json: live widgets, when a kernel has them. */
export const WIDGET_VIEW_MIME = 'application/vnd.jupyter.widget-view+json';
let widgetRenderer: ((data: any) => HTMLElement | null) | null = null;

/** Install (or remove) the renderer of widget views; it returns null for unknown widgets. */
export function setWidgetRenderer(fn: ((data: any) => HTMLElement | null) | null): void {
  widgetRenderer = fn;
}

/** Render one nbformat output to an element. */
export function renderOutput(output: Output): HTMLElement {
  const el = document.createElement('div');
  el.className = `zh-output zh-output-${output.output_type}`;
  if (output.output_type === 'stream') {
    el.classList.add(`zh-${output.name}`);
    el.append(renderText(joinText(output.text), 'zh-text'));
  } else if (output.output_type === 'error') {
    const tb = (output.traceback || []).join('\n') || `${output.ename}: ${output.evalue}`;
    el.append(renderText(tb, 'zh-text zh-traceback'));
  } else if (output.output_type === 'execute_result' || output.output_type === 'display_data') {
    const data = output.data || {};
    if (WIDGET_VIEW_MIME in data && widgetRenderer) {
      const view = widgetRenderer(data[WIDGET_VIEW_MIME]);
      if (view) {
        el.append(view);
        return el;
      }
    }
    // Without the widget, its text/plain repr (e.g. "IntSlider(value=3)") stands in.
    const mime = pickMime(data);
    if (mime) el.append(renderMime(mime, output.data[mime], output.metadata));
  } else {
    el.textContent = `Unsupported output type: ${(output as any).output_type}`;
  }
  return el;
}
