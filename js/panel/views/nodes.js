// Node packs: the merged catalog with installed state, virtualised, searchable, with row
// actions, multi-select batch actions and a details drawer.

import { el, replace, setText, clear, safeHref } from "../dom.js";
import { errorBox, toError } from "../errors.js";
import { catalogHowTo, isCatalogMissing } from "../catalog.js";
import { FILTERS, SORTS, PackIndex, normalisePack } from "../search.js";
import { taskLabel } from "../tasks.js";
import { VirtualList } from "../vlist.js";
import { PlanDialog } from "./plan_dialog.js";

const ROW_HEIGHT = 44;
const SUB_MAX = 120;
const BUSY = new Set(["queued", "running"]);

/** Which row actions a pack offers in its state. */
export function actionsFor(p) {
  if (!p.installed) return ["install"];
  const out = [];
  if (p.state === "disabled") out.push("enable");
  else {
    if (p.updateAvailable) out.push("update");
    if (p.importFailed) out.push("fix");
    out.push("disable");
  }
  out.push("uninstall");
  return out;
}

const LABELS = { install: "Install", enable: "Enable", disable: "Disable", update: "Update", fix: "Fix",
  uninstall: "Uninstall" };
const VERBS = { ...LABELS, switch_version: "Switch version", undo: "Undo" };

export class NodesView {
  constructor(ctx) {
    this.ctx = ctx;
    this.index = new PackIndex([]);
    this.byId = new Map();
    this.selected = new Set();
    this.state = { text: "", filter: "all", sort: "stars" };
    this.detailsId = null;
    this.loaded = false;
    this.onRendered = null;   // test/bench hook: called after the rows for a query are in the DOM
    this._build();
    ctx.tasks.on("change", (task) => this._onTask(task));
  }

  _build() {
    this.search = el("input", { class: "om-input om-search", type: "search", placeholder: "Search node packs…",
      "aria-label": "Search node packs", dataset: { testid: "pack-search" } });
    this.search.addEventListener("input", () => { this.state.text = this.search.value; this.apply(); });
    this.filter = el("select", { class: "om-select", "aria-label": "Filter", dataset: { testid: "pack-filter" } },
      FILTERS.map(([v, label]) => el("option", { value: v }, label)));
    this.filter.addEventListener("change", () => { this.state.filter = this.filter.value; this.apply(); });
    this.sort = el("select", { class: "om-select", "aria-label": "Sort", dataset: { testid: "pack-sort" } },
      SORTS.map(([v, label]) => el("option", { value: v }, `Sort: ${label}`)));
    this.sort.addEventListener("change", () => { this.state.sort = this.sort.value; this.apply(); });
    this.count = el("span", { class: "om-count", dataset: { testid: "pack-count" } });
    this.batch = el("span", { class: "om-batch", hidden: true },
      el("span", { class: "om-count om-batch-count" }),
      ...["install", "update", "enable", "disable", "uninstall"].map((a) =>
        el("button", { class: "om-btn", dataset: { batch: a } }, LABELS[a])),
      el("button", { class: "om-btn om-btn-ghost", dataset: { batch: "clear" } }, "Clear"));
    this.batch.addEventListener("click", (e) => {
      const a = e.target.closest("[data-batch]")?.dataset.batch;
      if (a) this.runBatch(a);
    });
    this.errors = el("div", { class: "om-errors" });
    this.notices = el("div", { class: "om-notices" });
    this.list = new VirtualList({ rowHeight: ROW_HEIGHT, createRow: () => this._createRow(),
      bindRow: (row, i) => this._bindRow(row, this.index.packs[i]), className: "om-pack-list" });
    this.list.root.dataset.testid = "pack-list";
    this.list.root.addEventListener("click", (e) => this._onListClick(e));
    this.empty = el("div", { class: "om-empty", hidden: true, text: "No node pack matches." });
    this.drawer = el("aside", { class: "om-drawer", hidden: true, dataset: { testid: "pack-drawer" } });
    this.main = el("div", { class: "om-view" },
      el("div", { class: "om-toolbar" }, this.search, this.filter, this.sort, this.count, this.batch),
      this.errors, this.notices, this.list.root, this.empty);
    this.root = el("div", { class: "om-view om-nodes", dataset: { view: "nodes" } },
      el("div", { class: "om-body" }, this.main, this.drawer));
    this.planDialog = new PlanDialog({ backend: this.ctx.backend, host: this.root });
  }

