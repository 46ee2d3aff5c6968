// The confirm step of every changing operation: before anything is queued, the server's plan
// (POST /v1/queue with dry_run: true, the shared plan record of manager/plans.py) is shown in a
// dialog: packs added/changed/removed, Python packages added/upgraded/downgraded/removed
// (downgrades stand out), what the policy holds back and which pack asks, files that move,
// blockers (Run stays disabled while one stands) and notes, with a "without dependencies" choice
// (skip_deps) for the kinds that have a dependency step. Run resolves the dialog; the caller
// queues the same request without dry_run. The dialog opens at once in a "planning…" state.

import { el, replace, clear } from "../dom.js";
import { errorBox, toError } from "../errors.js";

/** Kinds whose params take skip_deps (manager/kinds/params.py). */
export const DEPS_KINDS = new Set(["install", "reinstall", "update", "update_all", "switch_version"]);

const VERBS = { install: "Install", uninstall: "Uninstall", enable: "Enable", disable: "Disable", update: "Update",
  update_all: "Update all", fix: "Fix", switch_version: "Switch version", reinstall: "Reinstall",
  bundle_import: "Import bundle" };
const PACK_WORDS = { added: "added", changed: "changed", removed: "removed", enabled: "enabled", disabled: "disabled" };
const PY_WORDS = { added: "added", upgraded: "upgraded", downgraded: "downgraded", removed: "removed" };

const arrow = (from, to) => (from && to ? ` ${from} → ${to}` : from || to ? ` ${from || to}` : "");

/** A kind the server has no dry run for answers request_invalid naming the kind (planner.preview). */
function noDryRun(err) {
  const e = toError(err);
  return e.code === "request_invalid" && /no dry run/i.test(e.message);
}

function section(label, testid, items) {
  if (!items.length) return null;
  return el("div", { class: "om-plan-section", dataset: { testid } },
    el("div", { class: "om-label", text: label }), el("ul", { class: "om-list" }, items));
}

