/**
 * One notebook cell: its nbformat model, its DOM, and its editor.
 *
 * The CodeMirror editor is created lazily (when the cell scrolls into view
 * or is edited); until then the source is a plain <pre>.  That is what lets
 * a 1,000-cell notebook open quickly.
 */

import type { EditorView } from '@codemirror/view';
import { h } from './dom';
import { CellKeys, cellEditor } from './editor';
import { renderMarkdown } from './markdown';
import { joinText, Output, renderOutput } from './render';

export type CellType = 'code' | 'markdown' | 'raw';

export interface CellModel {
  id: string;
  cell_type: CellType;
  source: string;
  metadata: Record<string, any>;
  outputs: Output[];
  execution_count: number | null;
  attachments?: Record<string, any>;
}

let counter = 0;
export function newCellId(): string {
  counter++;
  return Math.random().toString(36).slice(2, 10) + counter.toString(36);
}

/** A cell model from nbformat JSON (v4), tolerant of missing fields. */
export function cellFromJSON(c: any): CellModel {
  const type: CellType = c.cell_type === 'markdown' || c.cell_type === 'raw' ? c.cell_type : 'code';
  return {
    id: typeof c.id === 'string' && c.id ? c.id : newCellId(),
    cell_type: type,
    source: joinText(c.source),
    metadata: c.metadata && typeof c.metadata === 'object' ? c.metadata : {},
    outputs: type === 'code' && Array.isArray(c.outputs) ? c.outputs : [],
    execution_count: type === 'code' && typeof c.execution_count === 'number' ? c.execution_count : null,
    attachments: c.attachments,
  };
}

export function cellToJSON(m: CellModel): any {
  const base: any = { id: m.id, cell_type: m.cell_type, metadata: m.metadata, source: m.source };
  if (m.cell_type === 'code') {
    base.outputs = m.outputs.map((o) => {
      // Transient data (display ids) is not part of the file format.
      const { transient, ...rest } = o as any;
      return rest;
    });
    base.execution_count = m.execution_count;
  } else if (m.attachments) {
    base.attachments = m.attachments;
  }
  return base;
}

export class Cell {
  readonly el: HTMLDivElement;
  readonly prompt: HTMLDivElement;
  readonly inputArea: HTMLDivElement;
  readonly outputsEl: HTMLDivElement;
  readonly timing: HTMLSpanElement;
  private sourceEl: HTMLElement | null = null;
  private renderedEl: HTMLDivElement | null = null;
  editor: EditorView | null = null;
  running = false;
  /** Markdown cells show their rendering unless being edited. */
  rendered = true;
  /** clear_output(wait=True) pending: clear on the next output. */
  clearPending = false;

  constructor(
    public model: CellModel,
    private keys: CellKeys,
  ) {
    this.prompt = h('div.zh-prompt', {});
    this.timing = h('span.zh-timing', {});
    this.inputArea = h('div.zh-input', {});
    this.outputsEl = h('div.zh-outputs', { 'aria-live': 'polite' });
    this.el = h('div.zh-cell', { dataset: { id: model.id }, tabIndex: -1 }, h('div.zh-cell-row', {}, this.prompt, this.inputArea), h('div.zh-cell-foot', {}, this.timing), this.outputsEl);
    this.refreshType();
    this.renderOutputs();
  }

  get source(): string {
    return this.editor ? this.editor.state.doc.toString() : this.model.source;
  }

  /** Copy the editor's text into the model (before saving or running). */
  sync(): void {
    if (this.editor) this.model.source = this.editor.state.doc.toString();
  }

  refreshType(): void {
    this.el.classList.toggle('zh-code', this.model.cell_type === 'code');
    this.el.classList.toggle('zh-md', this.model.cell_type === 'markdown');
    this.el.classList.toggle('zh-raw', this.model.cell_type === 'raw');
    this.setPrompt();
    if (this.model.cell_type === 'markdown' && this.rendered) this.showRendered();
    else this.showSource();
  }

  setPrompt(): void {
    if (this.model.cell_type !== 'code') {
      this.prompt.textContent = '';
      return;
    }
    const n = this.model.execution_count;
    this.prompt.textContent = this.running ? '[*]:' : `[${n ?? ' '}]:`;
  }