  // -- data -----------------------------------------------------------------------------
  /** Load (or reload) the pack list; keeps the query, selection and scroll. */
  async load({ refresh = false, etag = "" } = {}) {
    try {
      const res = await this.ctx.backend.packs({ refresh, prefetched: !this.loaded, etag });
      if (res.notModified) return;   // the list shown is the server's list
      const rows = res.packs.map((raw, k) => normalisePack(raw, k));
      this.setPacks(rows, { keepScroll: this.loaded });
      // A list preloaded in the background is shown at once, then revalidated (a 304 when unchanged).
      if (res.prefetched) setTimeout(() => this.load({ etag: res.etag }), 0);
      replace(this.notices, ...(res.notices || []).map((n) =>
        el("div", { class: "om-notice", dataset: { code: n.code || "" } },
          el("code", { text: n.code || n.level || "notice" }), " ", n.message || "", n.hint ? ` (${n.hint})` : "")));
      clear(this.errors);
      this.loaded = true;
    } catch (err) {
      if (isCatalogMissing(err)) return this._installedOnly(err);
      replace(this.errors, errorBox(err));
      this.ctx.report(err);
    }
  }

  /** No catalog yet: say how to get one, and still list (and act on) what is installed. */
  async _installedOnly(cause) {
    replace(this.notices, el("div", { class: "om-notice om-catalog-missing", role: "status",
      dataset: { testid: "catalog-missing", code: toError(cause).code } }, catalogHowTo(cause)));
    try {
      const res = await this.ctx.backend.installedOnly();
      this.setPacks(res.packs.map((raw, k) => normalisePack(raw, k)), { keepScroll: this.loaded });
      clear(this.errors);
      this.loaded = true;
    } catch (err) {
      replace(this.errors, errorBox(err));
      this.ctx.report(err);
    }
  }

  setPacks(rows, { keepScroll = false } = {}) {
    this.index.setPacks(rows);
    this.byId = new Map(rows.map((p, i) => [p.id, i]));
    for (const id of [...this.selected]) if (!this.byId.has(id)) this.selected.delete(id);
    this.apply({ keepScroll });
    // Search text, other sort orders and the char index are built once the rows are on screen,
    // in idle slices of at most ~8 ms so no frame waits on them.
    const idle = typeof requestIdleCallback === "function" ? requestIdleCallback : (fn) => setTimeout(fn, 50);
    const index = this.index, version = index.version;
    const step = (deadline) => {
      if (this.index !== index || index.version !== version) return;
      const left = deadline && deadline.timeRemaining ? Math.min(8, deadline.timeRemaining()) : 8;
      if (!index.warmStep(performance.now() + Math.max(1, left))) idle(step);
    };
    idle(step);
    if (this.detailsId && this.byId.has(this.detailsId) && !this.drawer.hidden) this.showDetails(this.detailsId);
  }

  /** Run the current query and show its rows (synchronous: the rows are in the DOM on return). */
  apply({ keepScroll = false } = {}) {
    const t0 = performance.now();
    const result = this.index.query(this.state);
    this.result = result;
    this.list.setItems(result, { keepScroll });
    this.empty.hidden = result.length > 0 || !this.loaded && !this.index.packs.length;
    setText(this.count, `${result.length.toLocaleString()} of ${this.index.packs.length.toLocaleString()}`);
    this._updateBatch();
    this.root.dataset.query = this.state.text;
    this.root.dataset.rows = String(result.length);
    if (this.onRendered) this.onRendered({ query: this.state.text, rows: result.length, ms: performance.now() - t0 });
  }

  pack(id) { const i = this.byId.get(id); return i === undefined ? undefined : this.index.packs[i]; }

  // -- rows -----------------------------------------------------------------------------
  _createRow() {
    const row = el("div", { class: "om-pack-row", role: "listitem" },
      el("input", { type: "checkbox", class: "om-check", "aria-label": "Select", dataset: { action: "select" } }),
      el("div", { class: "om-cell-main" },
        el("div", { class: "om-row-title", dataset: { action: "details" } }),
        el("div", { class: "om-row-sub" })),
      el("div", { class: "om-cell-stars" }),
      el("div", { class: "om-cell-state" },
        el("span", { class: "om-badge om-state" }),
        el("span", { class: "om-badge om-task" })),
      el("div", { class: "om-cell-actions" },
        ...Object.keys(LABELS).map((a) => el("button", { class: "om-btn", dataset: { action: a }, hidden: true }, LABELS[a])),
        el("button", { class: "om-btn om-btn-ghost", dataset: { action: "details" }, title: "Details" }, "⋯")),
      el("div", { class: "om-progress", style: { width: "0" } }));
    row._c = {
      check: row.children[0], title: row.children[1].children[0], sub: row.children[1].children[1],
      stars: row.children[2], state: row.children[3].children[0], task: row.children[3].children[1],
      actions: row.children[4], progress: row.children[5],
    };
    return row;
  }

