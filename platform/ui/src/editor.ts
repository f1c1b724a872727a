/**
 * CodeMirror 6 editors for cells and text files.  Cells get Python
 * highlighting, kernel-backed completion (Tab) and inspection (Shift+Tab);
 * run keys are handed to the notebook through `CellKeys`.
 */

import { autocompletion, closeBrackets, closeBracketsKeymap, CompletionContext, CompletionResult, startCompletion } from '@codemirror/autocomplete';
import { defaultKeymap, history, historyKeymap, indentLess, indentMore, insertNewlineAndIndent } from '@codemirror/commands';
import { python } from '@codemirror/lang-python';
import { bracketMatching, defaultHighlightStyle, HighlightStyle, indentOnInput, indentUnit, syntaxHighlighting } from '@codemirror/language';
import { Compartment, EditorState, Extension, Prec, StateEffect, StateField } from '@codemirror/state';
import { drawSelection, EditorView, highlightActiveLine, keymap, lineNumbers, showTooltip, Tooltip } from '@codemirror/view';
import { tags } from '@lezer/highlight';

export interface CellKeys {
  run(mode: 'advance' | 'stay' | 'insert'): void;
  escape(): void;
  save(): void;
  changed(): void;
  complete?(code: string, pos: number): Promise<{ matches: string[]; start: number; end: number } | null>;
  inspect?(code: string, pos: number): Promise<string | null>;
  /** Arrow off the first/last line: move to the neighbouring cell. */
  leave?(direction: -1 | 1): boolean;
  focus?(): void;
  /** Split the cell at the cursor (Ctrl+Shift+-). */
  split?(): void;
}

const darkHighlight = HighlightStyle.define([
  { tag: tags.keyword, color: '#c792ea' },
  { tag: [tags.string, tags.special(tags.string)], color: '#c3e88d' },
  { tag: tags.number, color: '#f78c6c' },
  { tag: tags.comment, color: '#7f8c98', fontStyle: 'italic' },
  { tag: [tags.function(tags.variableName), tags.definition(tags.function(tags.variableName))], color: '#82aaff' },
  { tag: [tags.bool, tags.null, tags.atom], color: '#ff9cac' },
  { tag: tags.className, color: '#ffcb6b' },
  { tag: tags.operator, color: '#89ddff' },
]);

export const themeCompartment = new Compartment();

export function highlightFor(dark: boolean): Extension {
  return dark ? syntaxHighlighting(darkHighlight) : syntaxHighlighting(defaultHighlightStyle);
}

export function isDark(): boolean {
  return document.documentElement.dataset.theme === 'dark';
}

// --- Shift+Tab inspection tooltip ------------------------------------------------
const setInspect = StateEffect.define<Tooltip | null>();
const inspectField = StateField.define<Tooltip | null>({
  create: () => null,
  update(value, tr) {
    for (const e of tr.effects) if (e.is(setInspect)) return e.value;
    return tr.docChanged || tr.selection ? null : value;
  },
  provide: (f) => showTooltip.from(f),
});

