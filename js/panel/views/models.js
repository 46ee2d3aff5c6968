// Models: the channel's model list with installed state; filter by type and base; install
// with progress.

import { el, replace, setText, clear, safeHref } from "../dom.js";
import { errorBox } from "../errors.js";
import { catalogHowTo, isCatalogMissing } from "../catalog.js";
import { splitTerms } from "../search.js";
import { taskLabel } from "../tasks.js";
import { VirtualList } from "../vlist.js";

const ROW_HEIGHT = 44;
const truthy = (v) => v === true || v === "True" || v === "true";

export function normaliseModel(raw) {
  return {
    id: String(raw.id || raw.filename || raw.name || ""),
    name: String(raw.name || raw.filename || ""),
    type: String(raw.type || ""),
    base: String(raw.base || ""),
    filename: String(raw.filename || ""),
    savePath: String(raw.save_path || "default"),
    size: String(raw.size || ""),
    description: String(raw.description || ""),
    reference: String(raw.reference || ""),
    url: String(raw.url || ""),
    installed: truthy(raw.installed),
    installable: raw.installable !== false,
    problem: raw.problem ? String(typeof raw.problem === "object" ? raw.problem.message || raw.problem.code : raw.problem) : "",
    folder: String(raw.folder || raw.save_path || ""),
    raw,
  };
}