  _bindRow(row, p) {
    const c = row._c;
    row.dataset.packId = p.id;
    row.classList.toggle("om-selected", this.selected.has(p.id));
    c.check.checked = this.selected.has(p.id);
    setText(c.title, p.title);
    // One line, cut short: laying out a 3,000-character nowrap line costs milliseconds per row.
    const sub = [p.author && `by ${p.author}`, p.description].filter(Boolean).join(" · ");
    setText(c.sub, sub.length > SUB_MAX ? sub.slice(0, SUB_MAX) + "…" : sub);
    setText(c.stars, p.stars >= 0 ? `★ ${p.stars}` : "");
    const stateText = p.installed ? `${p.state}${p.version ? ` ${p.version}` : ""}` : "";
    setText(c.state, stateText);
    c.state.hidden = !stateText;
    c.state.dataset.kind = p.importFailed ? "import-failed" : p.state;
    const task = this.ctx.tasks.forTarget(p.id);
    const busy = task && BUSY.has(task.state);
    let taskText = task ? taskLabel(task) : "";
    let kind = task ? task.state : "";
    if (task && task.restart_required && task.state === "done") { taskText = "restart required"; kind = "restart"; }
    else if (!task && p.updateAvailable && p.installed) { taskText = "update available"; kind = "update"; }
    setText(c.task, taskText);
    c.task.hidden = !taskText;
    c.task.dataset.kind = kind;
    c.task.title = task && task.state === "failed" && task.error ? `${task.error.code}: ${task.error.message}` : "";
    const allowed = new Set(actionsFor(p));
    for (const btn of c.actions.children) {
      const a = btn.dataset.action;
      if (a === "details") continue;
      btn.hidden = !allowed.has(a);
      btn.disabled = !!busy;
    }
    const pct = busy && typeof task.progress?.percent === "number" ? task.progress.percent : busy ? 8 : 0;
    c.progress.style.width = `${pct}%`;
  }

  _onListClick(e) {
    const target = e.target;
    const action = target.closest("[data-action]")?.dataset.action;
    const i = this.list.itemFor(target);
    if (i === undefined || !action) return;
    const p = this.index.packs[i];
    if (action === "select") {
      if (target.checked) this.selected.add(p.id); else this.selected.delete(p.id);
      this.list.refresh();
      this._updateBatch();
    } else if (action === "details") {
      this.showDetails(p.id);
    } else {
      this.act(action, p);
    }
  }

  _updateBatch() {
    const n = this.selected.size;
    this.batch.hidden = n === 0;
    setText(this.batch.querySelector(".om-batch-count"), `${n} selected`);
  }

  // -- actions --------------------------------------------------------------------------
  /**
   * The confirm step: show the server's plan for `tasks` and resolve to {skipDeps} on Run, null
   * on Cancel. Uninstall's "moves to the trash" question is part of the same dialog.
   */
  confirmPlan(action, tasks, what) {
    const uninstall = action === "uninstall";
    return this.planDialog.open({
      title: `${VERBS[action] || action} ${what}`, tasks, runLabel: VERBS[action] || "Run", danger: uninstall,
      message: uninstall ? `Uninstall ${what}? It moves to the trash folder and can be restored from there.` : "",
    });
  }

  /** Run one action on one pack, after its plan was shown and confirmed. */
  async act(action, p, params = {}) {
    const choice = await this.confirmPlan(action, [{ kind: action, target: p.id, params }], p.title);
    if (!choice) return;
    await this.ctx.run(action, p, choice.skipDeps ? { ...params, skip_deps: true } : params);
    this.list.refresh();
  }

  async runBatch(action) {
    if (action === "clear") { this.selected.clear(); this.list.refresh(); this._updateBatch(); return; }
    const packs = [...this.selected].map((id) => this.pack(id)).filter((p) => p && actionsFor(p).includes(action));
    if (!packs.length) {
      this.ctx.notify("info", "Nothing to do", `None of the selected packs can ${action}.`);
      return;
    }
    const choice = await this.confirmPlan(action, packs.map((p) => ({ kind: action, target: p.id, params: {} })),
      packs.length === 1 ? packs[0].title : `${packs.length} packs`);
    if (!choice) return;
    const params = choice.skipDeps ? { skip_deps: true } : {};
    for (const p of packs) await this.ctx.run(action, p, params);
    this.selected.clear();
    this.list.refresh();
    this._updateBatch();
  }

