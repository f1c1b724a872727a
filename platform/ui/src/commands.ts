/**
 * Command-mode keyboard shortcuts (Jupyter's: A, B, D D, M, Y, Z, arrows …)
 * and their reference dialog.  Edit-mode keys live in editor.ts.
 */

import type { Cell, CellType } from './cell';
import { dialog, h } from './dom';

/** What the shortcuts act on (the notebook panel). */
export interface CommandTarget {
  el: HTMLElement;
  mode: 'command' | 'edit';
  cells: Cell[];
  active: number;
  runActive(mode: 'advance' | 'stay' | 'insert'): void;
  anchor: number;
  select(index: number, extend?: boolean): void;
  merge(): void;
  move(dir: -1 | 1): void;
  insert(index: number, type: CellType): unknown;
  changeType(type: CellType): void;
  cut(): void;
  copy(): void;
  paste(): void;
  undoDelete(): void;
  deleteCells(): void;
  interrupt(): Promise<void>;
  restart(runAll: boolean): Promise<void>;
  save(): Promise<boolean>;
}

const DOUBLE_PRESS_MS = 600;
let lastKey = '';
let lastKeyTime = 0;

/** Handle a keydown on the document for `nb`. */
export function handleCommandKey(nb: CommandTarget, e: KeyboardEvent): void {
  // Editors handle their own keys (and mark them handled).
  if (!nb.el.isConnected || e.defaultPrevented) return;
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 's') {
    e.preventDefault();
    void nb.save();
    return;
  }
  const target = e.target as HTMLElement;
  // Keys typed into an editor, input or dialog are not commands.
  if (target.closest('.cm-editor, input, textarea, select, .zh-overlay')) return;
  if (nb.mode === 'edit') return;
  const now = Date.now();
  const double = (k: string) => lastKey === k && now - lastKeyTime < DOUBLE_PRESS_MS;
  const k = e.key;
  let handled = true;
  if (k === 'Enter' && e.shiftKey) nb.runActive('advance');
  else if (k === 'Enter' && (e.ctrlKey || e.metaKey)) nb.runActive('stay');
  else if (k === 'Enter' && e.altKey) nb.runActive('insert');
  else if (k === 'Enter') nb.cells[nb.active]?.edit();
  else if (e.ctrlKey || e.metaKey || e.altKey) handled = false;
  // Letters compared case-insensitively: with Shift, the key is usually upper case, not always.
  else if (e.shiftKey && (k === 'ArrowUp' || k.toLowerCase() === 'k')) nb.select(nb.active - 1, true);
  else if (e.shiftKey && (k === 'ArrowDown' || k.toLowerCase() === 'j')) nb.select(nb.active + 1, true);
  else if (e.shiftKey && k.toLowerCase() === 'm') nb.merge();
  else if (e.shiftKey && k.length === 1 && /[a-z]/i.test(k)) handled = false;
  else if (k === 'ArrowUp' || k === 'k') nb.select(nb.active - 1);
  else if (k === 'ArrowDown' || k === 'j') nb.select(nb.active + 1);
  else if (k === 'a') nb.insert(nb.active, 'code');
  else if (k === 'b') nb.insert(nb.active + 1, 'code');
  else if (k === 'm') nb.changeType('markdown');
  else if (k === 'y') nb.changeType('code');
  else if (k === 'r') nb.changeType('raw');
  else if (k === 'x') nb.cut();
  else if (k === 'c') nb.copy();
  else if (k === 'v') nb.paste();
  else if (k === 'z') nb.undoDelete();
  else if (k === 'h') void showShortcuts();
  else if (k === 's') void nb.save();
  else if (k === 'd') {
    if (double('d')) {
      nb.deleteCells();
      lastKey = '';
      e.preventDefault();
      return;
    }
  } else if (k === 'i') {
    if (double('i')) void nb.interrupt();
  } else if (k === '0') {
    if (double('0')) void nb.restart(false);
  } else handled = false;
  lastKey = k;
  lastKeyTime = now;
  if (handled) e.preventDefault();
}

const SHORTCUTS: [string, string][] = [
  ['Shift+Enter', 'run cell, select below'],
  ['Ctrl+Enter', 'run cell'],
  ['Alt+Enter', 'run cell, insert below'],
  ['Enter / Esc', 'edit mode / command mode'],
  ['Tab / Shift+Tab', 'complete / inspect (edit mode)'],
  ['Ctrl+S', 'save'],
  ['A / B', 'insert cell above / below'],
  ['D, D', 'delete selected cells'],
  ['Z', 'undo cell delete'],
  ['X / C / V', 'cut / copy / paste selected cells'],
  ['M / Y / R', 'markdown / code / raw cell'],
  ['↑ ↓ or K J', 'select cell above / below'],
  ['Shift+↑ ↓, Shift+K J, Shift+click', 'extend the selection'],
  ['Shift+M', 'merge selected cells (or with the cell below)'],
  ['Ctrl+Shift+-', 'split cell at the cursor (edit mode)'],
  ['I, I', 'interrupt kernel'],
  ['0, 0', 'restart kernel'],
  ['H', 'this help'],
];

/** The keyboard shortcut reference. */
export function showShortcuts(): Promise<unknown> {
  const rows = SHORTCUTS.map(([k, d]) => h('tr', {}, h('td', {}, h('kbd', {}, k)), h('td', {}, d)));
  return dialog('Keyboard shortcuts', h('table.zh-shortcuts', {}, ...rows), [{ label: 'Close', value: true, primary: true }]);
}
