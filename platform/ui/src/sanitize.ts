/**
 * The one place untrusted HTML becomes DOM.  Notebook outputs and markdown
 * come from files anyone may have written, so script, event handlers,
 * javascript: URLs, iframes, forms and objects are removed before insertion.
 */

import DOMPurify from 'dompurify';

let hooked = false;

/** Sanitize untrusted HTML to a string safe for innerHTML in the app's origin. */
export function sanitize(html: string): string {
  if (!hooked) {
    // Links open in a new tab without giving it a handle on this window.
    DOMPurify.addHook('afterSanitizeAttributes', (node: Element) => {
      if (node.tagName === 'A' && node.hasAttribute('href')) {
        node.setAttribute('target', '_blank');
        node.setAttribute('rel', 'noopener noreferrer');
      }
    });
    hooked = true;
  }
  return DOMPurify.sanitize(html, {
    FORBID_TAGS: ['script', 'iframe', 'frame', 'object', 'embed', 'form', 'input', 'button', 'textarea', 'select', 'base', 'meta', 'link'],
    FORBID_ATTR: ['srcdoc', 'formaction'],
    ALLOW_DATA_ATTR: true,
  }) as unknown as string;
}