  /** Undo a finished task (its plan first: what it puts back). */
  async undo(task) {
    const item = { id: task.id, title: `${task.kind} ${task.target}` };
    const choice = await this.confirmPlan("undo", [{ kind: "undo", target: task.id, params: {} }], item.title);
    if (choice) await this.ctx.run("undo", item);
  }

  _onTask(task) {
    if (!task || !task.target) { this.list.refresh(); return; }
    if (this.byId.has(task.target)) this.list.refresh();
    if (this.detailsId === task.target) this._renderDrawerTask();
  }

  // -- details drawer -------------------------------------------------------------------
  async showDetails(id, { reload = true } = {}) {
    const p = this.pack(id);
    if (!p) return;
    this.detailsId = id;
    this.drawer.hidden = false;
    const raw = p.raw || {};
    const href = safeHref(p.reference);
    this.versionSelect = el("select", { class: "om-select", "aria-label": "Version", dataset: { testid: "version-select" } },
      el("option", { value: "" }, p.installType === "cnr" || p.latest ? "latest" : "default"));
    this.versionStatus = el("div", { class: "om-versions-status" });
    this.drawerMore = el("div", { class: "om-drawer-more" });
    this.drawerTask = el("div", { class: "om-drawer-task" });
    const buttons = actionsFor(p).map((a) => el("button", { class: `om-btn${a === "install" ? " om-btn-primary" : ""}`,
      dataset: { drawerAction: a }, onclick: () => this.act(a, p, this._versionParams(a)) }, LABELS[a]));
    if (p.installed) {
      buttons.push(el("button", { class: "om-btn", dataset: { drawerAction: "switch_version" },
        onclick: () => this.act("switch_version", p, this._versionParams("switch_version")) }, "Switch version"));
      if (!buttons.some((b) => b.dataset.drawerAction === "fix"))
        buttons.push(el("button", { class: "om-btn", dataset: { drawerAction: "fix" }, onclick: () => this.act("fix", p) }, "Fix"));
    }
    const pip = Array.isArray(raw.pip) ? raw.pip : [];
    const files = Array.isArray(raw.files) ? raw.files : [];
    replace(this.drawer,
      el("div", { class: "om-drawer-head" },
        el("button", { class: "om-btn om-btn-ghost", style: { float: "right" }, title: "Close",
          onclick: () => { this.drawer.hidden = true; this.detailsId = null; } }, "×"),
        el("h3", { text: p.title })),
      el("dl", { class: "om-kv" },
        el("dt", {}, "Id"), el("dd", { text: p.id }),
        el("dt", {}, "Author"), el("dd", { text: p.author || "—" }),
        el("dt", {}, "State"), el("dd", { text: p.installed ? `${p.state} ${p.version}` : "not installed" }),
        el("dt", {}, "Latest"), el("dd", { text: p.latest || "—" }),
        el("dt", {}, "Stars"), el("dd", { text: p.stars >= 0 ? String(p.stars) : "—" }),
        el("dt", {}, "Updated"), el("dd", { text: p.lastUpdate || "—" }),
        el("dt", {}, "Install"), el("dd", { text: p.installType || "—" }),
        el("dt", {}, "Repository"), el("dd", {}, href
          ? el("a", { href, target: "_blank", rel: "noopener noreferrer", text: p.reference })
          : el("span", { text: p.reference || "—" }))),
      el("div", { class: "om-desc", text: p.description || "No description." }),
      el("div", { class: "om-toolbar", style: { padding: "0", border: "0" } },
        el("span", { class: "om-label", text: "Version" }), this.versionSelect, ...buttons),
      this.versionStatus, this.drawerTask,
      pip.length ? el("div", {}, el("div", { class: "om-label", text: "Python dependencies" }),
        el("ul", { class: "om-list" }, pip.map((d) => el("li", { text: d })))) : null,
      files.length ? el("div", {}, el("div", { class: "om-label", text: "Files" }),
        el("ul", { class: "om-list" }, files.map((f) => el("li", { text: f })))) : null,
      this.drawerMore);
    if (reload) this._loadMore(p);
    this._renderDrawerTask();
    if (reload && (p.installType === "cnr" || raw.cnr_id)) this._loadVersions(p);
    else if (reload) replace(this.versionStatus, el("span", { class: "om-label",
      text: "A git pack: installs the repository's default branch; switch version once installed." }));
  }

