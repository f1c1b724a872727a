/**
 * A DOM for renderer tests: jsdom's window installed as the global one
 * before any UI module (DOMPurify binds to `window` when first imported).
 */
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>', { url: 'http://127.0.0.1/', pretendToBeVisual: true });
const g = globalThis as any;
g.window = dom.window;
g.document = dom.window.document;
g.Node = dom.window.Node;
g.HTMLElement = dom.window.HTMLElement;
g.Element = dom.window.Element;
g.DocumentFragment = dom.window.DocumentFragment;

/** Set by any script that manages to run inside the test DOM. */
g.window.__pwned = false;
