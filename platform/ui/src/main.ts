/**
 * The app: header, router (tree/, notebooks/, edit/, view/ below the base
 * URL, with history navigation), theme switching.
 */

import { authEvents } from './api';
import { encodePath, pageConfig, url } from './config';
import { confirmDialog, h, toast } from './dom';
import { FileBrowser } from './files';
import { imageViewer, TextFilePanel } from './fileview';
import { NotebookPanel } from './notebook';
import './style.css';

interface Panel {
  el: HTMLElement;
  dispose?(): void;
  retheme?(): void;
  isDirty?(): boolean;
  dirty?: boolean;
}

let current: Panel | null = null;
const main = h('main.zh-main', { id: 'zh-main' });

function decodeRoute(pathname: string): { kind: string; path: string } {
  const base = pageConfig().baseUrl;
  let rest = pathname.startsWith(base) ? pathname.slice(base.length) : pathname.replace(/^\//, '');
  rest = rest.replace(/^\/+/, '');
  const slash = rest.indexOf('/');
  const kind = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash + 1);
  const decoded = path
    .split('/')
    .filter(Boolean)
    .map((s) => decodeURIComponent(s))
    .join('/');
  return { kind: kind || 'tree', path: decoded };
}

function panelIsDirty(p: Panel | null): boolean {
  return !!p && (p.isDirty ? p.isDirty() : !!p.dirty);
}

/** Navigate to a route like "notebooks/a/b.ipynb" (asks before dropping unsaved work). */
export async function go(route: string, replace = false): Promise<void> {
  if (panelIsDirty(current) && !(await confirmDialog('Leave page?', 'You have unsaved changes. Leave without saving?', 'Leave', true))) return;
  const slash = route.indexOf('/');
  const kind = slash < 0 ? route : route.slice(0, slash);
  const path = slash < 0 ? '' : route.slice(slash + 1);
  const target = url(kind, encodePath(path));
  if (replace) history.replaceState(null, '', target);
  else history.pushState(null, '', target);
  await show();
}

async function show(): Promise<void> {
  current?.dispose?.();
  current = null;
  const { kind, path } = decodeRoute(window.location.pathname);
  main.replaceChildren(h('p.zh-loading', {}, 'Loading…'));
  try {
    if (kind === 'notebooks') {
      const nb = new NotebookPanel(path, (p) => void go(`notebooks/${p}`, true));
      current = nb;
      document.title = `${path.split('/').pop()} — Zasper`;
      await nb.open();
      main.replaceChildren(nb.el);
      document.body.dataset.view = 'notebook';
    } else if (kind === 'edit') {
      const panel = new TextFilePanel(path, () => void go(`edit/${path}`, true));
      current = panel;
      document.title = `${path.split('/').pop()} — Zasper`;
      await panel.open();
      main.replaceChildren(panel.el);
      document.body.dataset.view = 'edit';
    } else if (kind === 'view') {
      current = { el: imageViewer(path) };
      main.replaceChildren(current.el);
      document.body.dataset.view = 'view';
    } else {
      const fb = new FileBrowser(kind === 'tree' ? path : '', (r) => void go(r));
      current = fb;
      document.title = `${path || 'Files'} — Zasper`;
      main.replaceChildren(fb.el);
      await fb.load();
      document.body.dataset.view = 'tree';
    }
  } catch (e) {
    const message = (e as Error).message;
    main.replaceChildren(
      h('div.zh-error-page', {}, h('h2', {}, 'Could not open this page'), h('p', {}, message), h('a', { href: url('tree'), onclick: (ev: Event) => (ev.preventDefault(), void go('tree/')) }, 'Back to files')),
    );
  }
}

function applyTheme(theme: string): void {
  document.documentElement.dataset.theme = theme;
  current?.retheme?.();
}

function header(): HTMLElement {
  const cfg = pageConfig();
  const saved = localStorage.getItem('zasper-theme');
  const prefersDark = window.matchMedia?.('(prefers-color-scheme: dark)').matches;
  applyTheme(saved || (prefersDark ? 'dark' : 'light'));
  const themeBtn = h('button.zh-tb', {
    type: 'button',
    title: 'Toggle light/dark theme',
    'aria-label': 'Toggle theme',
    onclick: () => {
      const next = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
      localStorage.setItem('zasper-theme', next);
      applyTheme(next);
    },
  }, '◐');
  return h(
    'header.zh-header',
    {},
    h('a.zh-logo', { href: url('tree'), onclick: (e: Event) => (e.preventDefault(), void go('tree/')) }, 'Zasper'),
    h('span.zh-spacer', {}),
    cfg.hubControlUrl ? h('a.zh-link', { href: cfg.hubControlUrl }, 'Control panel') : null,
    themeBtn,
    cfg.logoutUrl ? h('a.zh-link', { href: cfg.logoutUrl, id: 'zh-logout' }, 'Log out') : null,
  );
}

/** A banner while the login session is gone; unsaved work stays on the page. */
function authBanner(): HTMLElement {
  const loginUrl = `${url('login')}?next=${encodeURIComponent(url('tree'))}`;
  const banner = h(
    'div.zh-banner',
    { role: 'alert', hidden: true },
    'Your login session ended (the server may have restarted). ',
    h('a', { href: loginUrl, target: '_blank', rel: 'noopener' }, 'Log in again in a new tab'),
    ' — this page reconnects by itself and keeps your unsaved changes.',
  );
  authEvents.lost = () => (banner.hidden = false);
  authEvents.ok = () => (banner.hidden = true);
  return banner;
}

function start(): void {
  document.body.append(header(), authBanner(), main);
  window.addEventListener('popstate', () => void show());
  window.addEventListener('unhandledrejection', (e) => toast(`Error: ${e.reason?.message ?? e.reason}`, 'error'));
  void show();
}

start();
