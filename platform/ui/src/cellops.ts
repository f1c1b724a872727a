/**
 * Structural edits on a notebook's cells that act on the whole selection:
 * delete (one undo step), move as a block, merge, and split at the cursor.
 */

import type { Cell, CellModel, CellType } from './cell';
import { cellFromJSON } from './cell';

/** The part of the notebook panel these edits work on. */
export interface CellHost {
  cells: Cell[];
  active: number;
  anchor: number;
  readonly cellsEl: HTMLElement;
  marked: Set<Cell>;
  deleted: { index: number; models: CellModel[] }[];
  selection(): [number, number];
  select(index: number, extend?: boolean): void;
  insert(index: number, type: CellType, model?: CellModel): Cell;
  paintSelection(): void;
  setDirty(d: boolean): void;
}

/** Delete the selected cells (one undo step restores them all). */
export function deleteCells(nb: CellHost): void {
  if (nb.cells.length === 0) return;
  const [lo, hi] = nb.selection();
  const gone = nb.cells.slice(lo, hi + 1);
  for (const c of gone) c.sync();
  nb.deleted.push({ index: lo, models: gone.map((c) => structuredClone(c.model)) });
  for (const c of gone) {
    c.destroy();
    nb.marked.delete(c);
  }
  nb.cells.splice(lo, gone.length);
  if (nb.cells.length === 0) nb.insert(0, 'code');
  nb.active = Math.min(lo, nb.cells.length - 1);
  nb.select(nb.active);
  nb.setDirty(true);
}

/** Move the selected cells up or down by one, as a block. */
export function moveCells(nb: CellHost, dir: -1 | 1): void {
  const [lo, hi] = nb.selection();
  if ((dir < 0 && lo === 0) || (dir > 0 && hi === nb.cells.length - 1)) return;
  nb.cells[nb.active].el.classList.remove('zh-active');
  // Moving the block is moving its neighbour to the other side of it.
  if (dir < 0) {
    const [other] = nb.cells.splice(lo - 1, 1);
    nb.cells.splice(hi, 0, other);
    nb.cellsEl.insertBefore(other.el, nb.cells[hi + 1]?.el ?? null);
  } else {
    const [other] = nb.cells.splice(hi + 1, 1);
    nb.cells.splice(lo, 0, other);
    nb.cellsEl.insertBefore(other.el, nb.cells[lo + 1].el);
  }
  const anchor = nb.anchor + dir;
  nb.select(nb.active + dir);
  nb.anchor = anchor;
  nb.paintSelection();
  nb.setDirty(true);
}

/** Merge the selected cells into the first of them, or the active cell with the one below. */
export function mergeCells(nb: CellHost): void {
  let [lo, hi] = nb.selection();
  if (lo === hi) hi = lo + 1;
  if (hi >= nb.cells.length) return;
  const group = nb.cells.slice(lo, hi + 1);
  for (const c of group) c.sync();
  const first = group[0];
  first.setSource(group.map((c) => c.model.source).join('\n\n'));
  // The outputs belonged to the separate pieces of code, not to the merge.
  if (first.model.cell_type === 'code') {
    first.clearOutputs();
    first.timing.textContent = '';
    first.model.execution_count = null;
    first.setPrompt();
  } else if (first.model.cell_type === 'markdown' && first.rendered) first.render();
  for (const c of group.slice(1)) {
    c.destroy();
    nb.marked.delete(c);
  }
  nb.cells.splice(lo + 1, group.length - 1);
  nb.active = lo;
  nb.select(lo);
  nb.setDirty(true);
}

/** Split `cell` at its cursor (Ctrl+Shift+-): a selection becomes a cell of its own. */
export function splitCell(nb: CellHost, cell: Cell): void {
  const view = cell.editor;
  const idx = nb.cells.indexOf(cell);
  if (!view || idx < 0) return;
  const { from, to } = view.state.selection.main;
  const text = view.state.doc.toString();
  const pieces = (from === to ? [text.slice(0, from), text.slice(from)] : [text.slice(0, from), text.slice(from, to), text.slice(to)])
    // The blank lines at a cut belong to neither piece.
    .map((p, i) => (i > 0 ? p.replace(/^\n+/, '') : p))
    .map((p, i, all) => (i < all.length - 1 ? p.replace(/\n+$/, '') : p));
  cell.setSource(pieces[0]);
  let last = cell;
  pieces.slice(1).forEach((src, i) => {
    const model = cellFromJSON({ cell_type: cell.model.cell_type, source: src });
    last = nb.insert(idx + 1 + i, model.cell_type, model);
  });
  nb.select(idx + pieces.length - 1);
  last.edit();
  last.editor?.dispatch({ selection: { anchor: 0 } });
  nb.setDirty(true);
}
