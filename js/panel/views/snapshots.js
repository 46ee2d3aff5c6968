// Snapshots: list, save (with a name), show, diff against the current state, restore with
// the plan shown first, remove.

import { el, replace, clear } from "../dom.js";
import { errorBox } from "../errors.js";

/** Short text for one side of a change: a version, a commit, a state, or the value. */
function side(v) {
  if (v === null || v === undefined) return "";
  if (typeof v !== "object") return String(v);
  const commit = typeof v.commit === "string" && v.commit ? v.commit.slice(0, 10) : "";
  const state = v.enabled === false ? "disabled" : "";
  return [v.version, commit, state].filter(Boolean).join(" ") || v.name || v.key || "";
}

/** A readable line for one plan step or diff item, whatever its exact keys. */
export function describeItem(item) {
  if (item === null || item === undefined) return "";
  if (typeof item !== "object") return String(item);
  if (item.description) return String(item.description);
  const verb = item.action || item.kind || item.op || item.change || "";
  const what = item.target || item.key || item.id || item.name || item.pack || item.package || item.url || "";
  const from = side(item.from ?? item.current ?? item.old);
  const to = side(item.to ?? item.wanted ?? item.new ?? item.version ?? item.commit);
  let s = [verb, what].filter(Boolean).join(" ");
  if (from && to) s += ` (${from} → ${to})`;
  else if (to) s += ` (${to})`;
  return s || JSON.stringify(item);
}

/** Render a diff-like object: each non-empty list or map becomes a titled list. */
export function renderSections(obj, { emptyText = "No differences." } = {}) {
  if (!obj || typeof obj !== "object") return el("div", { class: "om-empty", text: String(obj ?? emptyText) });
  const sections = [];
  const isLeaf = (v) => v === null || typeof v !== "object"
    || (!Array.isArray(v) && Object.values(v).every((x) => x === null || typeof x !== "object"));
  const walk = (value, title) => {
    if (Array.isArray(value)) {
      if (value.length) sections.push(el("div", { class: "om-diff-section", dataset: { section: title } },
        el("div", { class: "om-label", text: `${title} (${value.length})` }),
        el("ul", { class: "om-list" }, value.map((v) => el("li", { text: describeItem(v) })))));
    } else if (value && typeof value === "object") {
      const entries = Object.entries(value);
      if (title && entries.length && entries.every(([, v]) => isLeaf(v))) {
        sections.push(el("div", { class: "om-diff-section", dataset: { section: title } },
          el("div", { class: "om-label", text: `${title} (${entries.length})` }),
          el("ul", { class: "om-list" }, entries.map(([k, v]) => el("li", { text: `${k}: ${describeItem(v)}` })))));
      } else {
        for (const [k, v] of entries) walk(v, title ? `${title} / ${k}` : k);
      }
    }
  };
  walk(obj, "");
  return sections.length ? el("div", { class: "om-sections" }, sections) : el("div", { class: "om-empty", text: emptyText });
}

