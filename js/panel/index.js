// The Manager panel: host-agnostic. Given a backend (over the one api client) and an optional
// host (ComfyUI's toast, or nothing), it builds the views into one root element. Importing
// this module does nothing: ComfyUI imports every .js file of the extension.

import { el, replace, clear } from "./dom.js";
import { errorBox, toError } from "./errors.js";
import { TaskTracker } from "./tasks.js";
import { NodesView } from "./views/nodes.js";
import { ModelsView } from "./views/models.js";
import { SnapshotsView } from "./views/snapshots.js";
import { SettingsView } from "./views/settings.js";
import { TrashView } from "./views/trash.js";
import { BundlesView } from "./views/bundles.js";
import { MissingView } from "./views/missing.js";
import { StatusBar } from "./views/statusbar.js";

export const TABS = [["nodes", "Node packs"], ["models", "Models"], ["snapshots", "Snapshots"], ["trash", "Trash"],
  ["bundles", "Bundles"], ["missing", "Missing nodes"], ["settings", "Settings"]];

const VERBS = { install: "Install", uninstall: "Uninstall", enable: "Enable", disable: "Disable", update: "Update",
  fix: "Fix", switch_version: "Switch version", install_model: "Install model", reinstall: "Reinstall",
  restore_trash: "Restore", empty_trash: "Empty trash", undo: "Undo", update_all: "Update all",
  bundle_import: "Import bundle" };

let cssReady = null;
/**
 * Add panel.css to the document once (never at import); resolves when it applies (or failed to
 * load: the panel still works unstyled).
 */
export function ensureStyles(doc = document) {
  if (cssReady) return cssReady;
  const found = doc.querySelector("link[data-offline-manager-css]");
  if (found && found.sheet) return (cssReady = Promise.resolve());
  const link = found || doc.createElement("link");
  cssReady = new Promise((resolve) => {
    link.addEventListener("load", () => resolve(), { once: true });
    link.addEventListener("error", () => resolve(), { once: true });
  });
  if (!found) {
    link.rel = "stylesheet";
    link.href = new URL("./panel.css", import.meta.url).href;
    link.dataset.offlineManagerCss = "";
    doc.head.appendChild(link);
  }
  return cssReady;
}

export class Panel {
  /**
   * @param {object} o
   * @param {object} o.backend  a Backend (./backend.js) over the api client
   * @param {object} [o.host]   {toast(severity, summary, detail), restart()} from the host, optional
   * @param {string} [o.title]
   */
  constructor({ backend, host = {}, title = "Offline Manager" }) {
    this.backend = backend;
    this.host = host;
    this.tasks = new TaskTracker();
    this.loadedTabs = new Set();
    const ctx = this.ctx = {
      backend, tasks: this.tasks,
      notify: (severity, summary, detail) => this.notify(severity, summary, detail),
      report: (err, summary) => this.report(err, summary),
      run: (action, item, params) => this.run(action, item, params),
      refreshStatus: () => this.refreshStatus(),
      reloadData: () => this.reloadData(),
      restart: () => this.restart(),
    };
    this.views = { nodes: new NodesView(ctx), models: new ModelsView(ctx), snapshots: new SnapshotsView(ctx),
      trash: new TrashView(ctx), bundles: new BundlesView(ctx), missing: new MissingView(ctx), settings: new SettingsView(ctx) };
    this.statusBar = new StatusBar(ctx);
    this.tabButtons = TABS.map(([id, label]) => el("button", { class: "om-tab", role: "tab", dataset: { tab: id },
      "aria-selected": "false", onclick: () => this.select(id) }, label));
    this.closeBtn = el("button", { class: "om-btn om-btn-ghost", title: "Close", dataset: { testid: "panel-close" },
      onclick: () => this.onClose && this.onClose() }, "×");
    this.errors = el("div", { class: "om-errors", dataset: { testid: "panel-errors" } });
    this.root = el("div", { class: "om-root", dataset: { testid: "offline-manager-panel" } },
      el("header", { class: "om-header" }, el("span", { class: "om-title", text: title }),
        el("nav", { class: "om-tabs", role: "tablist" }, this.tabButtons),
        el("button", { class: "om-btn", title: "Reload the lists from the channel cache",
          onclick: () => this.reloadData(true) }, "Refresh"),
        this.closeBtn),
      this.errors,
      el("div", { class: "om-body" }, Object.values(this.views).map((v) => { v.root.hidden = true; return v.root; })),
      this.statusBar.root);
    this.tasks.on("change", (task) => this._taskChanged(task));
    this.tasks.on("idle", () => this._idle());
    this._unsubscribe = null;
    this.current = null;
  }

