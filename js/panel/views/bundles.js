// Bundles: bring an offline bundle (one file made by `cm-cli.py bundle create`) into this box.
// A path the server can read is checked (POST /v1/bundles/verify and /preview): the manifest
// (created at, creator host, selection, sizes by kind), the signature (signed by whom, unsigned,
// invalid; require_signed_bundles shown) and what each store would gain. "Import" and "Import and
// apply" show the bundle_import kind's plan in the confirm dialog, then queue it and follow the
// task; the view itself changes nothing. The bundles imported here come from GET /v1/bundles.

import { el, replace, clear } from "../dom.js";
import { errorBox } from "../errors.js";
import { PlanDialog } from "./plan_dialog.js";
import { formatSize } from "./trash.js";

const FINAL = new Set(["done", "failed", "cancelled"]);
const STORES = { channel: "Channel files", git: "Git repositories", cnr: "Registry archives", wheel: "Wheels",
  model: "Models", snapshot: "Snapshot", "channels.list": "channels.list", manifest: "Manifest" };
const SIGNATURE = { valid: "signed", unchecked: "signed, not checked", unsigned: "unsigned", invalid: "invalid signature" };

function when(iso) {
  const d = iso ? new Date(iso) : null;
  return d && !isNaN(d.getTime()) ? d.toLocaleString() : String(iso || "");
}

function selectionText(sel) {
  if (!sel || typeof sel !== "object") return "";
  const parts = [];
  if (sel.installed) parts.push("every installed pack");
  if (Array.isArray(sel.pack_ids) && sel.pack_ids.length) parts.push(`packs ${sel.pack_ids.join(", ")}`);
  if (sel.snapshot) parts.push(`snapshot ${sel.snapshot}`);
  if (sel.workflow) parts.push(`workflow ${sel.workflow}`);
  return parts.join("; ") || "—";
}

function row(label, value, testid) {
  return el("tr", testid ? { dataset: { testid } } : {}, el("th", { text: label }), el("td", {}, value));
}

export class BundlesView {
  constructor(ctx) {
    this.ctx = ctx;
    this.checked = null;     // {path, report, preview}
    this.taskId = null;
    this._build();
    ctx.tasks.on("change", (task) => { if (task && task.id === this.taskId) this._follow(task); });
  }

  _build() {
    this.errors = el("div", { class: "om-errors", dataset: { testid: "bundle-errors" } });
    this.path = el("input", { class: "om-input om-bundle-path", type: "text", spellcheck: "false",
      style: { flex: "1", minWidth: "24em" },
      placeholder: "/absolute/path/on/the/server/site.bundle.tar", dataset: { testid: "bundle-path" },
      onkeydown: (e) => { if (e.key === "Enter") this.check(); } });
    this.checkBtn = el("button", { class: "om-btn om-btn-primary", dataset: { testid: "bundle-check" },
      onclick: () => this.check() }, "Check");
    this.importBtn = el("button", { class: "om-btn", disabled: true, dataset: { testid: "bundle-import" },
      onclick: () => this.importBundle(false) }, "Import");
    this.applyBtn = el("button", { class: "om-btn", disabled: true, dataset: { testid: "bundle-import-apply" },
      title: "Import, then restore the bundled snapshot: packs and Python packages from the imported stores",
      onclick: () => this.importBundle(true) }, "Import and apply");
    this.report = el("div", { dataset: { testid: "bundle-report" } });
    this.progress = el("div", { class: "om-bundle-progress", dataset: { testid: "bundle-progress" }, hidden: true });
    this.imported = el("div", { dataset: { testid: "bundles-imported" } });
    this.root = el("div", { class: "om-view om-bundles", dataset: { view: "bundles" } },
      el("div", { class: "om-toolbar" }, el("label", { class: "om-label", text: "Bundle file on the server" }),
        this.path, this.checkBtn, this.importBtn, this.applyBtn),
      this.errors,
      // one scrolling section: the report, the import's progress and the imported list stack in it
      el("div", { class: "om-section", style: { flex: "1 1 auto" } }, this.report, this.progress, this.imported));
    this.planDialog = new PlanDialog({ backend: this.ctx.backend, host: this.root });
  }

  async load() {
    try {
      this._renderImported(await this.ctx.backend.bundles());
    } catch (err) {
      replace(this.imported, errorBox(err));
    }
  }