export class ModelsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.models = [];
    this.hay = [];
    this.state = { text: "", type: "", base: "" };
    this.loaded = false;
    this._build();
    ctx.tasks.on("change", () => this.list.refresh());
  }

  _build() {
    this.search = el("input", { class: "om-input om-search", type: "search", placeholder: "Search models…",
      "aria-label": "Search models", dataset: { testid: "model-search" } });
    this.search.addEventListener("input", () => { this.state.text = this.search.value; this.apply(); });
    this.type = el("select", { class: "om-select", "aria-label": "Type", dataset: { testid: "model-type" } });
    this.base = el("select", { class: "om-select", "aria-label": "Base", dataset: { testid: "model-base" } });
    this.type.addEventListener("change", () => { this.state.type = this.type.value; this.apply(); });
    this.base.addEventListener("change", () => { this.state.base = this.base.value; this.apply(); });
    this.count = el("span", { class: "om-count" });
    this.errors = el("div", { class: "om-errors" });
    this.list = new VirtualList({ rowHeight: ROW_HEIGHT, className: "om-model-list",
      createRow: () => this._createRow(), bindRow: (row, i) => this._bindRow(row, this.models[i]) });
    this.list.root.dataset.testid = "model-list";
    this.list.root.addEventListener("click", (e) => {
      const i = this.list.itemFor(e.target);
      if (i !== undefined && e.target.closest("[data-action=install]")) this.install(this.models[i]);
    });
    this.verifyBtn = el("button", { class: "om-btn", dataset: { testid: "model-verify" },
      title: "Check the installed models: size, and sha256 where the model list gives one" }, "Verify installed");
    this.verifyHash = el("input", { type: "checkbox", dataset: { testid: "model-verify-sha256" } });
    this.verifyBtn.addEventListener("click", () => this.verify({ sha256: this.verifyHash.checked }));
    this.verifyOut = el("div", { class: "om-verify", role: "status", dataset: { testid: "model-verify-result" } });
    this.root = el("div", { class: "om-view om-models", dataset: { view: "models" } },
      el("div", { class: "om-toolbar" }, this.search, this.type, this.base, this.count,
        this.verifyBtn, el("label", { class: "om-check", title: "Hash every installed model now (cached afterwards)" },
          this.verifyHash, " sha256")),
      this.verifyOut, this.errors, this.list.root);
  }

  // Verify: GET /v1/models/verify (hashing runs on the server, off its event loop; digests are cached)
  async verify({ sha256 = false } = {}) {
    this.verifyBtn.disabled = true;
    replace(this.verifyOut, el("span", {}, sha256 ? "Hashing the installed models…" : "Checking the installed models…"));
    try {
      const res = await this.ctx.backend.client.verifyModels({ sha256: sha256 ? "true" : "false" });
      const counts = Object.entries(res.counts || {}).filter(([, n]) => n).map(([k, n]) => `${n} ${k.replace("_", " ")}`);
      const bad = (res.mismatches || []).map((f) => el("li", { dataset: { status: f.status } },
        `${f.folder}/${f.name}: ${f.status}${f.message ? ` (${f.message})` : ""}`));
      this.verifyOut.dataset.ok = String(!bad.length);
      replace(this.verifyOut,
        el("div", { class: "om-verify-summary" },
          `${res.checked} checked, ${res.hashed} hashed now${counts.length ? `: ${counts.join(", ")}` : ""}`),
        bad.length ? el("ul", { class: "om-verify-bad" }, bad) : el("div", {}, "No mismatch."),
        (res.notes || []).map((n) => el("div", { class: "om-hint" }, n)));
    } catch (err) {
      replace(this.verifyOut, errorBox(err));
      this.ctx.report(err);
    } finally {
      this.verifyBtn.disabled = false;
    }
  }

  async load({ refresh = false } = {}) {
    try {
      const res = await this.ctx.backend.models({ refresh });
      this.setModels(res.models.map(normaliseModel));
      clear(this.errors);
      this.loaded = true;
    } catch (err) {
      if (isCatalogMissing(err)) {        // not an error to shout about: the sentence says what to do
        replace(this.errors, el("div", { class: "om-notice om-catalog-missing", role: "status",
          dataset: { testid: "catalog-missing-models" } }, catalogHowTo(err)));
        return;
      }
      replace(this.errors, errorBox(err));
      this.ctx.report(err);
    }
  }

  setModels(models) {
    this.models = models;
    this.hay = models.map((m) => `${m.name}\n${m.filename}\n${m.type}\n${m.base}\n${m.description}`.toLowerCase());
    const options = (sel, key, label) => {
      const values = [...new Set(models.map((m) => m[key]).filter(Boolean))].sort();
      const current = sel.value;
      replace(sel, el("option", { value: "" }, `All ${label}`), values.map((v) => el("option", { value: v }, v)));
      sel.value = values.includes(current) ? current : "";
    };
    options(this.type, "type", "types");
    options(this.base, "base", "bases");
    this.apply({ keepScroll: this.loaded });
  }

  apply({ keepScroll = false } = {}) {
    const terms = splitTerms(this.state.text);
    const { type, base } = this.state;
    const out = [];
    for (let i = 0; i < this.models.length; i++) {
      const m = this.models[i];
      if (type && m.type !== type) continue;
      if (base && m.base !== base) continue;
      if (terms.length && !terms.every((t) => this.hay[i].includes(t))) continue;
      out.push(i);
    }
    this.list.setItems(out, { keepScroll });
    setText(this.count, `${out.length} of ${this.models.length}`);
    this.root.dataset.rows = String(out.length);
  }

  _createRow() {
    const row = el("div", { class: "om-model-row", role: "listitem" },
      el("div", { class: "om-cell-main" }, el("div", { class: "om-row-title" }), el("div", { class: "om-row-sub" })),
      el("div", { class: "om-cell-state" }, el("span", { class: "om-badge om-state" }), el("span", { class: "om-badge om-task" })),
      el("div", { class: "om-cell-actions" },
        el("a", { class: "om-btn om-btn-ghost om-ref", target: "_blank", rel: "noopener noreferrer" }, "Page"),
        el("button", { class: "om-btn", dataset: { action: "install" } }, "Install")),
      el("div", { class: "om-progress", style: { width: "0" } }));
    row._c = { title: row.children[0].children[0], sub: row.children[0].children[1],
      state: row.children[1].children[0], task: row.children[1].children[1],
      ref: row.children[2].children[0], install: row.children[2].children[1], progress: row.children[3] };
    return row;
  }

  _bindRow(row, m) {
    const c = row._c;
    row.dataset.modelId = m.id;
    setText(c.title, m.name);
    setText(c.sub, [m.type, m.base, m.folder && `${m.folder}/${m.filename}`, m.size].filter(Boolean).join(" · "));
    setText(c.state, m.installed ? "installed" : "");
    c.state.hidden = !m.installed;
    c.state.dataset.kind = "enabled";
    const task = this.ctx.tasks.forTarget(m.id) || this.ctx.tasks.forTarget(m.filename);
    const busy = task && (task.state === "queued" || task.state === "running");
    setText(c.task, task ? taskLabel(task) : "");
    c.task.hidden = !task;
    c.task.dataset.kind = task ? task.state : "";
    c.task.title = task?.error ? `${task.error.code}: ${task.error.message}` : "";
    const href = safeHref(m.reference);
    c.ref.hidden = !href;
    if (href) c.ref.href = href; else c.ref.removeAttribute("href");
    c.install.hidden = m.installed;
    c.install.disabled = !!busy || !m.installable;
    c.install.title = m.installable ? "" : m.problem;
    c.progress.style.width = busy ? `${task.progress?.percent ?? 8}%` : "0";
  }

  async install(m) {
    await this.ctx.run("install_model", m, {});
    this.list.refresh();
  }
}