function inspectTooltip(pos: number, text: string): Tooltip {
  return {
    pos,
    above: false,
    create() {
      const dom = document.createElement('div');
      dom.className = 'zh-inspect';
      const pre = document.createElement('pre');
      // Docstrings carry ANSI colours; plain text is enough here.
      pre.textContent = text.replace(/\x1b\[[0-9;]*m/g, '');
      dom.append(pre);
      return { dom };
    },
  };
}

export function cellEditor(parent: HTMLElement, doc: string, keys: CellKeys, language = 'python'): EditorView {
  const complete = async (ctx: CompletionContext): Promise<CompletionResult | null> => {
    if (!keys.complete) return null;
    if (!ctx.explicit && !ctx.matchBefore(/[\w.]+$/)) return null;
    const reply = await keys.complete(ctx.state.doc.toString(), ctx.pos);
    if (!reply || reply.matches.length === 0) return null;
    return { from: reply.start, to: reply.end, options: reply.matches.map((label) => ({ label })), filter: true };
  };
  const tabOrComplete = (view: EditorView): boolean => {
    const { from, to } = view.state.selection.main;
    const before = view.state.sliceDoc(view.state.doc.lineAt(from).from, from);
    if (from !== to || /^\s*$/.test(before)) return indentMore(view);
    return startCompletion(view);
  };
  const inspect = (view: EditorView): boolean => {
    if (!keys.inspect) return false;
    const pos = view.state.selection.main.head;
    void keys.inspect(view.state.doc.toString(), pos).then((text) => {
      if (text) view.dispatch({ effects: setInspect.of(inspectTooltip(pos, text)) });
    });
    return true;
  };
  const runKeys = Prec.highest(
    keymap.of([
      { key: 'Shift-Enter', run: () => (keys.run('advance'), true) },
      { key: 'Ctrl-Enter', run: () => (keys.run('stay'), true) },
      { key: 'Mod-Enter', run: () => (keys.run('stay'), true) },
      { key: 'Alt-Enter', run: () => (keys.run('insert'), true) },
      { key: 'Escape', run: () => (keys.escape(), true) },
      { key: 'Mod-s', run: () => (keys.save(), true), preventDefault: true },
      { key: 'Shift-Tab', run: inspect },
      // With Shift held the key is '_' on most layouts; bind both names.
      { key: 'Ctrl-Shift--', run: () => (keys.split?.(), !!keys.split) },
      { key: 'Ctrl-_', run: () => (keys.split?.(), !!keys.split) },
      {
        key: 'ArrowUp',
        run: (v) => v.state.doc.lineAt(v.state.selection.main.head).number === 1 && !!keys.leave?.(-1),
      },
      {
        key: 'ArrowDown',
        run: (v) => v.state.doc.lineAt(v.state.selection.main.head).number === v.state.doc.lines && !!keys.leave?.(1),
      },
    ]),
  );
  const extensions: Extension[] = [
    runKeys,
    history(),
    drawSelection(),
    indentOnInput(),
    bracketMatching(),
    closeBrackets(),
    indentUnit.of('    '),
    autocompletion({ override: [complete], activateOnTyping: false }),
    inspectField,
    keymap.of([{ key: 'Tab', run: tabOrComplete, shift: indentLess }, ...closeBracketsKeymap, ...historyKeymap, ...defaultKeymap]),
    themeCompartment.of(highlightFor(isDark())),
    EditorView.lineWrapping,
    EditorView.updateListener.of((u) => {
      if (u.docChanged) keys.changed();
      if (u.focusChanged && u.view.hasFocus) keys.focus?.();
    }),
  ];
  if (language === 'python') extensions.push(python());
  return new EditorView({ state: EditorState.create({ doc, extensions }), parent });
}

/** A whole-file editor for text files. */
export function fileEditor(parent: HTMLElement, doc: string, onChange: () => void, onSave: () => void, filename: string): EditorView {
  const extensions: Extension[] = [
    Prec.highest(keymap.of([{ key: 'Mod-s', run: () => (onSave(), true), preventDefault: true }])),
    lineNumbers(),
    history(),
    drawSelection(),
    highlightActiveLine(),
    indentOnInput(),
    bracketMatching(),
    keymap.of([{ key: 'Tab', run: indentMore, shift: indentLess }, { key: 'Enter', run: insertNewlineAndIndent }, ...historyKeymap, ...defaultKeymap]),
    themeCompartment.of(highlightFor(isDark())),
    EditorView.updateListener.of((u) => u.docChanged && onChange()),
  ];
  if (/\.pyw?$/.test(filename)) extensions.push(python());
  return new EditorView({ state: EditorState.create({ doc, extensions }), parent });
}

/** Switch an editor's highlight colours to the current theme. */
export function retheme(view: EditorView): void {
  view.dispatch({ effects: themeCompartment.reconfigure(highlightFor(isDark())) });
}