  /** Check: verify (every file, the signature) and, when the bundle is sound, what it would add. */
  async check() {
    const path = this.path.value.trim();
    clear(this.errors);
    this.checked = null;
    this._buttons();
    if (!path) {
      replace(this.errors, errorBox({ code: "request_invalid", message: "Enter the path of a bundle file on the server.",
        hint: "The file made by cm-cli.py bundle create, copied to this machine." }));
      return;
    }
    this.checkBtn.disabled = true;
    replace(this.report, el("div", { class: "om-muted", dataset: { testid: "bundle-checking" } }, `Checking ${path}…`));
    try {
      const report = await this.ctx.backend.bundleVerify(path);
      const preview = report.ok ? await this.ctx.backend.bundlePreview(path) : null;
      this.checked = { path, report, preview };
      this._renderReport();
    } catch (err) {
      clear(this.report);
      replace(this.errors, errorBox(err));
    } finally {
      this.checkBtn.disabled = false;
      this._buttons();
    }
  }

  _buttons() {
    const ready = !!(this.checked && this.checked.report.ok && this.checked.preview) && !this._running();
    this.importBtn.disabled = !ready;
    this.applyBtn.disabled = !ready;
  }

  _running() {
    const t = this.taskId ? this.ctx.tasks.tasks.get(this.taskId) : null;
    return !!(t && !FINAL.has(t.state));
  }

  _renderReport() {
    const { report, preview } = this.checked;
    const m = report.manifest || {};
    const sig = report.signature || {};
    const policy = report.policy || {};
    const sizes = Object.entries(report.sizes || {}).map(([kind, bytes]) => `${kind} ${formatSize(bytes)}`).join(", ");
    const sigText = `${SIGNATURE[sig.state] || sig.state || "unknown"}${sig.signer ? ` by ${sig.signer}` : ""}`;
    const required = policy.require_signed_bundles ? "required here (require_signed_bundles = true)"
      : "not required here (require_signed_bundles = false)";
    const summary = el("table", { class: "om-table om-bundle-manifest", dataset: { testid: "bundle-manifest" } }, el("tbody", {},
      row("File", `${report.path} (${formatSize(report.size)}, ${report.files} files)`),
      row("Created", when(m.created_at || report.created_at), "bundle-created"),
      row("Created on", (m.creator && m.creator.host) || "", "bundle-creator"),
      row("Selection", selectionText(m.selection), "bundle-selection"),
      row("Target", m.target ? `python ${m.target.python_version || "any"} ${(m.target.platforms || []).join(" ")}` : ""),
      row("Sizes", sizes, "bundle-sizes"),
      row("Signature", el("span", {},
        el("span", { class: "om-badge", dataset: { kind: sig.state === "valid" ? "done" : sig.state === "invalid" ? "failed" : "update",
          testid: "bundle-signature", state: sig.state || "" }, text: sigText }),
        el("span", { class: "om-muted", text: ` — ${required}${sig.message ? `; ${sig.message}` : ""}` }))),
      report.base ? row("Increment of", `${when(report.base.created_at)}${preview && !preview.base_present ? " — NOT imported here" : ""}`)
        : null));
    const problems = (report.problems || []).map((p) => el("li", { dataset: { code: p.code, member: p.member } },
      el("strong", { text: p.member || "" }), `: ${p.message || ""} `, el("span", { class: "om-muted", text: `[${p.code}]` })));
    const packs = (m.packs || []).map((p) => el("li", { dataset: { pack: p.id || p.name || "" } },
      el("strong", { text: p.id || p.name || "" }),
      el("span", { class: "om-muted", text: ` ${p.kind || ""} ${p.version || (p.commit ? String(p.commit).slice(0, 10) : "")}` })));
    replace(this.report,
      el("h3", { text: report.ok ? "Bundle checked: every file matches its manifest" : "The bundle cannot be imported" }),
      summary,
      problems.length ? el("div", { class: "om-plan-blockers", dataset: { testid: "bundle-problems" } },
        el("div", { class: "om-label", text: "Problems (nothing was changed)" }), el("ul", { class: "om-list" }, problems)) : null,
      packs.length ? el("div", { dataset: { testid: "bundle-packs" } },
        el("div", { class: "om-label", text: "Packs it carries" }), el("ul", { class: "om-list" }, packs)) : null,
      preview ? this._storesTable(preview) : null);
  }

  _storesTable(preview) {
    const stores = preview.stores || {};
    const rows = Object.entries(stores).map(([store, n]) => el("tr", { dataset: { store } },
      el("td", { text: STORES[store] || store }), el("td", { text: String(n.add || 0) }),
      el("td", { text: String(n.replace || 0) }), el("td", { text: String(n.same || 0) })));
    return el("div", {},
      el("div", { class: "om-label", text: "What the import would add" }),
      el("table", { class: "om-table", dataset: { testid: "bundle-stores" } },
        el("thead", {}, el("tr", {}, el("th", {}, "Store"), el("th", {}, "New"), el("th", {}, "Replaced"),
          el("th", {}, "Already present"))),
        el("tbody", {}, rows.length ? rows
          : el("tr", {}, el("td", { colspan: "4", class: "om-empty", text: "Nothing new: every file is here already." })))));
  }

