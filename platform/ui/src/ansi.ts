/**
 * ANSI SGR escape sequences (colours, bold, underline) to escaped HTML.
 * Tracebacks from IPython are coloured this way; anything else that is not
 * a colour code is dropped rather than shown as garbage.
 */

const NAMES = ['black', 'red', 'green', 'yellow', 'blue', 'magenta', 'cyan', 'white'];

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

/** xterm 256-colour palette entry as CSS. */
function color256(n: number): string {
  if (n < 16) return `var(--ansi-${n < 8 ? NAMES[n] : 'bright-' + NAMES[n - 8]})`;
  if (n < 232) {
    const v = n - 16;
    const c = (x: number) => (x === 0 ? 0 : 55 + x * 40);
    return `rgb(${c(Math.floor(v / 36))},${c(Math.floor(v / 6) % 6)},${c(v % 6)})`;
  }
  const g = 8 + (n - 232) * 10;
  return `rgb(${g},${g},${g})`;
}

interface State {
  fg: string | null;
  bg: string | null;
  bold: boolean;
  underline: boolean;
}

function applyCodes(state: State, codes: number[]): void {
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) Object.assign(state, { fg: null, bg: null, bold: false, underline: false });
    else if (c === 1) state.bold = true;
    else if (c === 4) state.underline = true;
    else if (c === 22) state.bold = false;
    else if (c === 24) state.underline = false;
    else if (c >= 30 && c <= 37) state.fg = `var(--ansi-${NAMES[c - 30]})`;
    else if (c >= 90 && c <= 97) state.fg = `var(--ansi-bright-${NAMES[c - 90]})`;
    else if (c >= 40 && c <= 47) state.bg = `var(--ansi-${NAMES[c - 40]})`;
    else if (c >= 100 && c <= 107) state.bg = `var(--ansi-bright-${NAMES[c - 100]})`;
    else if (c === 39) state.fg = null;
    else if (c === 49) state.bg = null;
    else if ((c === 38 || c === 48) && codes[i + 1] === 5 && i + 2 < codes.length) {
      const v = color256(codes[i + 2]);
      if (c === 38) state.fg = v;
      else state.bg = v;
      i += 2;
    } else if ((c === 38 || c === 48) && codes[i + 1] === 2 && i + 4 < codes.length) {
      const v = `rgb(${codes[i + 2] & 255},${codes[i + 3] & 255},${codes[i + 4] & 255})`;
      if (c === 38) state.fg = v;
      else state.bg = v;
      i += 4;
    }
  }
}

function open(state: State): string {
  const style: string[] = [];
  if (state.fg) style.push(`color:${state.fg}`);
  if (state.bg) style.push(`background-color:${state.bg}`);
  if (state.bold) style.push('font-weight:bold');
  if (state.underline) style.push('text-decoration:underline');
  return style.length ? `<span style="${style.join(';')}">` : '';
}

/** Convert text with ANSI escapes into safe HTML. */
export function ansiToHtml(text: string): string {
  // CSI sequences: ESC [ params final-byte.  Only SGR ("m") is rendered.
  const re = /\x1b\[([0-9;]*)([A-Za-z])/g;
  const state: State = { fg: null, bg: null, bold: false, underline: false };
  let out = '';
  let last = 0;
  let spanOpen = '';
  let m: RegExpExecArray | null;
  const flush = (chunk: string) => {
    if (!chunk) return;
    const clean = escapeHtml(chunk.replace(/\x1b[^\[]?/g, ''));
    out += spanOpen ? spanOpen + clean + '</span>' : clean;
  };
  while ((m = re.exec(text)) !== null) {
    flush(text.slice(last, m.index));
    last = re.lastIndex;
    if (m[2] !== 'm') continue;
    const codes = m[1] === '' ? [0] : m[1].split(';').map((x) => parseInt(x || '0', 10));
    applyCodes(state, codes);
    spanOpen = open(state);
  }
  flush(text.slice(last));
  return out;
}

/** Strip ANSI escapes (for plain-text uses such as copying). */
export function stripAnsi(text: string): string {
  return text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
}

/**
 * Apply terminal carriage-return and backspace semantics the way progress
 * bars (tqdm, pip) expect: "\r" rewinds to the line start, "\b" deletes.
 */
export function fixCarriageReturns(text: string): string {
  if (!text.includes('\r') && !text.includes('\x08')) return text;
  return text
    .replace(/\r\n/g, '\n')
    .split('\n')
    .map((line) => {
      let cur = line;
      if (cur.includes('\r')) {
        const pieces = cur.split('\r');
        let result = '';
        for (const p of pieces) result = p + result.slice(p.length);
        cur = result;
      }
      // \x08 is backspace (inside a regex, \b outside a class is a word boundary).
      while (/[^\x08]\x08/.test(cur)) cur = cur.replace(/[^\x08]\x08/, '');
      return cur.replace(/\x08/g, '');
    })
    .join('\n');
}
