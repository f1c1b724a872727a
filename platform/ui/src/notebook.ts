/**
 * The notebook editor: toolbar, cells, command/edit modes, running code
 * through the kernel, saving with conflict detection, kernel status.
 */

import { contents, kernelspecs, KernelSpecs, SessionModel, sessions } from './api';
import { Cell, CellModel, CellType, cellFromJSON, cellToJSON, newCellId } from './cell';
import { handleCommandKey, showShortcuts } from './commands';
import { confirmDialog, h, promptDialog, toast } from './dom';
import { CellKeys, retheme } from './editor';
import { KernelConnection, KernelStatus } from './kernel';
import { setWidgetRenderer, WIDGET_VIEW_MIME } from './render';
import { SaveGuard } from './saving';
import { WidgetHost } from './widgethost';
import { deleteCells, mergeCells, moveCells, splitCell } from './cellops';
import { applyIopub, DisplayTargets } from './iopub';
import { basename, codepointToJsIndex, formatDuration, jsIndexToCodepoint, pageUrlFor } from './util';
import type { KernelMessage } from './wire';

const AUTOSAVE_MS = 60_000;

export class NotebookPanel {
  readonly el: HTMLElement;
  readonly cellsEl: HTMLElement;
  private statusEl: HTMLElement;
  private titleEl: HTMLElement;
  private saveStateEl: HTMLElement;
  private kernelSelect: HTMLSelectElement;
  cells: Cell[] = [];
  active = 0;
  /** The other end of a multi-cell selection (equal to `active` when one cell is selected). */
  anchor = 0;
  /** Cells painted as selected (cellops.ts keeps it in step). */
  marked = new Set<Cell>();
  mode: 'command' | 'edit' = 'command';
  private meta: Record<string, any> = {};
  private nbformatMinor = 5;
  private kernel: KernelConnection | null = null;
  /** ipywidgets for the current kernel (the libraries load on first use). */
  widgets: WidgetHost | null = null;
  private session: SessionModel | null = null;
  private specs: KernelSpecs | null = null;
  private guard: SaveGuard;
  private unsaved = false;
  private clipboard: CellModel[] = [];
  /** Undo stack of deletions (Z). */
  deleted: { index: number; models: CellModel[] }[] = [];
  private displays: DisplayTargets = new Map();
  private observer: IntersectionObserver;
  private autosaveTimer: ReturnType<typeof setInterval>;
  private disposers: (() => void)[] = [];
  private disposed = false;

