// Small DOM helpers. Text from the channel DB is untrusted: it only ever goes through
// textContent (and attribute setters for a vetted few), never through innerHTML.

/**
 * Build an element: el("button", {class: "x", dataset: {action: "install"}, onclick}, "Install").
 * Children may be strings (set as text nodes), nodes, arrays, null or false (skipped).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style" && typeof value === "object") Object.assign(node.style, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = String(value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

/** Remove every child of a node. */
export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** Replace a node's children. */
export function replace(node, ...children) {
  clear(node);
  append(node, children);
  return node;
}

/** Set text only when it changed (cheap re-binding of virtualised rows). */
export function setText(node, value) {
  const s = value === undefined || value === null ? "" : String(value);
  if (node.textContent !== s) node.textContent = s;
}

/** An URL safe to put in href: http(s) or file only, else null. */
export function safeHref(url) {
  if (typeof url !== "string") return null;
  try {
    const parsed = new URL(url, "http://invalid.invalid/");
    if (!/^(https?|file):$/.test(parsed.protocol) || parsed.host === "invalid.invalid") return null;
    return parsed.href;
  } catch {
    return null;
  }
}

/** "3 h", "2 d" from seconds; "" for unknown. */
export function formatAge(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  const s = Math.max(0, Number(seconds));
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 36 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** A tiny event emitter for view-to-view signals. */
export class Emitter {
  constructor() { this._handlers = new Map(); }
  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this._handlers.get(type)?.delete(fn);
  }
  emit(type, detail) {
    for (const fn of [...(this._handlers.get(type) || [])]) {
      try { fn(detail); } catch (err) { console.error("[offline-manager]", type, err); }
    }
  }
}