  private showSource(): void {
    this.renderedEl?.remove();
    this.renderedEl = null;
    // CodeMirror styles its root `display: flex !important`: hide through a class.
    this.el.classList.remove('zh-show-rendered');
    if (this.editor) return;
    if (!this.sourceEl) {
      this.sourceEl = h('pre.zh-source', {}, this.model.source || ' ');
      this.sourceEl.addEventListener('mousedown', () => {
        // Clicking a not-yet-editable cell makes it editable there and then.
        requestAnimationFrame(() => this.ensureEditor(true));
      });
      this.inputArea.append(this.sourceEl);
    }
  }

  private showRendered(): void {
    this.sync();
    this.el.classList.add('zh-show-rendered');
    this.renderedEl?.remove();
    this.renderedEl = h('div.zh-rendered', {});
    const src = this.model.source.trim() ? this.model.source : '*Empty markdown cell — double-click to edit*';
    void renderMarkdown(src, this.renderedEl);
    this.renderedEl.addEventListener('dblclick', () => this.edit());
    this.inputArea.append(this.renderedEl);
  }

  /** Build the CodeMirror editor if it does not exist yet. */
  ensureEditor(focus = false): EditorView {
    if (!this.editor) {
      const doc = this.model.source;
      this.sourceEl?.remove();
      this.sourceEl = null;
      this.editor = cellEditor(this.inputArea, doc, this.keys, this.model.cell_type === 'code' ? 'python' : 'text');
    }
    if (focus) this.editor.focus();
    return this.editor;
  }

  /** Enter edit mode on this cell. */
  edit(): void {
    if (this.model.cell_type === 'markdown') {
      this.rendered = false;
      this.showSource();
    }
    this.ensureEditor(true);
  }

  /** Markdown: show the rendering (after "run"). */
  render(): void {
    if (this.model.cell_type !== 'markdown') return;
    this.rendered = true;
    this.showRendered();
  }

  setSource(text: string): void {
    this.model.source = text;
    if (this.editor) this.editor.dispatch({ changes: { from: 0, to: this.editor.state.doc.length, insert: text } });
    else if (this.sourceEl) this.sourceEl.textContent = text || ' ';
  }

  setType(type: CellType): void {
    if (type === this.model.cell_type) return;
    this.sync();
    this.model.cell_type = type;
    if (type !== 'code') {
      this.model.outputs = [];
      this.model.execution_count = null;
      this.renderOutputs();
    }
    this.rendered = type === 'markdown';
    this.editor?.destroy();
    this.editor = null;
    this.refreshType();
  }

  // -- outputs ---------------------------------------------------------------
  renderOutputs(): void {
    this.outputsEl.replaceChildren(...this.model.outputs.map((o) => renderOutput(o)));
  }

  clearOutputs(): void {
    this.model.outputs = [];
    this.outputsEl.replaceChildren();
    this.clearPending = false;
  }

  /** Append an output, merging consecutive stream text of the same name. */
  addOutput(out: Output): void {
    if (this.clearPending) this.clearOutputs();
    const outs = this.model.outputs;
    const last = outs[outs.length - 1];
    if (out.output_type === 'stream' && last && last.output_type === 'stream' && last.name === out.name) {
      last.text = joinText(last.text) + joinText(out.text);
      const node = this.outputsEl.lastElementChild;
      const fresh = renderOutput(last);
      if (node) node.replaceWith(fresh);
      else this.outputsEl.append(fresh);
      return;
    }
    outs.push(out);
    this.outputsEl.append(renderOutput(out));
  }

  /** Replace the output at `index` (update_display_data). */
  replaceOutput(index: number, out: Output): void {
    this.model.outputs[index] = out;
    const node = this.outputsEl.children[index];
    if (node) node.replaceWith(renderOutput(out));
  }

  /** An `input()` prompt inside the outputs; resolves with the typed value. */
  askInput(prompt: string, password: boolean): Promise<string> {
    return new Promise((resolve) => {
      const input = h('input.zh-stdin-input', { type: password ? 'password' : 'text', 'aria-label': prompt || 'input' });
      const box = h('div.zh-stdin', {}, h('span.zh-stdin-prompt', {}, prompt), input);
      input.addEventListener('keydown', (e) => {
        e.stopPropagation();
        if (e.key !== 'Enter') return;
        const value = input.value;
        box.remove();
        // Echo what was typed, as a terminal would (masked for passwords).
        this.addOutput({ output_type: 'stream', name: 'stdout', text: `${prompt}${password ? '········' : value}\n` });
        resolve(value);
      });
      this.outputsEl.append(box);
      input.focus();
    });
  }

  destroy(): void {
    this.editor?.destroy();
    this.el.remove();
  }
}
