/**
 * Applying a cell's iopub messages to it: streams, rich results, errors,
 * clear_output (with wait) and update_display_data across cells.
 */

import type { Cell } from './cell';
import type { Output } from './render';
import type { KernelMessage } from './wire';

/** display_id → the outputs showing it (update_display_data replaces them all). */
export type DisplayTargets = Map<string, { cell: Cell; index: number }[]>;

/** Apply one iopub message of `cell`'s execution to it. */
export function applyIopub(cell: Cell, msg: KernelMessage, displays: DisplayTargets): void {
  const t = msg.header.msg_type;
  const c = msg.content;
  if (t === 'execute_input') {
    if (typeof c.execution_count === 'number') cell.model.execution_count = c.execution_count;
  } else if (t === 'stream') {
    cell.addOutput({ output_type: 'stream', name: c.name, text: c.text });
  } else if (t === 'execute_result' || t === 'display_data') {
    const out: Output = { output_type: t, data: c.data ?? {}, metadata: c.metadata ?? {} };
    if (t === 'execute_result') (out as any).execution_count = c.execution_count ?? null;
    cell.addOutput(out);
    const id = c.transient?.display_id;
    if (id) {
      const list = displays.get(id) ?? [];
      list.push({ cell, index: cell.model.outputs.length - 1 });
      displays.set(id, list);
    }
  } else if (t === 'update_display_data') {
    const id = c.transient?.display_id;
    for (const target of displays.get(id) ?? []) {
      const old = target.cell.model.outputs[target.index];
      if (!old || old.output_type === 'stream' || old.output_type === 'error') continue;
      target.cell.replaceOutput(target.index, { ...old, data: c.data ?? {}, metadata: c.metadata ?? {} });
    }
  } else if (t === 'clear_output') {
    if (c.wait) cell.clearPending = true;
    else cell.clearOutputs();
  } else if (t === 'error') {
    cell.addOutput({ output_type: 'error', ename: c.ename, evalue: c.evalue, traceback: c.traceback ?? [] });
  }
}
