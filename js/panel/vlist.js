// A virtualised list: fixed row height, only the visible rows exist in the DOM, and row
// elements are reused while scrolling. 5.9k rows cost the same as 30.

import { el } from "./dom.js";

export class VirtualList {
  /**
   * @param {object} o
   * @param {number} o.rowHeight   pixels per row (must match the CSS)
   * @param {() => HTMLElement} o.createRow   builds one empty row element (called for the pool)
   * @param {(row: HTMLElement, item: any, index: number) => void} o.bindRow  fills a row
   * @param {number} [o.overscan]  extra rows above and below the viewport
   */
  constructor({ rowHeight, createRow, bindRow, overscan = 2, className = "" }) {
    this.rowHeight = rowHeight;
    this.createRow = createRow;
    this.bindRow = bindRow;
    this.overscan = overscan;
    this.items = [];
    this.pool = [];
    this.first = -1;
    this.root = el("div", { class: `om-vlist ${className}`, tabindex: "0", role: "list" });
    this.spacer = el("div", { class: "om-vlist-spacer" });
    this.root.appendChild(this.spacer);
    this._frame = 0;
    this._vh = 0;
    this._resize = null;
    this.root.addEventListener("scroll", () => this._onScroll(), { passive: true });
  }

  /** Show a new item array (any array-like); rows are re-bound synchronously. */
  setItems(items, { keepScroll = false } = {}) {
    // Geometry is read before any write, so the browser lays the list out once, not twice.
    let top = this.root.scrollTop;
    const vh = this._viewportHeight();
    this.items = items;
    if (!keepScroll && top !== 0) { this.root.scrollTop = 0; top = 0; }
    this.spacer.style.height = `${items.length * this.rowHeight}px`;
    this._render(true, top, vh);
  }

  /** Re-bind the visible rows (after the data behind them changed). */
  refresh() { this.render(true); }

  _onScroll() {
    if (this._frame) return;
    this._frame = requestAnimationFrame(() => { this._frame = 0; this.render(false); });
  }

  _viewportHeight() {
    // Never more than a window's height: before the stylesheet applies, the list is as tall as
    // its content and would otherwise create every row. Cached; a ResizeObserver keeps it true.
    if (this._vh > 0) return this._vh;
    const screen = typeof window !== "undefined" ? window.innerHeight || 800 : 800;
    const h = this.root.clientHeight;
    if (h > 0 && !this._resize && typeof ResizeObserver === "function") {
      this._resize = new ResizeObserver((entries) => {
        const height = entries[entries.length - 1].contentRect.height;
        if (height > 0 && Math.abs(height - this._vh) > 1) { this._vh = height; this.render(true); }
      });
      this._resize.observe(this.root);
      this._vh = Math.min(h, screen);
    }
    return h > 0 ? Math.min(h, screen) : screen;
  }

  render(force) { this._render(force, this.root.scrollTop, this._viewportHeight()); }

  _render(force, top, viewport) {
    const h = this.rowHeight;
    const n = this.items.length;
    const first = Math.max(0, Math.floor(top / h) - this.overscan);
    const count = Math.max(0, Math.min(n - first, Math.ceil(viewport / h) + 2 * this.overscan));
    if (!force && first === this.first && count === this.count) return;
    this.first = first;
    this.count = count;
    while (this.pool.length < count) {
      const row = this.createRow();
      row.classList.add("om-vrow");
      row.style.height = `${h}px`;
      this.pool.push(row);
      this.spacer.appendChild(row);
    }
    for (let k = 0; k < this.pool.length; k++) {
      const row = this.pool[k];
      if (k < count) {
        const index = first + k;
        if (row.hidden) row.hidden = false;
        const y = `translateY(${index * h}px)`;
        if (row.style.transform !== y) row.style.transform = y;
        row.dataset.index = String(index);
        this.bindRow(row, this.items[index], index);
      } else if (!row.hidden) {
        row.hidden = true;
        delete row.dataset.index;
      }
    }
  }

  /** The item behind a DOM node inside a row (event delegation), or undefined. */
  itemFor(node) {
    const row = node && node.closest ? node.closest(".om-vrow") : null;
    if (!row || row.dataset.index === undefined) return undefined;
    return this.items[Number(row.dataset.index)];
  }

  /** Scroll so that item `index` is visible. */
  scrollToIndex(index) {
    const y = index * this.rowHeight;
    const vh = this._viewportHeight();
    if (y < this.root.scrollTop || y + this.rowHeight > this.root.scrollTop + vh) this.root.scrollTop = y;
  }
}
