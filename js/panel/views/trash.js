// Trash: the packs an uninstall, reinstall or update moved aside. Each entry can be put back
// (the queued kind restore_trash) and the whole trash emptied for good (empty_trash, after a
// confirmation). The list comes from GET /v1/trash; nothing here changes the tree directly.

import { el, replace, clear } from "../dom.js";
import { errorBox } from "../errors.js";

/** "12.3 MB" for a byte count. */
export function formatSize(bytes) {
  const n = Number(bytes) || 0;
  const units = ["B", "KB", "MB", "GB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

function when(ts) {
  const d = typeof ts === "number" && ts > 0 ? new Date(ts * 1000) : null;
  return d && !isNaN(d.getTime()) ? d.toLocaleString() : "";
}

export class TrashView {
  constructor(ctx) {
    this.ctx = ctx;
    this.entries = [];
    this._build();
    ctx.tasks.on("change", (task) => {
      if (task && ["restore_trash", "empty_trash"].includes(task.kind) && ["done", "failed"].includes(task.state)) {
        this.load();
      }
    });
  }

  _build() {
    this.errors = el("div", { class: "om-errors" });
    this.summary = el("span", { class: "om-muted", dataset: { testid: "trash-summary" } });
    this.emptyBtn = el("button", { class: "om-btn om-btn-danger", dataset: { testid: "trash-empty" },
      onclick: () => this.empty() }, "Empty trash");
    this.table = el("tbody");
    this.root = el("div", { class: "om-view om-trash", dataset: { view: "trash" } },
      el("div", { class: "om-toolbar" }, this.summary, this.emptyBtn,
        el("button", { class: "om-btn", onclick: () => this.load() }, "Refresh")),
      this.errors,
      el("div", { class: "om-section" },
        el("table", { class: "om-table", dataset: { testid: "trash-table" } },
          el("thead", {}, el("tr", {}, el("th", {}, "Pack"), el("th", {}, "Version"), el("th", {}, "Trashed"),
            el("th", {}, "Why"), el("th", {}, "Size"), el("th", {}, ""))),
          this.table)));
  }

  async load() {
    try {
      this.entries = await this.ctx.backend.trash();
      this._render();
      clear(this.errors);
    } catch (err) {
      replace(this.errors, errorBox(err));
    }
  }

  _render() {
    const total = this.entries.reduce((s, e) => s + (Number(e.size_bytes) || 0), 0);
    this.summary.textContent = this.entries.length
      ? `${this.entries.length} entr${this.entries.length === 1 ? "y" : "ies"}, ${formatSize(total)}` : "";
    this.emptyBtn.disabled = !this.entries.length;
    if (!this.entries.length) {
      replace(this.table, el("tr", {}, el("td", { colspan: "6", class: "om-empty", text: "The trash is empty." })));
      return;
    }
    replace(this.table, this.entries.map((e) => {
      const version = e.version || (e.commit ? e.commit.slice(0, 10) : "");
      const pack = e.pack_id && e.pack_id !== e.name ? `${e.name} (${e.pack_id})` : e.name;
      const where = String(e.original || "").startsWith(".disabled/") ? " — was disabled" : "";
      return el("tr", { dataset: { entry: e.id } },
        el("td", { text: pack + where, title: e.id }), el("td", { text: version }), el("td", { text: when(e.trashed_at) }),
        el("td", { text: e.reason || "" }), el("td", { text: formatSize(e.size_bytes) }),
        el("td", { class: "om-row-actions" },
          el("button", { class: "om-btn", dataset: { action: "restore" }, onclick: () => this.restore(e) }, "Restore")));
    }));
  }

  async restore(entry) {
    await this.ctx.run("restore_trash", { id: entry.id, name: entry.name, title: entry.name });
  }

  async empty() {
    if (!this.entries.length) return;
    const ok = typeof window !== "undefined" && window.confirm
      ? window.confirm(`Delete ${this.entries.length} trashed pack(s) for good? This cannot be undone.`) : true;
    if (!ok) return;
    await this.ctx.run("empty_trash", { id: "trash", name: "trash", title: "the trash" });
  }
}
