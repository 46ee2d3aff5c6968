// The status bar: network mode, channel, database age (and whether it is stale), security
// level, queue state, and a restart prompt when an operation needs one.

import { el, replace, setText, formatAge } from "../dom.js";

export class StatusBar {
  constructor(ctx) {
    this.ctx = ctx;
    const item = (testid, label) => {
      const value = el("span", { class: "om-badge", dataset: { testid } });
      return [el("span", { class: "om-sb-item" }, el("span", { class: "om-label", text: label }), value), value];
    };
    let mode, channel, db, security, queue, routes;
    [mode, this.mode] = item("status-network", "Network");
    [channel, this.channel] = item("status-channel", "Channel");
    [db, this.db] = item("status-db", "DB");
    [security, this.security] = item("status-security", "Security");
    [queue, this.queue] = item("status-queue", "Queue");
    [routes, this.routes] = item("status-routes", "Routes");
    this.restartText = el("span", { text: "Restart required" });
    this.restartBtn = el("button", { class: "om-btn om-btn-primary", dataset: { testid: "restart-now" },
      onclick: () => this.ctx.restart() }, "Restart now");
    this.restart = el("span", { class: "om-restart", hidden: true, dataset: { testid: "restart-prompt" } },
      this.restartText, this.restartBtn);
    this.root = el("footer", { class: "om-statusbar", dataset: { testid: "statusbar" } },
      mode, channel, db, security, queue, routes, el("span", { class: "om-spacer" }), this.restart);
    ctx.tasks.on("change", () => this.renderQueue());
    ctx.tasks.on("restart", (list) => this.showRestart(list));
  }

  /** Show a status answer from the server (tolerant of missing fields). */
  render(status) {
    this.status = status || {};
    const s = this.status;
    const mode = String(s.network_mode || s.network?.mode || "unknown");
    setText(this.mode, mode);
    this.mode.dataset.kind = mode;
    this.root.dataset.networkMode = mode;
    const channel = s.channel || {};
    setText(this.channel, typeof channel === "string" ? channel : channel.name || channel.url || "—");
    this.channel.title = typeof channel === "object" && channel.url ? channel.url : "";
    const db = s.db || s.catalog || {};
    const age = db.age_seconds ?? db.oldest_age_seconds ?? null;
    const stale = !!(db.stale || (Array.isArray(db.notices) && db.notices.some((n) => /stale/.test(n.code || ""))));
    const parts = [db.mode || s.db_mode || "", age !== null ? `${formatAge(age)} old` : db.loaded === false ? "not loaded" : "",
      stale ? "stale" : ""].filter(Boolean);
    setText(this.db, parts.join(" · ") || "—");
    this.db.dataset.kind = stale ? "stale" : "";
    this.db.title = db.source ? `source: ${db.source}` : "";
    setText(this.security, s.security_level || s.security?.level || "—");
    this.renderQueue(s.queue);
    this.renderRoutes(s.route_owners || (s.raw && s.raw.route_owners));   // backend.status() keeps the answer in raw
    this.restartBtn.hidden = s.can_restart === false;   // standalone: ComfyUI is restarted by its owner
    this.restart.title = s.can_restart === false ? "Restart ComfyUI to load the changes" : "";
    if (s.restart_required) this.showRestart([{ reason: "pending changes" }]);
  }

  /** "ours" when we answer every family; otherwise the families another extension answers. */
  renderRoutes(owners) {
    const entries = Object.entries(owners || {});
    const others = entries.filter(([, owner]) => owner !== "offline-manager");
    const text = !entries.length ? "ours" : others.length
      ? others.map(([family, owner]) => `${family}: ${owner}`).join("; ") : "ours";
    setText(this.routes, text);
    this.routes.dataset.kind = others.length ? "shared" : "";
    this.routes.title = entries.map(([family, owner]) => `${family} routes answered by ${owner}`).join("\n");
  }

  renderQueue(serverQueue) {
    const active = this.ctx.tasks.active();
    let text;
    if (active.length) {
      const running = active.filter((t) => t.state === "running").length;
      text = `${running} running, ${active.length - running} queued`;
    } else if (serverQueue && (serverQueue.in_progress_count || serverQueue.pending_count)) {
      text = `${serverQueue.in_progress_count || 0} running, ${serverQueue.pending_count || 0} queued`;
    } else {
      text = "idle";
    }
    setText(this.queue, text);
    this.queue.dataset.kind = text === "idle" ? "" : "running";
  }

  showRestart(list) {
    const last = list && list.length ? list[list.length - 1] : null;
    this.restart.hidden = false;
    this.restartText.textContent = last && last.target ? `Restart required (${last.target})` : "Restart required";
  }
}
