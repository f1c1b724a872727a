/** Small pure helpers: paths, page URLs, durations, cursor offsets. */

import { pageConfig } from './config';

export function basename(path: string): string {
  return path.split('/').pop() || path;
}

export function pageUrlFor(kind: string, path: string): string {
  const base = pageConfig().baseUrl.replace(/\/+$/, '');
  return `${base}/${kind}/${path.split('/').map(encodeURIComponent).join('/')}`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const m = Math.floor(ms / 60_000);
  return `${m} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** Jupyter cursor positions count Unicode code points; JS strings count UTF-16 units. */
export function jsIndexToCodepoint(text: string, index: number): number {
  return Array.from(text.slice(0, index)).length;
}

export function codepointToJsIndex(text: string, cp: number): number {
  let i = 0;
  let n = 0;
  while (n < cp && i < text.length) {
    const code = text.codePointAt(i) as number;
    i += code > 0xffff ? 2 : 1;
    n++;
  }
  return i;
}