  /** Node types and installed copies, from the pack route (best effort: the drawer works without). */
  async _loadMore(p) {
    try {
      const folder = p.raw && p.raw.installed && p.raw.installed.name;
      const [d, failure] = await Promise.all([this.ctx.backend.pack(p.id),
        p.importFailed ? this.ctx.backend.importFailure(p.id, folder).catch(() => null) : null]);
      if (this.detailsId !== p.id) return;
      const types = Array.isArray(d.node_types) ? d.node_types : [];
      const copies = Array.isArray(d.installed) ? d.installed : [];
      replace(this.drawerMore,
        failure ? el("div", { dataset: { testid: "import-failure" } },
          el("div", { class: "om-label", text: "ComfyUI could not import this pack at its last start" }),
          el("pre", { class: "om-pre", text: failure.traceback || failure.message || failure.msg || "" })) : null,
        copies.length ? el("div", {}, el("div", { class: "om-label", text: "Installed copies" }),
          el("ul", { class: "om-list" }, copies.map((c) => el("li", { text: [c.name, c.enabled ? "enabled" : "disabled",
            c.version, c.commit && String(c.commit).slice(0, 10), (c.problems || []).join("; ")].filter(Boolean).join(" · ") })))) : null,
        types.length ? el("div", {}, el("div", { class: "om-label", text: `Node types (${types.length})` }),
          el("ul", { class: "om-list om-node-types" }, types.slice(0, 100).map((t) => el("li", { text: t })),
            types.length > 100 ? el("li", { class: "om-label", text: `… ${types.length - 100} more` }) : null)) : null);
    } catch (err) {
      if (this.detailsId === p.id) replace(this.drawerMore, errorBox(err));
    }
  }

  _versionParams(action) {
    const v = this.versionSelect?.value;
    return (action === "install" || action === "switch_version") && v ? { version: v } : {};
  }

  async _loadVersions(p) {
    const status = this.versionStatus;
    replace(status, el("span", { class: "om-label", text: "Loading versions…" }));
    try {
      const versions = await this.ctx.backend.packVersions(p.id);
      if (this.detailsId !== p.id) return;
      for (const v of versions) {
        const value = typeof v === "string" ? v : v.version || v.id || "";
        if (value) this.versionSelect.appendChild(el("option", { value }, value));
      }
      clear(status);
    } catch (err) {
      if (this.detailsId !== p.id) return;
      replace(status, errorBox(err));
    }
  }

  _renderDrawerTask() {
    if (!this.drawerTask || !this.detailsId) return;
    const task = this.ctx.tasks.forTarget(this.detailsId);
    if (!task) { clear(this.drawerTask); return; }
    const parts = [el("span", { class: "om-badge", dataset: { kind: task.restart_required ? "restart" : task.state },
      text: task.restart_required && task.state === "done" ? "restart required" : taskLabel(task) })];
    if (task.progress?.line) parts.push(el("div", { class: "om-pre", text: task.progress.line }));
    if (task.state === "failed" && task.error) parts.push(errorBox(task.error));
    const findings = task.result?.findings;
    if (Array.isArray(findings) && findings.length) parts.push(findingsBox(findings));
    // a finished changing task can be undone: its earlier package set and pack state (the `undo` kind)
    if (UNDOABLE.has(task.kind) && (task.state === "done" || task.state === "failed") && task.id) {
      parts.push(el("button", { class: "om-btn om-btn-ghost", dataset: { undoTask: task.id },
        title: "Put back the python packages and the pack as they were before this task",
        onclick: () => this.undo(task) }, "Undo"));
    }
    replace(this.drawerTask, ...parts);
  }

  /** The error of the last failed task on a pack, normalised (used by tests and the drawer). */
  lastError(id) { const t = this.ctx.tasks.forTarget(id); return t && t.error ? toError(t.error) : null; }
}

const UNDOABLE = new Set(["install", "reinstall", "update", "update_all", "fix", "switch_version", "uninstall",
  "snapshot_restore", "install_pip"]);

const FINDING_WORDS = { native_library: "native library", pickle: "pickled data", executable: "executable",
  exec_bit: "executable bit" };

/** Files of an installed pack worth a look (native code, pickles, executables), as the install found them. */
function findingsBox(findings) {
  const lines = findings.map((f) => `${FINDING_WORDS[f.kind] || f.kind}: ${f.path}${f.detail ? ` (${f.detail})` : ""}`);
  return el("div", { class: "om-findings" },
    el("div", { class: "om-muted", text: `${findings.length} file(s) to review before trusting this pack:` }),
    el("div", { class: "om-pre", text: lines.join("\n") }));
}