  constructor(
    public path: string,
    private navigate: (path: string) => void,
  ) {
    this.guard = new SaveGuard(path);
    this.titleEl = h('button.zh-title', { type: 'button', title: 'Rename notebook', onclick: () => this.rename() }, basename(path));
    this.saveStateEl = h('span.zh-save-state', {});
    this.statusEl = h('span.zh-kernel-status', { title: 'Kernel status', role: 'status' }, 'no kernel');
    this.kernelSelect = h('select.zh-kernel-select', { 'aria-label': 'Kernel', onchange: () => this.changeKernel(this.kernelSelect.value) });
    const btn = (label: string, title: string, fn: () => void, cls = '') => h(`button.zh-tb${cls}` as 'button', { type: 'button', title, 'aria-label': title, onclick: fn }, label);
    const toolbar = h(
      'div.zh-toolbar',
      { role: 'toolbar' },
      btn('Save', 'Save (Ctrl+S)', () => void this.save()),
      btn('+ Code', 'Insert code cell below (B)', () => this.insert(this.active + 1, 'code')),
      btn('+ Text', 'Insert markdown cell below', () => this.insert(this.active + 1, 'markdown')),
      btn('▶ Run', 'Run cell and advance (Shift+Enter)', () => this.runActive('advance')),
      btn('Run all', 'Run all cells', () => this.runRange(0, this.cells.length)),
      btn('Run above', 'Run all cells above', () => this.runRange(0, this.active)),
      btn('Run below', 'Run this cell and all below', () => this.runRange(this.active, this.cells.length)),
      btn('■', 'Interrupt kernel (I, I)', () => void this.interrupt()),
      btn('↻', 'Restart kernel (0, 0)', () => void this.restart(false)),
      btn('↻▶', 'Restart kernel and run all', () => void this.restart(true)),
      btn('↑', 'Move cell up', () => this.move(-1)),
      btn('↓', 'Move cell down', () => this.move(1)),
      btn('Cut', 'Cut cell (X)', () => this.cut()),
      btn('Copy', 'Copy cell (C)', () => this.copy()),
      btn('Paste', 'Paste cell below (V)', () => this.paste()),
      btn('Delete', 'Delete cell (D, D)', () => this.deleteCells()),
      btn('Merge', 'Merge selected cells, or with the cell below (Shift+M)', () => this.merge()),
      btn('?', 'Keyboard shortcuts (H)', () => void showShortcuts()),
      h('span.zh-spacer', {}),
      this.kernelSelect,
      this.statusEl,
    );
    this.cellsEl = h('div.zh-cells', { role: 'list' });
    this.el = h('div.zh-notebook', {}, h('div.zh-nb-head', {}, this.titleEl, this.saveStateEl), toolbar, this.cellsEl);
    this.observer = new IntersectionObserver(
      (entries) => {
        for (const e of entries) {
          if (!e.isIntersecting) continue;
          const cell = this.cells.find((c) => c.el === e.target);
          if (cell && cell.model.cell_type === 'code') cell.ensureEditor(false);
          this.observer.unobserve(e.target);
        }
      },
      { rootMargin: '400px 0px' },
    );
    const onKey = (e: KeyboardEvent) => handleCommandKey(this, e);
    document.addEventListener('keydown', onKey);
    const onUnload = (e: BeforeUnloadEvent) => {
      if (this.unsaved) {
        e.preventDefault();
        e.returnValue = '';
      }
    };
    window.addEventListener('beforeunload', onUnload);
    this.disposers.push(() => document.removeEventListener('keydown', onKey), () => window.removeEventListener('beforeunload', onUnload));
    this.autosaveTimer = setInterval(() => {
      if (this.unsaved) void this.save(true);
    }, AUTOSAVE_MS);
    // Capture phase: a Shift+click must extend the selection before an
    // editor in the clicked cell takes the focus (and with it, edit mode).
    this.cellsEl.addEventListener(
      'mousedown',
      (e) => {
        const target = (e.target as HTMLElement).closest('.zh-cell');
        const idx = this.cells.findIndex((c) => c.el === target);
        if (idx < 0) return;
        if (e.shiftKey) {
          e.preventDefault();
          e.stopPropagation();
          if (this.mode === 'edit') this.commandMode();
          this.select(idx, true);
        } else this.select(idx);
      },
      true,
    );
  }

  /** Load the notebook and connect a kernel. */
  async open(): Promise<void> {
    // The kernel is what takes longest: ask for the session (the server
    // answers with the existing one or starts, ideally hands over a
    // pre-warmed, kernel) in parallel with fetching the notebook rather
    // than after rendering it.  Kernelspecs too, for the kernel menu.
    const early = this.earlySession();
    let model;
    try {
      model = await contents.get(this.path, { type: 'notebook', hash: true });
    } catch (e) {
      // No such notebook: do not leave a kernel running for it.
      if ((e as any)?.status === 404) void early.session.then((s) => sessions.remove(s.id)).catch(() => undefined);
      throw e;
    }
    this.guard.loaded(model);
    const nb = model.content || {};
    this.meta = nb.metadata || {};
    this.nbformatMinor = Math.max(5, nb.nbformat_minor || 5);
    const raw: any[] = Array.isArray(nb.cells) ? nb.cells : [];
    const frag = document.createDocumentFragment();
    this.cells = raw.map((c) => this.makeCell(cellFromJSON(c)));
    const fresh = this.cells.length === 0;
    if (fresh) this.cells.push(this.makeCell(cellFromJSON({ cell_type: 'code', source: '' })));
    for (const c of this.cells) frag.append(c.el);
    this.cellsEl.append(frag);
    for (const c of this.cells) this.observer.observe(c.el);
    this.select(0);
    this.setDirty(false);
    // A new notebook is for typing into: start in its first cell.
    if (fresh) requestAnimationFrame(() => this.cells[0]?.edit());
    void this.startKernel(early);
  }