export class SnapshotsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.snapshots = [];
    this._build();
    this.restoreTask = null;
    ctx.tasks.on("change", (task) => {
      if (task && task.id === this.restoreTask && ["done", "failed", "cancelled"].includes(task.state)) this._restoreEnded(task);
    });
  }

  _build() {
    this.name = el("input", { class: "om-input", placeholder: "Snapshot name (optional)", "aria-label": "Snapshot name",
      dataset: { testid: "snapshot-name" } });
    this.saveBtn = el("button", { class: "om-btn om-btn-primary", dataset: { testid: "snapshot-save" },
      onclick: () => this.save() }, "Save snapshot");
    this.errors = el("div", { class: "om-errors" });
    this.table = el("tbody");
    this.detail = el("div", { class: "om-snapshot-detail", dataset: { testid: "snapshot-detail" } });
    this.root = el("div", { class: "om-view om-snapshots", dataset: { view: "snapshots" } },
      el("div", { class: "om-toolbar" }, this.name, this.saveBtn,
        el("button", { class: "om-btn", onclick: () => this.load() }, "Refresh")),
      this.errors,
      el("div", { class: "om-section" },
        el("table", { class: "om-table", dataset: { testid: "snapshot-table" } },
          el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "Created"), el("th", {}, "Packs"),
            el("th", {}, "Reason"), el("th", {}, ""))),
          this.table),
        this.detail));
  }

  async load() {
    try {
      this.snapshots = await this.ctx.backend.snapshots();
      this._renderList();
      clear(this.errors);
    } catch (err) {
      replace(this.errors, errorBox(err));
    }
  }

  _renderList() {
    if (!this.snapshots.length) {
      replace(this.table, el("tr", {}, el("td", { colspan: "5", class: "om-empty", text: "No snapshot yet." })));
      return;
    }
    replace(this.table, this.snapshots.map((s) => {
      const name = typeof s === "string" ? s : s.name;
      const created = typeof s === "object" ? s.created_at || s.created || "" : "";
      const packs = typeof s === "object" ? s.pack_count ?? s.packs ?? s.summary?.packs ?? "" : "";
      const date = typeof created === "number" ? new Date(created * 1000) : created ? new Date(created) : null;
      const when = date && !isNaN(date.getTime()) ? date.toLocaleString() : String(created || "");
      const reason = typeof s === "object" ? (s.error ? `unreadable: ${s.error.code || s.error.message}` : s.reason || "") : "";
      return el("tr", { dataset: { snapshot: name } },
        el("td", { text: name }), el("td", { text: when }), el("td", { text: String(packs) }), el("td", { text: reason }),
        el("td", { class: "om-row-actions" },
          el("button", { class: "om-btn", dataset: { action: "show" }, onclick: () => this.show(name) }, "Show"),
          el("button", { class: "om-btn", dataset: { action: "diff" }, onclick: () => this.diff(name) }, "Diff"),
          el("button", { class: "om-btn", dataset: { action: "restore" }, onclick: () => this.plan(name) }, "Restore…"),
          el("button", { class: "om-btn om-btn-danger", dataset: { action: "remove" }, onclick: () => this.remove(name) }, "Remove")));
    }));
  }

  async _guard(fn) {
    try { clear(this.errors); return await fn(); } catch (err) { replace(this.errors, errorBox(err)); return undefined; }
  }

  async save() {
    const name = this.name.value.trim();
    await this._guard(async () => {
      const res = await this.ctx.backend.snapshotSave(name);
      this.name.value = "";
      this.ctx.notify("success", "Snapshot saved", res?.name || name || "");
      await this.load();
    });
  }

  async show(name) {
    await this._guard(async () => {
      const snap = await this.ctx.backend.snapshotShow(name);
      replace(this.detail, el("h3", { text: `Snapshot ${name}` }),
        el("pre", { class: "om-pre", dataset: { testid: "snapshot-json" }, text: JSON.stringify(snap, null, 2) }));
    });
  }

  async diff(name) {
    await this._guard(async () => {
      const diff = await this.ctx.backend.snapshotDiff(name);
      // The server phrases each change (`lines`); without them, the structured parts are listed.
      const lines = diff && Array.isArray(diff.lines) ? diff.lines : null;
      const notes = diff && Array.isArray(diff.notes) ? diff.notes : [];
      const body = lines
        ? (lines.length ? el("ul", { class: "om-list" }, lines.map((l) => el("li", { text: l })))
          : el("div", { class: "om-empty", text: "No differences: the tree matches this snapshot." }))
        : renderSections(diff);
      replace(this.detail, el("h3", { text: `Restoring ${name} would change:` }),
        el("div", { dataset: { testid: "snapshot-diff" } }, body,
          notes.length ? el("div", {}, el("div", { class: "om-label", text: "Notes" }),
            el("ul", { class: "om-list" }, notes.map((n) => el("li", { text: describeItem(n) })))) : null));
    });
  }

  /** Restore, step one: compute and show the plan; nothing changes until "Run restore". */
  async plan(name) {
    await this._guard(async () => {
      const { plan, blockers } = await this.ctx.backend.snapshotPlan(name);
      const steps = Array.isArray(plan) ? plan : plan?.steps || [];
      const missing = plan && !Array.isArray(plan)
        ? [...(plan.missing || plan.unavailable || []), ...(plan.skipped_python || []), ...(plan.notes || [])] : [];
      const runBtn = el("button", { class: "om-btn om-btn-primary", dataset: { testid: "restore-run" },
        onclick: () => this.restore(name, runBtn) }, steps.length ? `Run restore (${steps.length} steps)` : "Nothing to do");
      runBtn.disabled = !steps.length;
      replace(this.detail, el("div", { class: "om-plan", dataset: { testid: "restore-plan" } },
        el("h3", { text: `Restore plan for ${name}` }),
        steps.length ? el("ol", { class: "om-list" }, steps.map((s) => el("li", { dataset: { step: describeItem(s) }, text: describeItem(s) })))
          : el("div", { class: "om-empty", text: "The tree already matches this snapshot." }),
        missing.length ? el("div", {}, el("div", { class: "om-label", text: "Not restored / notes" }),
          el("ul", { class: "om-list" }, missing.map((m) => el("li", { text: describeItem(m) })))) : null,
        // What would stop the restore before its first change (sources missing offline, policy).
        blockers.length ? el("div", { dataset: { testid: "restore-blockers" } }, blockers.map((b) => errorBox(b))) : null,
        el("div", { class: "om-restore-status" }),
        el("div", {}, runBtn, " ", el("button", { class: "om-btn", onclick: () => clear(this.detail) }, "Cancel"))));
    });
  }

  async restore(name, button) {
    button.disabled = true;
    const status = this.detail.querySelector(".om-restore-status");
    await this._guard(async () => {
      const task = await this.ctx.backend.snapshotRestore(name);
      this.restoreTask = task?.id || null;
      replace(status, el("span", { class: "om-badge", dataset: { kind: "running" }, text: "restoring…" }));
    });
  }

  _restoreEnded(task) {
    this.load();   // a restore saves an auto-snapshot first
    const status = this.detail.querySelector(".om-restore-status");
    if (!status) return;
    if (task.state === "failed") replace(status, errorBox(task.error));
    else replace(status, el("span", { class: "om-badge", dataset: { kind: task.restart_required ? "restart" : "done" },
      text: task.restart_required ? "restored: restart required" : "restored" }));
  }

  async remove(name) {
    await this._guard(async () => {
      await this.ctx.backend.snapshotRemove(name);
      if (this.detail.textContent.includes(name)) clear(this.detail);
      await this.load();
    });
  }
}