/** The body of one plan record (text only: names come from the channel and the index). */
export function renderPlan(plan) {
  const packs = plan.packs || {};
  const python = plan.python || {};
  const withDeps = plan.with_deps || {};
  const blockers = Array.isArray(plan.blockers) ? plan.blockers : [];
  const packItems = Object.keys(PACK_WORDS).flatMap((c) => (packs[c] || []).map((p) =>
    el("li", { class: `om-plan-pack om-plan-${c}`, dataset: { change: c, name: p.name || "" } },
      el("span", { class: "om-badge", dataset: { kind: c === "removed" ? "failed" : c === "added" ? "done" : "update" },
        text: PACK_WORDS[c] }), " ", el("strong", { text: p.name || "" }), arrow(p.from, p.to),
      p.source ? el("span", { class: "om-muted", text: ` from ${p.source}` }) : null,
      p.note ? el("span", { class: "om-muted", text: ` (${p.note})` }) : null)));
  const pyItems = Object.keys(PY_WORDS).flatMap((c) => (python[c] || []).map((p) =>
    el("li", { class: `om-plan-py om-plan-${c}`, dataset: { change: c, name: p.name || "" } },
      el("span", { class: "om-badge", dataset: { kind: c === "downgraded" ? "failed" : c === "added" ? "done" : "update" },
        text: PY_WORDS[c] }), " ", el("strong", { text: p.name || "" }), arrow(p.from, p.to))));
  const leftOut = plan.skip_deps ? (withDeps.python || []).map((p) =>
    el("li", { class: "om-plan-leftout", dataset: { change: p.change || "", name: p.name || "" } },
      el("span", { class: "om-badge", text: `not ${PY_WORDS[p.change] || p.change || "changed"}` }), " ",
      el("strong", { text: p.name || "" }), arrow(p.from, p.to))) : [];
  const leftReqs = plan.skip_deps && !leftOut.length ? (withDeps.requirements || []).map((r) =>
    el("li", { class: "om-plan-leftout", text: `requirement not installed: ${r}` })) : [];
  const held = (plan.held_back || []).map((h) => el("li", { class: "om-plan-held" },
    el("strong", { text: h.requirement || "" }), ` held back (${h.reason || "policy"})`,
    h.pack ? el("span", {}, " — asked by ", el("strong", { text: h.pack })) : null,
    h.installed ? ` — installed: ${h.installed}` : "", h.message ? ` — ${h.message}` : ""));
  const moves = (plan.moves || []).map((m) => el("li", { class: "om-plan-move",
    text: `${m.from || ""} → ${m.to || ""}${m.why ? ` (${m.why})` : ""}` }));
  const notes = (plan.notes || []).map((n) => el("li", { text: typeof n === "string" ? n : JSON.stringify(n) }));
  // a preview answering its own shape is carried whole in `details` (the undo's plan: manager/undo.py)
  const details = plan.details && typeof plan.details === "object" ? plan.details : null;
  const undo = plan.kind === "undo" && details && details.plan && typeof details.plan === "object" ? details.plan : null;
  if (undo) {
    const step = undo.pack || {};
    if (step.action) {
      packItems.push(el("li", { class: "om-plan-pack", dataset: { change: step.action, name: step.pack || "" } },
        el("span", { class: "om-badge", dataset: { kind: step.action === "uninstall" ? "failed" : "update" },
          text: step.action === "uninstall" ? "to the trash" : step.action.replace(/_/g, " ") }), " ",
        el("strong", { text: step.pack || "" }), step.version || step.commit ? ` → ${step.version || step.commit}` : ""));
    }
    for (const p of undo.install || []) {
      pyItems.push(el("li", { class: "om-plan-py", dataset: { change: "put-back", name: p.name || "" } },
        el("span", { class: "om-badge", dataset: { kind: "update" }, text: "put back" }), " ",
        el("strong", { text: p.name || "" }), p.version ? ` ${p.version}` : ""));
    }
    for (const name of undo.remove || []) {
      pyItems.push(el("li", { class: "om-plan-py om-plan-removed", dataset: { change: "removed", name: String(name) } },
        el("span", { class: "om-badge", dataset: { kind: "update" }, text: "removed" }), " ", el("strong", { text: String(name) })));
    }
    for (const h of undo.held_back || []) held.push(el("li", { class: "om-plan-held" },
      el("strong", { text: h.name || "" }), ` held back (${h.reason || "policy"})`));
    for (const n of undo.notes || []) notes.push(el("li", { text: String(n) }));
  }
  const other = details && !undo ? el("div", { class: "om-plan-section", dataset: { testid: "plan-details" } },
    el("div", { class: "om-label", text: "Details" }), el("pre", { class: "om-pre", text: JSON.stringify(details, null, 2) }))
    : null;
  const nothing = !packItems.length && !pyItems.length && !moves.length && !blockers.length && !leftOut.length
    && !other;
  return el("div", { class: "om-plan", dataset: { testid: "plan", kind: plan.kind || "", target: plan.target || "",
    ok: String(!blockers.length) } },
  el("div", { class: "om-plan-title" },
    el("strong", { text: `${VERBS[plan.kind] || plan.kind || ""} ${plan.target || ""}` }),
    blockers.length ? el("span", { class: "om-badge", dataset: { kind: "failed" }, text: "blocked" }) : null),
  blockers.length ? el("div", { class: "om-plan-blockers", dataset: { testid: "plan-blockers" } },
    blockers.map((b) => errorBox(b))) : null,
  section("Node packs", "plan-packs", packItems),
  section("Python packages", "plan-python", pyItems),
  section("Left out without dependencies", "plan-left-out", [...leftOut, ...leftReqs]),
  section("Held back", "plan-held-back", held),
  section("Files that move", "plan-moves", moves),
  section("Notes", "plan-notes", notes),
  other,
  nothing ? el("div", { class: "om-muted", text: "Nothing to change." }) : null,
  plan.resolver ? el("div", { class: "om-muted om-plan-resolver", text: `Python changes found with ${plan.resolver}` })
    : null);
}

export class PlanDialog {
  /**
   * @param {object} o
   * @param {object} o.backend  the panel's Backend (plan())
   * @param {HTMLElement} o.host  where the dialog is attached (a positioned element)
   */
  constructor({ backend, host }) {
    this.backend = backend;
    this.host = host;
    this.root = null;
  }

  get isOpen() { return !!this.root; }