  /** Session and kernelspecs requested before the notebook is known (errors surface in startKernel). */
  private earlySession(): { specs: Promise<KernelSpecs>; session: Promise<SessionModel> } {
    const specs = kernelspecs.list();
    const session = sessions.create(this.path);
    specs.catch(() => undefined);
    session.catch(() => undefined);
    return { specs, session };
  }

  private makeCell(model: CellModel): Cell {
    let cell: Cell;
    const keys: CellKeys = {
      run: (mode) => this.runCell(cell, mode),
      escape: () => this.commandMode(),
      save: () => void this.save(),
      changed: () => this.setDirty(true),
      focus: () => {
        this.select(this.cells.indexOf(cell));
        this.mode = 'edit';
        this.el.classList.add('zh-edit-mode');
      },
      complete: (code, pos) => this.complete(code, pos),
      inspect: (code, pos) => this.inspect(code, pos),
      split: () => this.split(cell),
      leave: (dir) => {
        const idx = this.cells.indexOf(cell) + dir;
        if (idx < 0 || idx >= this.cells.length) return false;
        this.select(idx);
        this.cells[idx].edit();
        return true;
      },
    };
    cell = new Cell(model, keys);
    return cell;
  }

  // -- kernel ------------------------------------------------------------------
  /** Find or start this notebook's session and connect; false if the server said no. */
  private async startKernel(early?: { specs: Promise<KernelSpecs>; session: Promise<SessionModel> }): Promise<boolean> {
    const existingSessions = early ? null : sessions.list();
    existingSessions?.catch(() => undefined);
    try {
      this.specs = await (early ? early.specs : kernelspecs.list());
    } catch (e) {
      this.setStatus('dead', `cannot list kernels: ${(e as Error).message}`);
      return false;
    }
    const wanted = this.meta.kernelspec?.name;
    const name = wanted && this.specs.kernelspecs[wanted] ? wanted : this.specs.default;
    this.kernelSelect.replaceChildren(
      ...Object.values(this.specs.kernelspecs).map((s) => h('option', { value: s.name, selected: s.name === name }, s.spec.display_name || s.name)),
    );
    try {
      if (early) this.session = await early.session;
      else {
        const existing = (await existingSessions!).find((s) => s.path === this.path);
        this.session = existing ?? (await sessions.create(this.path, name));
      }
    } catch (e) {
      this.setStatus('dead', `cannot start kernel: ${(e as Error).message}`);
      return false;
    }
    this.kernelSelect.value = this.session.kernel.name;
    this.connect(this.session.kernel.id);
    this.restoreWidgets();
    // The early session got the default kernel; a notebook written for
    // another installed kernel switches to it.
    if (early && this.session.kernel.name !== name && this.session.kernel.name === this.specs.default) {
      this.kernelSelect.value = name;
      await this.changeKernel(name);
    }
    return true;
  }

  private connect(kernelId: string): void {
    this.kernel?.dispose();
    const kernel = new KernelConnection(kernelId);
    this.kernel = kernel;
    this.resetWidgets();
    this.disposers.push(
      kernel.onStatus((s, d) => {
        this.setStatus(s, d);
        if (s === 'dead' && kernel.lost && this.kernel === kernel) void this.replaceLostKernel();
      }),
    );
  }

  /** Widgets belong to one kernel process: a new kernel or a restart starts afresh. */
  private resetWidgets(): void {
    this.widgets?.dispose();
    this.widgets = this.kernel ? new WidgetHost(this.kernel) : null;
    const host = this.widgets;
    setWidgetRenderer(host ? (data) => host.render(data) : null);
  }

  /** Widget outputs in the notebook: if the kernel still has those widgets, show them live again. */
  private restoreWidgets(): void {
    const withWidgets = () => this.cells.filter((c) => c.model.outputs.some((o) => 'data' in o && o.data && WIDGET_VIEW_MIME in o.data));
    if (!this.widgets || withWidgets().length === 0) return;
    const host = this.widgets;
    void host.restore().then((ok) => {
      if (!ok || this.widgets !== host) return;
      for (const c of withWidgets()) if (!c.running) c.renderOutputs();
    });
  }

