// Task state as the panel shows it, folded from the queue's events
// (queued, started, progress, done, failed, cancelled, restart-required, queue-idle).

import { Emitter } from "./dom.js";

const FINAL = new Set(["done", "failed", "cancelled"]);
const RANK = { queued: 0, running: 1, done: 2, failed: 2, cancelled: 2 };

export class TaskTracker extends Emitter {
  constructor() {
    super();
    this.tasks = new Map();        // task id -> task view
    this.byTarget = new Map();     // target -> latest task id
    this.restart = [];             // reasons a restart is needed, newest last
    this.lastSeq = 0;
    this._seen = new Set();
  }

  /** Tasks queued or running. */
  active() { return [...this.tasks.values()].filter((t) => !FINAL.has(t.state)); }

  /** The latest task on a target (pack id, model id, snapshot name), or undefined. */
  forTarget(target) {
    const id = this.byTarget.get(target);
    return id ? this.tasks.get(id) : undefined;
  }

  /** Record a task the server just accepted (the enqueue answer), before its events arrive. */
  accepted(task) {
    // The enqueue answer can arrive after the task's own events (a fast task): never let it
    // move a task back to an earlier state.
    if (!task || !task.id) return;
    const known = this.tasks.get(task.id);
    if (known && RANK[known.state] >= RANK[task.state || "queued"]) {
      if (known.target === undefined) this._merge(task.id, { target: task.target, kind: task.kind });
      return;
    }
    this._merge(task.id, { ...task, state: task.state || "queued" });
    this.emit("change", this.tasks.get(task.id));
  }

  /**
   * Fold one event: {event|name, task_id, seq, data}. Events that repeat a seq already seen
   * (two delivery paths) are ignored.
   */
  apply(ev) {
    if (!ev) return;
    const name = ev.event || ev.name;
    if (typeof ev.seq === "number") {
      // (seq, time) names one event even across a server restart, when seq starts again at 1.
      const key = `${ev.seq}@${ev.at ?? ""}`;
      if (this._seen.has(key)) return;
      this._seen.add(key);
      if (this._seen.size > 2000) this._seen.delete(this._seen.values().next().value);
      this.lastSeq = ev.seq;
    }
    const data = ev.data || {};
    const id = ev.task_id || data.task?.id;
    switch (name) {
      case "queued": case "started": case "done": case "cancelled":
        this._merge(id, { ...(data.task || {}), state: data.task?.state || { started: "running" }[name] || name });
        break;
      case "failed":
        this._merge(id, { ...(data.task || {}), state: "failed", error: data.error || data.task?.error });
        break;
      case "progress":
        this._merge(id, { progress: { stage: data.stage, percent: data.percent, line: data.line },
          state: "running" });
        break;
      case "restart-required":
        this._merge(id, { restart_required: true });
        this.restart.push({ reason: data.reason || "", kind: data.kind, target: data.target });
        this.emit("restart", this.restart);
        break;
      case "queue-idle":
        this.emit("idle", data);
        break;
      default:
        return;
    }
    this.emit("change", id ? this.tasks.get(id) : null);
  }

  _merge(id, patch) {
    if (!id) return;
    const prev = this.tasks.get(id) || { id, progress: {} };
    const next = { ...prev, ...patch, id };
    if (prev.state && RANK[next.state] < RANK[prev.state]) next.state = prev.state;  // late or reordered news
    this.tasks.set(id, next);
    if (next.target) this.byTarget.set(next.target, id);
  }
}

/** Short text for a task's state: "queued", "installing 40%", "done", "failed". */
export function taskLabel(task) {
  if (!task) return "";
  if (task.state === "running") {
    const p = task.progress || {};
    const pct = typeof p.percent === "number" ? ` ${Math.round(p.percent)}%` : "";
    return `${p.stage || task.kind || "running"}${pct}`;
  }
  return task.state || "";
}
