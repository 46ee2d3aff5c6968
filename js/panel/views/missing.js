// Missing nodes: take a workflow (the one open in ComfyUI, or a file), list every node type that
// nothing loaded provides with ALL its candidate packs (channel, stars, last update) and a
// choice, install the chosen packs as one batch after its plan was shown and confirmed (the plan
// dialog, with its "without dependencies" choice; then POST /v1/queue), then re-check and show
// what is still missing and why (import failure, restart needed, wrong pack). The server decides the
// batch (POST /v1/workflow/missing: manager/missing_nodes.py); nothing is picked here in silence:
// a type several packs provide stays unchosen until the user picks one.

import { el, replace, clear } from "../dom.js";
import { errorBox } from "../errors.js";
import { DEPS_KINDS, PlanDialog } from "./plan_dialog.js";

const FINAL = new Set(["done", "failed", "cancelled"]);
const STATE_TEXT = {
  provided: "provided", missing: "missing", choose: "choose a pack", unknown: "unknown",
  import_failed: "import failed", restart_needed: "restart needed", wrong_pack: "wrong pack",
};
const STATE_BADGE = { provided: "enabled", missing: "update", choose: "restart", unknown: "disabled",
  import_failed: "import-failed", restart_needed: "restart", wrong_pack: "failed" };

/** The workflow open in ComfyUI's page, or null (the standalone page has none). */
export function openWorkflow(win = window) {
  const app = win.app || (win.comfyAPI && win.comfyAPI.app && win.comfyAPI.app.app);
  try {
    const graph = app && app.graph;
    if (graph && typeof graph.serialize === "function") return graph.serialize();
  } catch (_e) { /* a graph that cannot serialize: fall back to a file */ }
  return null;
}

/** The node classes the page has registered (ComfyUI's LiteGraph), or undefined outside ComfyUI. */
export function registeredTypes(win = window) {
  const types = win.LiteGraph && win.LiteGraph.registered_node_types;
  return types && typeof types === "object" && Object.keys(types).length ? Object.keys(types) : undefined;
}

function candidateText(c) {
  const stars = c.stars === null || c.stars === undefined ? "-" : String(c.stars);
  const when = c.last_update ? String(c.last_update).slice(0, 10) : "-";
  const extra = [c.installed ? `installed (${c.installed})` : "", c.preferred ? "preferred" : "",
    c.exact === false ? "name pattern" : ""].filter(Boolean).join(", ");
  return `${c.title || c.id} — ${c.channel || "-"}, ★ ${stars}, updated ${when}${extra ? `, ${extra}` : ""}`;
}

export class MissingView {
  constructor(ctx) {
    this.ctx = ctx;
    this.workflow = null;
    this.source = "";
    this.report = null;
    this.picks = {};
    this._build();
    const client = ctx.backend && ctx.backend.client;
    if (client && typeof client.onScheduled === "function") {
      // an update of a loaded pack inside ComfyUI (from any view) waits for the restart: say so
      client.onScheduled((d) => ctx.notify("info", "After restart",
        d.after_restart || `${d.scheduled.length} operation(s) run after restart`));
    }
  }

  _build() {
    this.errors = el("div", { class: "om-errors" });
    this.summary = el("span", { class: "om-muted", dataset: { testid: "missing-summary" } });
    this.useOpen = el("button", { class: "om-btn", dataset: { testid: "missing-use-open" },
      onclick: () => this.fromOpenWorkflow() }, "Use the open workflow");
    this.file = el("input", { type: "file", accept: ".json,application/json", dataset: { testid: "missing-file" },
      onchange: () => this.fromFile() });
    this.installBtn = el("button", { class: "om-btn om-btn-primary", dataset: { testid: "missing-install" },
      disabled: true, onclick: () => this.install() }, "Install chosen");
    this.table = el("tbody");
    this.after = el("div", { class: "om-section", dataset: { testid: "missing-recheck" } });
    this.root = el("div", { class: "om-view om-missing", dataset: { view: "missing" } },
      el("div", { class: "om-toolbar" }, this.useOpen, el("label", { class: "om-muted" }, "or a workflow file: ", this.file),
        this.installBtn, this.summary),
      this.errors,
      el("div", { class: "om-section" },
        el("table", { class: "om-table", dataset: { testid: "missing-table" } },
          el("thead", {}, el("tr", {}, el("th", {}, "Node type"), el("th", {}, "State"), el("th", {}, "Candidate packs"),
            el("th", {}, "Why"))),
          this.table)),
      this.after);
    this.planDialog = new PlanDialog({ backend: this.ctx.backend, host: this.root });
  }