  /** The server forgot the kernel (it restarted): start a fresh one. */
  private async replaceLostKernel(): Promise<void> {
    for (const c of this.cells) {
      if (!c.running) continue;
      c.running = false;
      c.el.classList.remove('zh-running');
      c.setPrompt();
    }
    toast('The kernel was lost (server restarted?); starting a new one. Variables must be recomputed.', 'error', 8000);
    this.session = null;
    // The server may still be going down or coming up: keep trying, gently.
    for (let attempt = 0; !this.disposed; attempt++) {
      if (await this.startKernel()) return;
      const delay = Math.min(10_000, 1000 * 2 ** Math.min(attempt, 4));
      this.setStatus('disconnected', `waiting for the server to start a kernel; retrying in ${delay / 1000}s`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  private setStatus(status: KernelStatus, detail: string): void {
    const label: Record<string, string> = {
      connecting: 'connecting…',
      unknown: 'connected',
      starting: 'starting',
      idle: 'idle',
      busy: 'busy',
      restarting: 'restarting',
      dead: 'dead',
      disconnected: 'disconnected',
    };
    this.statusEl.textContent = label[status] ?? status;
    this.statusEl.dataset.status = status;
    this.statusEl.title = detail ? `Kernel ${status}: ${detail}` : `Kernel ${status}`;
  }

  private async changeKernel(name: string): Promise<void> {
    if (!this.session) return;
    try {
      this.session = await sessions.update(this.session.id, { kernel: { name } });
      this.meta.kernelspec = { name, display_name: this.specs?.kernelspecs[name]?.spec.display_name ?? name, language: this.specs?.kernelspecs[name]?.spec.language ?? '' };
      this.setDirty(true);
      this.connect(this.session.kernel.id);
    } catch (e) {
      toast(`Could not change kernel: ${(e as Error).message}`, 'error');
    }
  }

  async interrupt(): Promise<void> {
    try {
      await this.kernel?.interrupt();
    } catch (e) {
      toast(`Interrupt failed: ${(e as Error).message}`, 'error');
    }
  }

  async restart(runAll: boolean): Promise<void> {
    if (!this.kernel) return;
    const ok = await confirmDialog('Restart kernel?', runAll ? 'Restart the kernel and run all cells? Variables will be lost.' : 'Restart the kernel? Variables will be lost.', 'Restart', true);
    if (!ok) return;
    for (const c of this.cells) {
      c.running = false;
      c.setPrompt();
    }
    this.resetWidgets();
    try {
      await this.kernel.restart();
    } catch (e) {
      toast(`Restart failed: ${(e as Error).message}`, 'error');
      return;
    }
    if (runAll) this.runRange(0, this.cells.length);
  }

  private async complete(code: string, pos: number): Promise<{ matches: string[]; start: number; end: number } | null> {
    if (!this.kernel || this.kernel.status === 'disconnected') return null;
    try {
      const reply = await this.kernel.request('shell', 'complete_request', { code, cursor_pos: jsIndexToCodepoint(code, pos) }, 20000);
      const c = reply.content;
      if (c.status !== 'ok') return null;
      return { matches: c.matches, start: codepointToJsIndex(code, c.cursor_start), end: codepointToJsIndex(code, c.cursor_end) };
    } catch {
      return null;
    }
  }

  private async inspect(code: string, pos: number): Promise<string | null> {
    if (!this.kernel) return null;
    try {
      const reply = await this.kernel.request('shell', 'inspect_request', { code, cursor_pos: jsIndexToCodepoint(code, pos), detail_level: 0 }, 20000);
      const c = reply.content;
      return c.status === 'ok' && c.found ? (c.data['text/plain'] as string) : null;
    } catch {
      return null;
    }
  }

  // -- running -------------------------------------------------------------------
  /** Run the selected cell(s) (command mode, toolbar). */
  runActive(mode: 'advance' | 'stay' | 'insert'): void {
    const [lo, hi] = this.selection();
    if (lo === hi) {
      const cell = this.cells[this.active];
      if (cell) this.runCell(cell, mode);
      return;
    }
    for (const cell of this.cells.slice(lo, hi + 1)) this.execute(cell);
    if (mode === 'insert' || (mode === 'advance' && hi === this.cells.length - 1)) this.insert(hi + 1, 'code');
    else if (mode === 'advance') {
      this.select(hi + 1);
      this.cells[hi + 1].el.focus();
    }
  }

  private runCell(cell: Cell, mode: 'advance' | 'stay' | 'insert'): void {
    this.execute(cell);
    const idx = this.cells.indexOf(cell);
    if (mode === 'advance') {
      if (idx === this.cells.length - 1) this.insert(idx + 1, 'code');
      else {
        this.select(idx + 1);
        if (this.mode === 'edit') this.cells[idx + 1].edit();
        else this.cells[idx + 1].el.focus();
      }
    } else if (mode === 'insert') {
      this.insert(idx + 1, 'code');
    }
  }

  runRange(start: number, end: number): void {
    for (const cell of this.cells.slice(start, end)) this.execute(cell);
  }

  /** Send one cell to the kernel and route its output back into it. */
  execute(cell: Cell): void {
    cell.sync();
    if (cell.model.cell_type === 'markdown') {
      cell.render();
      return;
    }
    if (cell.model.cell_type !== 'code') return;
    if (!this.kernel) {
      toast('No kernel is connected yet', 'error');
      return;
    }
    const code = cell.model.source;
    cell.clearOutputs();
    cell.running = true;
    cell.setPrompt();
    cell.timing.textContent = '';
    cell.el.classList.add('zh-running');
    this.setDirty(true);
    let started = 0;
    const finish = () => {
      // An unanswered input() prompt is moot once the request is over (interrupt, restart).
      cell.outputsEl.querySelector('.zh-stdin')?.remove();
      cell.running = false;
      cell.el.classList.remove('zh-running');
      cell.setPrompt();
      if (started) cell.timing.textContent = formatDuration(performance.now() - started);
    };
    this.kernel.execute(code, {
      onIopub: (msg) => {
        if (!started && msg.header.msg_type !== 'execute_input') started = performance.now();
        this.handleIopub(cell, msg);
        if (msg.header.msg_type === 'execute_input') started = performance.now();
      },
      onReply: (msg) => {
        const c = msg.content;
        if (typeof c.execution_count === 'number') cell.model.execution_count = c.execution_count;
        if (c.status === 'aborted') cell.timing.textContent = 'aborted';
      },
      onStdin: (msg) => {
        if (msg.header.msg_type !== 'input_request') return;
        void cell.askInput(msg.content.prompt ?? '', !!msg.content.password).then((v) => this.kernel?.inputReply(v, msg));
      },
      onDone: finish,
    });
  }

  private handleIopub(cell: Cell, msg: KernelMessage): void {
    applyIopub(cell, msg, this.displays);
  }

  // -- selection, modes, cell operations ---------------------------------------------
  /** Make `index` the active cell; with `extend`, grow the selection to it from the anchor. */
  select(index: number, extend = false): void {
    if (index < 0 || index >= this.cells.length) return;
    this.cells[this.active]?.el.classList.remove('zh-active');
    this.active = index;
    if (!extend) this.anchor = index;
    this.paintSelection();
    const el = this.cells[index].el;
    el.classList.add('zh-active');
    const r = el.getBoundingClientRect();
    if (r.top < 0 || r.top > window.innerHeight - 40) el.scrollIntoView({ block: 'nearest' });
  }

  /** The selected cells as an inclusive index range [first, last]. */
  selection(): [number, number] {
    const last = this.cells.length - 1;
    const a = Math.min(Math.max(this.anchor, 0), last);
    const b = Math.min(Math.max(this.active, 0), last);
    return [Math.min(a, b), Math.max(a, b)];
  }

  private selectedCells(): Cell[] {
    const [lo, hi] = this.selection();
    return this.cells.slice(lo, hi + 1);
  }

  /** Mark the selected cells; only cells whose state changes are touched (1,000-cell notebooks). */
  paintSelection(): void {
    const now = new Set(this.anchor === this.active ? [] : this.selectedCells());
    for (const c of this.marked) if (!now.has(c)) c.el.classList.remove('zh-selected');
    for (const c of now) if (!this.marked.has(c)) c.el.classList.add('zh-selected');
    this.marked = now;
  }

  commandMode(): void {
    this.mode = 'command';
    this.el.classList.remove('zh-edit-mode');
    const cell = this.cells[this.active];
    cell?.sync();
    cell?.el.focus();
  }

  insert(index: number, type: CellType, model?: CellModel): Cell {
    const cell = this.makeCell(model ?? cellFromJSON({ cell_type: type, source: '' }));
    const ref = this.cells[index]?.el ?? null;
    this.cellsEl.insertBefore(cell.el, ref);
    this.cells.splice(index, 0, cell);
    this.select(index);
    if (!model) cell.edit();
    this.setDirty(true);
    return cell;
  }

  /** Delete the selected cells (one undo step restores them all). */
  deleteCells(): void {
    deleteCells(this);
  }

  undoDelete(): void {
    const last = this.deleted.pop();
    if (!last) return;
    last.models.forEach((m, i) => this.insert(Math.min(last.index + i, this.cells.length), m.cell_type, m));
  }

  /** Move the selected cells up or down by one, as a block. */
  move(dir: -1 | 1): void {
    moveCells(this, dir);
  }

  copy(): void {
    const cells = this.selectedCells();
    for (const c of cells) c.sync();
    this.clipboard = cells.map((c) => structuredClone(c.model));
  }

  /** Merge the selected cells into the first of them, or the active cell with the one below. */
  merge(): void {
    mergeCells(this);
  }

  /** Split `cell` at its cursor (Ctrl+Shift+-): a selection becomes a cell of its own. */
  split(cell: Cell): void {
    splitCell(this, cell);
  }

  cut(): void {
    this.copy();
    this.deleteCells();
  }

  /** Paste the clipboard's cells below the selection. */
  paste(): void {
    let at = this.selection()[1] + 1;
    for (const m of this.clipboard) {
      const copy = { ...structuredClone(m), id: newCellId() };
      this.insert(at++, copy.cell_type, copy);
    }
  }

  changeType(type: CellType): void {
    for (const c of this.selectedCells()) c.setType(type);
    this.setDirty(true);
  }

  // -- saving --------------------------------------------------------------------
  setDirty(d: boolean): void {
    this.unsaved = d;
    this.saveStateEl.textContent = d ? 'unsaved changes' : 'saved';
    this.saveStateEl.dataset.dirty = String(d);
  }

  toJSON(): any {
    for (const c of this.cells) c.sync();
    return {
      nbformat: 4,
      nbformat_minor: this.nbformatMinor,
      metadata: this.meta,
      cells: this.cells.map((c) => cellToJSON(c.model)),
    };
  }

  /** Save; never overwrites a newer version on disk without asking. */
  async save(auto = false): Promise<boolean> {
    const content = this.toJSON();
    this.saveStateEl.textContent = 'saving…';
    const result = await this.guard.save({ type: 'notebook', format: 'json', content }, auto);
    if (result === 'saved') {
      this.setDirty(false);
      return true;
    }
    if (result === 'reload') {
      this.setDirty(false);
      this.dispose();
      this.navigate(this.path);
      return false;
    }
    this.setDirty(true);
    return false;
  }

  private async rename(): Promise<void> {
    const name = await promptDialog('Rename notebook', 'New name', basename(this.path));
    if (!name || name === basename(this.path)) return;
    if (name.includes('/')) {
      toast('A name cannot contain "/"', 'error');
      return;
    }
    const dir = this.path.includes('/') ? this.path.slice(0, this.path.lastIndexOf('/') + 1) : '';
    const newPath = dir + (name.endsWith('.ipynb') ? name : `${name}.ipynb`);
    try {
      await contents.rename(this.path, newPath);
    } catch (e) {
      toast(`Rename failed: ${(e as Error).message}`, 'error');
      return;
    }
    if (this.session) {
      try {
        this.session = await sessions.update(this.session.id, { path: newPath, name: basename(newPath) });
      } catch {
        // The file is renamed; a stale session path only affects listings.
      }
    }
    this.path = newPath;
    this.guard.path = newPath;
    this.titleEl.textContent = basename(newPath);
    document.title = `${basename(newPath)} — Zasper`;
    history.replaceState(null, '', pageUrlFor('notebooks', newPath));
  }

  retheme(): void {
    for (const c of this.cells) if (c.editor) retheme(c.editor);
  }

  dispose(): void {
    this.disposed = true;
    clearInterval(this.autosaveTimer);
    this.observer.disconnect();
    for (const d of this.disposers) d();
    this.kernel?.dispose();
    this.kernel = null;
    this.resetWidgets();
  }

  isDirty(): boolean {
    return this.unsaved;
  }
}
