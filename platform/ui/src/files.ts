/**
 * The file browser: list a directory of whatever storage backend the server
 * uses; open, create, rename, delete, upload (chunked, with progress) and
 * download.
 */

import { ApiError, contents, ContentsModel, upload } from './api';
import { encodePath, pageConfig, url } from './config';
import { confirmDialog, formatBytes, h, promptDialog, timeAgo, toast } from './dom';

const IMAGE_EXT = /\.(png|jpe?g|gif|svg|webp|bmp|ico)$/i;

/** The page route that opens a contents model. */
export function routeFor(m: { type: string; path: string; name?: string }): string {
  if (m.type === 'directory') return `tree/${m.path}`;
  if (m.type === 'notebook' || m.path.endsWith('.ipynb')) return `notebooks/${m.path}`;
  if (IMAGE_EXT.test(m.path)) return `view/${m.path}`;
  return `edit/${m.path}`;
}

export class FileBrowser {
  readonly el: HTMLElement;
  private listEl: HTMLElement;
  private crumbs: HTMLElement;
  private progressEl: HTMLElement;

  constructor(
    public dir: string,
    private go: (route: string) => void,
  ) {
    const fileInput = h('input', { type: 'file', multiple: true, hidden: true, 'aria-label': 'Upload files' });
    fileInput.addEventListener('change', () => {
      void this.uploadFiles(Array.from(fileInput.files ?? []));
      fileInput.value = '';
    });
    const storage = pageConfig().storage;
    this.crumbs = h('nav.zh-crumbs', { 'aria-label': 'Breadcrumbs' });
    this.progressEl = h('div.zh-upload-progress', {});
    this.listEl = h('div.zh-files', { role: 'table', 'aria-label': 'Files' });
    this.el = h(
      'div.zh-browser',
      {},
      h(
        'div.zh-browser-head',
        {},
        this.crumbs,
        storage ? h('span.zh-storage', { title: 'Where these files live' }, storage) : null,
      ),
      h(
        'div.zh-toolbar',
        { role: 'toolbar' },
        h('button.zh-tb.primary', { type: 'button', onclick: () => void this.create('notebook') }, '+ Notebook'),
        h('button.zh-tb', { type: 'button', onclick: () => void this.create('file') }, '+ File'),
        h('button.zh-tb', { type: 'button', onclick: () => void this.create('directory') }, '+ Folder'),
        h('button.zh-tb', { type: 'button', onclick: () => fileInput.click() }, '⇪ Upload'),
        h('button.zh-tb', { type: 'button', title: 'Refresh', 'aria-label': 'Refresh', onclick: () => void this.load() }, '⟳'),
        fileInput,
      ),
      this.progressEl,
      this.listEl,
    );
    // Dropping files on the browser uploads them.
    this.el.addEventListener('dragover', (e) => e.preventDefault());
    this.el.addEventListener('drop', (e) => {
      e.preventDefault();
      void this.uploadFiles(Array.from(e.dataTransfer?.files ?? []));
    });
  }

  private renderCrumbs(): void {
    const parts = this.dir.split('/').filter(Boolean);
    const items: Node[] = [h('a', { href: url('tree'), onclick: (e: Event) => this.nav(e, 'tree/') }, 'Home')];
    parts.forEach((p, i) => {
      const path = parts.slice(0, i + 1).join('/');
      items.push(h('span.zh-sep', {}, '/'), h('a', { href: url('tree', encodePath(path)), onclick: (e: Event) => this.nav(e, `tree/${path}`) }, p));
    });
    this.crumbs.replaceChildren(...items);
  }

  private nav(e: Event, route: string): void {
    e.preventDefault();
    this.go(route);
  }