  async load() {
    this.useOpen.hidden = !openWorkflow();
    if (!this.report) {
      this.summary.textContent = openWorkflow() ? "Check the workflow open in ComfyUI, or pick a workflow file."
        : "Pick a workflow file (.json, UI or API format).";
    }
    if (openWorkflow() && !this.workflow) await this.fromOpenWorkflow();
  }

  async fromOpenWorkflow() {
    const wf = openWorkflow();
    if (!wf) return;
    this.workflow = wf;
    this.source = "the open workflow";
    await this.check();
  }

  async fromFile() {
    const f = this.file.files && this.file.files[0];
    if (!f) return;
    try {
      this.workflow = JSON.parse(await f.text());
      this.source = f.name;
    } catch (err) {
      replace(this.errors, errorBox({ code: "workflow_invalid", message: `${f.name} is not JSON: ${err.message}`,
        hint: "Export the workflow again from ComfyUI (Save or Export API)." }));
      return;
    }
    this.picks = {};
    await this.check();
  }

  _body(extra = {}) {
    const body = { workflow: this.workflow, ...extra };
    const known = registeredTypes();
    if (known) body.known_types = known;
    return body;
  }

  async check() {
    if (!this.workflow) return;
    try {
      this.report = await this.ctx.backend.client.workflowMissing(this._body());
      clear(this.errors);
      clear(this.after);
      this._render();
    } catch (err) {
      replace(this.errors, errorBox(err));
    }
  }

  _render() {
    const r = this.report;
    const rows = (r.node_types || []).filter((row) => row.state !== "provided");
    const c = r.counts || {};
    this.summary.textContent = `${this.source}: ${(r.node_types || []).length} node type(s), ${rows.length} not provided`
      + (c.choose ? `, ${c.choose} to choose` : "");
    if (!rows.length) {
      replace(this.table, el("tr", {}, el("td", { colspan: "4", class: "om-empty", text: "Every node type is provided." })));
      this.installBtn.disabled = true;
      return;
    }
    replace(this.table, rows.map((row) => this._row(row)));
    this._updateInstall();
  }

  _row(row) {
    const cands = row.candidates || [];
    let choice;
    if ((row.state === "missing" || row.state === "choose") && cands.length) {
      const current = this.picks[row.type] !== undefined ? this.picks[row.type] : row.chosen || "";
      const select = el("select", { class: "om-select", dataset: { testid: "missing-choice", type: row.type },
        onchange: (ev) => { this.picks[row.type] = ev.target.value; this._updateInstall(); } },
        el("option", { value: "", text: cands.length > 1 ? "— choose a pack —" : "— skip —" }),
        cands.map((cand) => el("option", { value: cand.id, text: candidateText(cand), selected: cand.id === current })));
      select.value = current;
      choice = select;
    } else {
      choice = el("ul", { class: "om-list" }, cands.map((cand) => el("li", { text: candidateText(cand) })));
    }
    return el("tr", { dataset: { type: row.type, state: row.state } },
      el("td", { text: row.type }),
      el("td", {}, el("span", { class: "om-badge", dataset: { kind: STATE_BADGE[row.state] || "" },
        text: STATE_TEXT[row.state] || row.state })),
      el("td", {}, choice),
      el("td", { class: "om-muted", text: row.reason || "" }));
  }