  /** Start following events and show the first tab; safe to call again (re-opening). */
  async open(tab) {
    await ensureStyles();
    if (!this._unsubscribe) {
      const offEvents = this.backend.onEvent((ev) => this.tasks.apply(ev));
      const offReconnect = this.backend.onReconnect ? this.backend.onReconnect(() => this._reconnected()) : () => {};
      this._unsubscribe = () => { offEvents(); offReconnect(); };
    }
    await this.select(tab || this.current || "nodes");
    this.refreshStatus();
  }

  async select(tab) {
    this.current = tab;
    for (const b of this.tabButtons) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
    for (const [id, view] of Object.entries(this.views)) view.root.hidden = id !== tab;
    this.root.dataset.tab = tab;
    if (!this.loadedTabs.has(tab)) {
      this.loadedTabs.add(tab);
      await this.views[tab].load();
    }
  }

  async refreshStatus() {
    try {
      this.statusBar.render(await this.backend.status());
    } catch (err) {
      this.report(err, "Status unavailable");
    }
  }

  /** Reload every list that was shown (after a channel/DB change or an operation). */
  async reloadData(refresh = false) {
    const loads = [...this.loadedTabs].map((tab) => this.views[tab].load({ refresh }));
    await Promise.all(loads);
    await this.refreshStatus();
  }

  notify(severity, summary, detail = "") {
    if (this.host.toast) {
      try { this.host.toast(severity, summary, detail); return; } catch (err) { console.warn(err); }
    }
    console.info(`[offline-manager] ${summary}: ${detail}`);
  }

  /** Show an error with its code and hint at the top of the panel (and as a toast). */
  report(err, summary = "") {
    const e = toError(err);
    const box = errorBox(e, { onDismiss: () => box.remove() });
    if (summary) box.insertBefore(el("div", { class: "om-label", text: summary }), box.firstChild);
    this.errors.prepend(box);
    while (this.errors.children.length > 3) this.errors.lastChild.remove();
    this.notify("error", summary || e.code, `[${e.code}] ${e.message}`);
  }

  /** Queue one operation; errors from the request (refusals) are reported with code and hint. */
  async run(action, item, params = {}) {
    const kind = action;
    let target = item.id;
    if (kind === "install_model") {
      target = item.filename || item.id;
      params = { filename: item.filename, name: item.name, save_path: item.savePath, base: item.base, url: item.url, ...params };
    }
    try {
      const tasks = await this.backend.enqueue(kind, target, params);
      for (const t of tasks) this.tasks.accepted(t);
      this.statusBar.renderQueue();
      return tasks;
    } catch (err) {
      this.report(err, `${VERBS[kind] || kind} ${item.title || item.name || target} refused`);
      return [];
    }
  }

  _taskChanged(task) {
    if (!task) return;
    if (task.state === "failed" && !task._reported) {
      task._reported = true;
      this.report(task.error || { code: "task_failed", message: "the operation failed" },
        `${VERBS[task.kind] || task.kind} ${task.target} failed`);
    } else if (task.state === "done" && !task._reported) {
      task._reported = true;
      this.notify("success", `${VERBS[task.kind] || task.kind} done`, task.target || "");
    }
  }

  _idle() {
    // The installed state changed: reload the lists that are shown, keeping query and scroll.
    this.reloadData();
  }

  /** The server came back (after a restart): what needed a restart is done; reload everything. */
  _reconnected() {
    this.tasks.restart = [];
    this.statusBar.restart.hidden = true;
    this.reloadData();
  }

  async restart() {
    try {
      if (this.host.restart) await this.host.restart();
      else await this.backend.reboot();
      this.notify("info", "Restarting", "The server is restarting; the page reconnects when it is back.");
    } catch (err) {
      this.report(err, "Restart failed");
    }
  }

  close() {
    if (this._unsubscribe) { this._unsubscribe(); this._unsubscribe = null; }
  }
}

/** Build a panel (nothing is attached to the document). */
export function createPanel(options) {
  ensureStyles();
  return new Panel(options);
}

export { clear, replace };
