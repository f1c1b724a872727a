/** The text-file editor and the image viewer. */

import type { EditorView } from '@codemirror/view';
import { contents } from './api';
import { encodePath, url } from './config';
import { h, toast } from './dom';
import { fileEditor, retheme } from './editor';
import { SaveGuard } from './saving';

export class TextFilePanel {
  readonly el: HTMLElement;
  private editor: EditorView | null = null;
  private state: HTMLElement;
  private guard: SaveGuard;
  dirty = false;

  constructor(
    public path: string,
    private reload: () => void,
  ) {
    this.guard = new SaveGuard(path);
    this.state = h('span.zh-save-state', {});
    this.el = h(
      'div.zh-textfile',
      {},
      h('div.zh-nb-head', {}, h('span.zh-title', {}, path.split('/').pop() ?? path), this.state, h('button.zh-tb', { type: 'button', onclick: () => void this.save() }, 'Save')),
    );
  }

  async open(): Promise<void> {
    const model = await contents.get(this.path, { type: 'file', format: 'text', hash: true });
    this.guard.loaded(model);
    const host = h('div.zh-file-editor', {});
    this.el.append(host);
    this.editor = fileEditor(host, model.content ?? '', () => this.setDirty(true), () => void this.save(), this.path);
    this.setDirty(false);
  }

  private setDirty(d: boolean): void {
    this.dirty = d;
    this.state.textContent = d ? 'unsaved changes' : 'saved';
    this.state.dataset.dirty = String(d);
  }

  async save(): Promise<void> {
    if (!this.editor) return;
    const result = await this.guard.save({ type: 'file', format: 'text', content: this.editor.state.doc.toString() });
    if (result === 'saved') {
      this.setDirty(false);
      toast('Saved');
    } else if (result === 'reload') {
      this.setDirty(false);
      this.reload();
    }
  }

  retheme(): void {
    if (this.editor) retheme(this.editor);
  }

  dispose(): void {
    this.editor?.destroy();
  }
}

export function imageViewer(path: string): HTMLElement {
  const src = url('files', encodePath(path));
  return h(
    'div.zh-image-view',
    {},
    h('div.zh-nb-head', {}, h('span.zh-title', {}, path.split('/').pop() ?? path), h('a.zh-link', { href: `${src}?download=1`, download: path.split('/').pop() }, 'Download')),
    h('img', { src, alt: path }),
  );
}