  /** The user's choices: every type with a selected pack (the server re-checks each). */
  _choices() {
    const out = {};
    for (const row of (this.report && this.report.node_types) || []) {
      if (row.state !== "missing" && row.state !== "choose") continue;
      const pick = this.picks[row.type] !== undefined ? this.picks[row.type] : row.chosen || "";
      if (pick) out[row.type] = pick;
    }
    return out;
  }

  _updateInstall() {
    this.installBtn.disabled = !Object.keys(this._choices()).length;
  }

  async install() {
    const client = this.ctx.backend.client;
    this.installBtn.disabled = true;
    try {
      // the server turns the choices into the batch (and refuses a pack that does not provide the type)
      const decided = await client.workflowMissing(this._body({ choices: this._choices() }));
      const tasks = (decided.requests || []).map((q) => ({ kind: q.kind, target: q.target, params: q.params || {} }));
      if (!tasks.length) return;
      // the confirm step: the whole batch's plan in one dialog; nothing is queued before Run
      const names = tasks.map((t) => t.target).join(", ");
      const choice = await this.planDialog.open({ title: `Install for the missing nodes: ${names}`, tasks,
        runLabel: "Install" });
      if (!choice) { this._updateInstall(); return; }
      const batch = tasks.map((t) => (choice.skipDeps && DEPS_KINDS.has(t.kind)
        ? { ...t, params: { ...t.params, skip_deps: true } } : t));
      replace(this.after, el("div", { class: "om-muted", dataset: { testid: "missing-installing" },
        text: `Installing ${names}${choice.skipDeps ? " (without dependencies)" : ""} ...` }));
      const queued = await client.enqueue(batch);
      const ids = (queued.tasks || []).map((t) => t.id);
      const finals = await this._wait(ids);
      this.report = await client.workflowMissing(this._body());
      this._render();
      await this._renderRecheck(finals, queued);
    } catch (err) {
      replace(this.errors, errorBox(err));
      this._updateInstall();
    }
  }

  async _wait(ids, timeoutMs = 600000) {
    const client = this.ctx.backend.client;
    const end = Date.now() + timeoutMs;
    const finals = {};
    while (Date.now() < end && Object.keys(finals).length < ids.length) {
      for (const id of ids) {
        if (finals[id]) continue;
        const t = await client.getTask(id);
        if (FINAL.has(t.state)) finals[id] = t;
      }
      if (Object.keys(finals).length < ids.length) await new Promise((res) => setTimeout(res, 400));
    }
    return Object.values(finals);
  }

  async _renderRecheck(finals, queued) {
    let canRestart = false;
    try { canRestart = !!(await this.ctx.backend.status()).can_restart; } catch (_e) { canRestart = false; }
    const rows = (this.report.node_types || []).filter((r) => r.state !== "provided");
    const failed = finals.filter((t) => t.state !== "done");
    const restart = rows.filter((r) => r.state === "restart_needed");
    const lines = [
      el("div", { dataset: { testid: "missing-recheck-summary" },
        text: `Re-check: ${finals.length - failed.length} of ${finals.length} install(s) done; `
          + (rows.length ? `${rows.length} node type(s) still missing.` : "every node type is provided.") }),
      failed.map((t) => el("div", { class: "om-muted", text: `${t.kind} ${t.target} ${t.state}: ${(t.error && t.error.message) || ""}` })),
      rows.map((r) => el("div", { dataset: { testid: "missing-still", type: r.type, state: r.state },
        text: `${r.type}: ${STATE_TEXT[r.state] || r.state} — ${r.reason || ""}` })),
      queued.after_restart ? el("div", { class: "om-muted", text: queued.after_restart }) : null,
      restart.length && canRestart && this.ctx.restart
        ? el("button", { class: "om-btn", dataset: { testid: "missing-restart" }, onclick: () => this.ctx.restart() },
          "Restart ComfyUI (after restart the new nodes load)")
        : null,
      restart.length && !canRestart
        ? el("div", { class: "om-muted", text: "Restart ComfyUI to load the new packs (this page cannot restart it)." })
        : null,
    ];
    replace(this.after, lines);
  }
}
