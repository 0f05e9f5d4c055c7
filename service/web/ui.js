// Small helpers for building pages without a framework: elements are made
// with their attributes and children, text is always set as text (never
// parsed as HTML), and a page says what it is doing in one live region.

/** An element with attributes and children (strings become text). */
export function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (v === true) node.setAttribute(k, '');
    else node.setAttribute(k, String(v));
  }
  for (const child of [].concat(children)) {
    if (child == null || child === false) continue;
    node.append(typeof child === 'string' || typeof child === 'number' ? document.createTextNode(String(child)) : child);
  }
  return node;
}

/** Removes every child. */
export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

/** Says something to everyone, screen readers included. */
export function announce(message, kind = 'info') {
  const region = document.getElementById('announce');
  if (!region) return;
  region.textContent = message;
  region.dataset.kind = kind;
}

/** Runs `fn` at most once per `ms`, after the last call. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** A wide table in a box that scrolls on its own (never the page), and
 * that the keyboard can reach and scroll too. */
export function scrollable(table, label) {
  return el('div', { class: 'table-scroll', tabindex: '0', role: 'region', 'aria-label': label }, table);
}
