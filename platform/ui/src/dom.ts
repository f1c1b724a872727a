/** Small DOM helpers and modal dialogs (no framework). */

type Child = Node | string | null | undefined | false;

/** Create an element: h('button.primary', {onclick}, 'Save'). */
export function h<K extends keyof HTMLElementTagNameMap>(
  spec: K | `${K}.${string}`,
  props: Record<string, any> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag) as HTMLElementTagNameMap[K];
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && k !== 'list') (el as any)[k] = v;
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/** Show a transient message at the bottom of the page. */
export function toast(message: string, kind: 'info' | 'error' = 'info', ms = 4000): void {
  let host = document.getElementById('zh-toasts');
  if (!host) {
    host = h('div', { id: 'zh-toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(host);
  }
  const t = h(`div.zh-toast.zh-toast-${kind}`, {}, message);
  host.append(t);
  setTimeout(() => t.remove(), ms);
}

interface DialogButton<T> {
  label: string;
  value: T;
  primary?: boolean;
  danger?: boolean;
}

/** A modal dialog resolving to the chosen button's value (Escape → null). */
export function dialog<T>(title: string, body: Child, buttons: DialogButton<T>[], focusSelector?: string): Promise<T | null> {
  return new Promise((resolve) => {
    const prev = document.activeElement as HTMLElement | null;
    const close = (v: T | null) => {
      overlay.remove();
      prev?.focus?.();
      resolve(v);
    };
    const row = h(
      'div.zh-dialog-buttons',
      {},
      ...buttons.map((b) =>
        h(`button${b.primary ? '.primary' : ''}${b.danger ? '.danger' : ''}` as 'button', { type: 'button', onclick: () => close(b.value) }, b.label),
      ),
    );
    const box = h('div.zh-dialog', { role: 'dialog', 'aria-modal': 'true', 'aria-label': title }, h('h2', {}, title), h('div.zh-dialog-body', {}, body), row);
    const overlay = h('div.zh-overlay', {}, box);
    overlay.addEventListener('keydown', (e) => {
      e.stopPropagation();
      if (e.key === 'Escape') close(null);
      if (e.key === 'Enter' && (e.target as HTMLElement).tagName === 'INPUT') {
        e.preventDefault();
        const primary = buttons.find((b) => b.primary);
        if (primary) close(primary.value);
      }
    });
    document.body.append(overlay);
    const focusEl = (focusSelector && box.querySelector<HTMLElement>(focusSelector)) || row.querySelector<HTMLElement>('button.primary') || row.querySelector('button');
    focusEl?.focus();
  });
}

export async function confirmDialog(title: string, message: string, ok = 'OK', danger = false): Promise<boolean> {
  const v = await dialog(title, h('p', {}, message), [
    { label: 'Cancel', value: false },
    { label: ok, value: true, primary: true, danger },
  ]);
  return v === true;
}

export async function promptDialog(title: string, label: string, initial = ''): Promise<string | null> {
  const input = h('input.zh-prompt-input', { type: 'text', value: initial, 'aria-label': label });
  const v = await dialog(title, h('label', {}, label, input), [
    { label: 'Cancel', value: false },
    { label: 'OK', value: true, primary: true },
  ], 'input');
  return v ? input.value : null;
}

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '';
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function timeAgo(iso: string): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(t).toLocaleDateString();
}