  /**
   * Ask for the plan of `tasks` ([{kind, target, params}]) and show it.
   * @returns {Promise<null|{skipDeps: boolean}>} null when cancelled
   */
  open({ title, tasks, runLabel = "Run", danger = false, message = "" }) {
    this.close(null);
    const depsChoice = tasks.some((t) => DEPS_KINDS.has(t.kind));
    const cache = new Map();   // skip_deps -> Promise of {plans} | {error} | {noPreview}
    let token = 0;
    return new Promise((resolve) => {
      this._resolve = resolve;
      this.body = el("div", { class: "om-plan-body", dataset: { testid: "plan-body" } });
      this.skip = el("input", { type: "checkbox", dataset: { testid: "plan-skip-deps" } });
      this.runBtn = el("button", { class: `om-btn ${danger ? "om-btn-danger" : "om-btn-primary"}`, disabled: true,
        dataset: { testid: "plan-run" }, onclick: () => this.close({ skipDeps: depsChoice && this.skip.checked }) },
      runLabel);
      const cancel = el("button", { class: "om-btn", dataset: { testid: "plan-cancel" },
        onclick: () => this.close(null) }, "Cancel");
      const dialog = el("div", { class: "om-plan-dialog", role: "dialog", "aria-modal": "true", "aria-label": title,
        dataset: { testid: "plan-dialog", state: "planning" } },
      el("div", { class: "om-plan-head" }, el("strong", { text: title })),
      message ? el("div", { class: "om-plan-message", dataset: { testid: "plan-message" }, text: message }) : null,
      this.body,
      el("div", { class: "om-plan-foot" },
        depsChoice ? el("label", { class: "om-plan-skip", title: "skip_deps: the pack only; requirements.txt and install.py are not run" },
          this.skip, " without dependencies") : null,
        el("span", { class: "om-spacer" }), cancel, this.runBtn));
      this.dialog = dialog;
      this.root = el("div", { class: "om-plan-backdrop", onclick: (e) => { if (e.target === this.root) this.close(null); } },
        dialog);
      this.root.addEventListener("keydown", (e) => { if (e.key === "Escape") this.close(null); });
      this.host.appendChild(this.root);
      cancel.focus();

      const show = async () => {
        const mine = ++token;
        const skipDeps = depsChoice && this.skip.checked;
        dialog.dataset.state = "planning";
        this.runBtn.disabled = true;
        replace(this.body, el("div", { class: "om-muted om-plan-planning", dataset: { testid: "plan-planning" } },
          "Planning… (nothing changes until you press ", runLabel, ")"));
        if (!cache.has(skipDeps)) {
          const asked = tasks.map((t) => ({ ...t, params: { ...(t.params || {}),
            ...(skipDeps && DEPS_KINDS.has(t.kind) ? { skip_deps: true } : {}) } }));
          cache.set(skipDeps, this.backend.plan(asked).then((plans) => ({ plans }),
            (error) => (noDryRun(error) ? { noPreview: toError(error) } : { error })));
        }
        const res = await cache.get(skipDeps);
        if (mine !== token || !this.root) return;
        if (res.error) {
          dialog.dataset.state = "error";
          replace(this.body, el("div", { class: "om-label", text: "The plan could not be made:" }),
            el("div", { dataset: { testid: "plan-blockers" } }, errorBox(res.error)));
          return;
        }
        if (res.noPreview) {
          dialog.dataset.state = "no-preview";
          replace(this.body, el("div", { class: "om-muted", dataset: { testid: "plan-no-preview" },
            text: `No preview for this operation: ${res.noPreview.message}` }));
          this.runBtn.disabled = false;
          return;
        }
        const blocked = res.plans.some((p) => Array.isArray(p.blockers) && p.blockers.length);
        dialog.dataset.state = blocked ? "blocked" : "ready";
        replace(this.body, res.plans.map((p) => renderPlan(p)));
        this.runBtn.disabled = blocked;
        this.runBtn.title = blocked ? "A blocker stands: nothing can run until it is resolved" : "";
      };
      this.skip.addEventListener("change", () => show());
      show();
    });
  }

  /** Close with a result (null = cancelled). */
  close(result) {
    if (!this.root) return;
    this.root.remove();
    this.root = null;
    clear(this.body);
    const resolve = this._resolve;
    this._resolve = null;
    if (resolve) resolve(result);
  }
}