  /** Import (and apply): the kind's plan in the confirm dialog, then the queued task. */
  async importBundle(apply) {
    if (!this.checked) return;
    const { path } = this.checked;
    const params = apply ? { apply: true } : {};
    const label = apply ? "Import and apply" : "Import";
    const choice = await this.planDialog.open({ title: `${label} ${path}`, runLabel: label,
      tasks: [{ kind: "bundle_import", target: path, params }],
      message: apply ? "After the import, the bundled snapshot is restored offline: its packs and Python packages." : "" });
    if (!choice) return;
    const tasks = await this.ctx.run("bundle_import", { id: path, title: path }, params);
    if (!tasks.length) return;
    this.taskId = tasks[0].id;
    this.progress.hidden = false;
    this.lines = [];
    this._follow(this.ctx.tasks.tasks.get(this.taskId) || tasks[0]);
    this._buttons();
    this._poll(this.taskId);
  }

  /** Events drive the progress; a slow poll catches the end if an event was missed. */
  async _poll(id) {
    while (this.taskId === id) {
      await new Promise((r) => setTimeout(r, 1000));
      if (this.taskId !== id) return;
      const known = this.ctx.tasks.tasks.get(id);
      if (known && FINAL.has(known.state) && this._finished === id) return;
      try {
        const t = await this.ctx.backend.client.getTask(id);
        if (FINAL.has(t.state)) { this._follow(t); return; }
      } catch (err) { /* the next event or poll tells */ }
    }
  }

  _follow(task) {
    if (!task) return;
    const line = task.progress && task.progress.line;
    if (line && this.lines[this.lines.length - 1] !== line) this.lines.push(line);
    if (this.lines.length > 200) this.lines.shift();
    const state = task.state || "queued";
    this.progress.dataset.state = state;
    replace(this.progress,
      el("div", { class: "om-label" }, "Import ", el("span", { class: "om-badge", dataset: { kind: state === "failed" ? "failed"
        : state === "done" ? "done" : "update", testid: "bundle-task-state" }, text: state })),
      this.lines.length ? el("pre", { class: "om-pre", dataset: { testid: "bundle-log" }, text: this.lines.join("\n") }) : null);
    if (FINAL.has(state) && this._finished !== task.id) {
      this._finished = task.id;
      this._finish(task.id);
    }
  }

  async _finish(id) {
    let task = null;
    try { task = await this.ctx.backend.client.getTask(id); } catch (err) { task = null; }
    this._buttons();
    await this.load();
    if (!task) return;
    if (task.state !== "done") {
      this.progress.appendChild(errorBox(task.error || { code: `task_${task.state}`, message: `the import ${task.state}` }));
      return;
    }
    const r = task.result || {};
    const packs = (this.checked && this.checked.report.manifest && this.checked.report.manifest.packs) || [];
    if (this.checked && this.path.value.trim() === this.checked.path) await this.check();  // now: what is here
    this.progress.appendChild(el("div", { dataset: { testid: "bundle-result" } },
      el("div", { text: `Imported: ${r.added || 0} new, ${r.replaced || 0} replaced, ${r.unchanged || 0} already present.` }),
      r.applied ? el("div", { text: `Applied: the bundled snapshot ${r.snapshot} was restored.` }) : null,
      packs.length ? el("div", { class: "om-muted", dataset: { testid: "bundle-installable" },
        text: `Installable offline now (Node packs): ${packs.map((p) => p.id || p.name).join(", ")}` }) : null));
    this.ctx.reloadData();
  }

  _renderImported(d) {
    const bundles = (d && d.bundles) || [];
    if (!bundles.length) {
      replace(this.imported, el("div", { class: "om-label", text: "Imported bundles" }),
        el("div", { class: "om-empty", text: "No bundle was imported here yet." }));
      return;
    }
    replace(this.imported, el("div", { class: "om-label", text: "Imported bundles" }),
      el("table", { class: "om-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "Created"), el("th", {}, "On"), el("th", {}, "Packs"),
          el("th", {}, "Wheels"), el("th", {}, "Signed"))),
        el("tbody", {}, bundles.map((b) => el("tr", { dataset: { bundle: b.manifest_sha256 } },
          el("td", { text: when(b.created_at), title: b.manifest_sha256 }), el("td", { text: b.creator_host || "" }),
          el("td", { text: (b.packs || []).join(", ") }), el("td", { text: String((b.wheels || []).length) }),
          el("td", { text: b.signed ? "yes" : "no" }))))),
      d.covered && d.covered.length ? el("div", { class: "om-muted", dataset: { testid: "bundles-coverage" },
        text: `Installed packs a bundle carried: ${d.covered.join(", ")}` }) : null);
  }
}