  async load(): Promise<void> {
    this.renderCrumbs();
    let model: ContentsModel;
    try {
      model = await contents.get(this.dir, { type: 'directory' });
    } catch (e) {
      this.listEl.replaceChildren(h('p.zh-error', {}, `Cannot list "${this.dir || '/'}": ${(e as Error).message}`));
      return;
    }
    const items = (model.content as ContentsModel[]).slice().sort((a, b) => {
      if ((a.type === 'directory') !== (b.type === 'directory')) return a.type === 'directory' ? -1 : 1;
      return a.name.localeCompare(b.name);
    });
    const rows = items.map((m) => this.row(m));
    if (rows.length === 0) rows.push(h('p.zh-empty', {}, 'This folder is empty.'));
    this.listEl.replaceChildren(h('div.zh-file-row.zh-file-header', { role: 'row' }, h('span', {}, 'Name'), h('span', {}, 'Modified'), h('span', {}, 'Size'), h('span', {}, '')), ...rows);
  }

  private row(m: ContentsModel): HTMLElement {
    const kind = m.type === 'directory' ? 'dir' : m.type === 'notebook' ? 'nb' : IMAGE_EXT.test(m.name) ? 'img' : 'file';
    const route = routeFor(m);
    const actions = h(
      'span.zh-file-actions',
      {},
      h('button.zh-link', { type: 'button', title: `Rename ${m.name}`, onclick: () => void this.rename(m) }, 'Rename'),
      m.type !== 'directory'
        ? h('a.zh-link', { href: url('files', encodePath(m.path)) + '?download=1', download: m.name, title: `Download ${m.name}` }, 'Download')
        : null,
      h('button.zh-link.danger', { type: 'button', title: `Delete ${m.name}`, onclick: () => void this.remove(m) }, 'Delete'),
    );
    return h(
      'div.zh-file-row',
      { role: 'row', dataset: { path: m.path, type: m.type } },
      h('a.zh-file-name', { href: url(route.split('/')[0], encodePath(m.path)), onclick: (e: Event) => this.nav(e, route) }, h(`span.zh-icon.zh-icon-${kind}` as 'span', {}), m.name),
      h('span.zh-file-mtime', { title: m.last_modified }, timeAgo(m.last_modified)),
      h('span.zh-file-size', {}, m.type === 'directory' ? '' : formatBytes(m.size)),
      actions,
    );
  }

  private async create(type: 'notebook' | 'file' | 'directory'): Promise<void> {
    try {
      const m = await contents.newUntitled(this.dir, type, type === 'file' ? '.txt' : undefined);
      if (type === 'directory') await this.load();
      else this.go(routeFor(m));
    } catch (e) {
      toast(`Could not create ${type}: ${(e as Error).message}`, 'error');
    }
  }

  private async rename(m: ContentsModel): Promise<void> {
    const name = await promptDialog(`Rename ${m.type}`, 'New name', m.name);
    if (!name || name === m.name) return;
    if (name.includes('/')) {
      toast('A name cannot contain "/"', 'error');
      return;
    }
    const newPath = this.dir ? `${this.dir}/${name}` : name;
    try {
      await contents.rename(m.path, newPath);
    } catch (e) {
      toast(`Rename failed: ${(e as Error).message}`, 'error');
    }
    await this.load();
  }

  private async remove(m: ContentsModel): Promise<void> {
    const ok = await confirmDialog(`Delete ${m.type}?`, `Delete "${m.path}"? This cannot be undone.`, 'Delete', true);
    if (!ok) return;
    try {
      await contents.remove(m.path);
    } catch (e) {
      toast(`Delete failed: ${(e as Error).message}`, 'error');
    }
    await this.load();
  }

  async uploadFiles(files: File[]): Promise<void> {
    for (const file of files) {
      const bar = h('progress', { max: 1, value: 0 });
      const line = h('div.zh-upload', {}, `Uploading ${file.name} `, bar);
      this.progressEl.append(line);
      try {
        const existing = await contents.get(this.dir ? `${this.dir}/${file.name}` : file.name, { content: false }).catch((e: ApiError) => {
          if (e.status === 404) return null;
          throw e;
        });
        if (existing && !(await confirmDialog('Replace file?', `"${file.name}" already exists here. Replace it?`, 'Replace', true))) {
          line.remove();
          continue;
        }
        await upload(this.dir, file, (f) => (bar.value = f));
        line.remove();
        toast(`Uploaded ${file.name}`);
      } catch (e) {
        line.remove();
        toast(`Upload of ${file.name} failed: ${(e as Error).message}`, 'error', 8000);
      }
    }
    await this.load();
  }
}
