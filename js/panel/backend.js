// The panel's view of the server: a thin adapter over the one API client (../api-client.js),
// shaping answers for the views. It never calls fetch itself.

import { EVENT } from "../api-client.js";

/** An installed pack no catalog entry matches -> a row the list can show. */
function unmatchedRow(p) {
  const id = p.pack_id || p.name;
  return { id, title: p.display_name || id, author: "", description: "", reference: p.remote_url || p.repository || "",
    installed: { enabled: !!p.enabled, version: p.version || p.commit || "", kind: p.kind, name: p.name,
      import_failed: !!p.import_failed },
    install_type: p.kind || "", stars: -1 };
}

const FINAL = new Set(["done", "failed", "cancelled"]);

/** The task record inside an answer ({task}, {tasks: [..]} or a task itself), else null. */
function taskOf(d) {
  if (!d || typeof d !== "object") return null;
  if (d.task && typeof d.task === "object") return d.task;
  if (Array.isArray(d.tasks) && d.tasks.length) return d.tasks[0];
  return d.id && d.state && d.kind ? d : null;
}

const isStale = (notices) => Array.isArray(notices) && notices.some((n) => /stale/.test(String(n.code || "")));

export class Backend {
  /** @param {import("../api-client.js").OfflineManagerClient} client */
  constructor(client) {
    this.client = client;
    this.dbMode = undefined;   // the panel's list source (config db_mode); undefined = server default
  }

  /**
   * Fetch the pack list ahead of need from the cached copy only (mode=local: never the network),
   * so that opening the panel shows rows at once. Failures are ignored: opening fetches as usual.
   */
  prefetch() {
    if (!this._prefetch) {
      this._prefetch = this.client.listPacks({ mode: "local", tagged: true })
        .then((r) => ({ ...this._shapePacks(r.data), etag: r.etag })).catch(() => null);
    }
    return this._prefetch;
  }

  /**
   * Every pack with its installed state, plus what the user must be told (stale data, ...).
   * With `prefetched`, a list fetched by `prefetch()` is used once (marked `prefetched: true`
   * so the caller revalidates it).
   */
  async packs({ refresh = false, prefetched = false, etag = "" } = {}) {
    if (prefetched && this._prefetch && !refresh) {
      const early = await this._prefetch;
      this._prefetch = null;
      if (early) return { ...early, prefetched: true };
    }
    this._prefetch = null;
    const mode = refresh ? "remote" : this.dbMode;
    if (etag && !refresh) {
      // Revalidating a list already shown: a 304 moves no list over the wire and re-parses nothing.
      const r = await this.client.listPacks({ mode, etag });
      return r.notModified ? { notModified: true, etag } : { ...this._shapePacks(r.data), etag: r.etag };
    }
    return this._shapePacks(await this.client.listPacks({ mode }));
  }

  _shapePacks(d) {
    const packs = Array.isArray(d.packs) ? d.packs : Object.entries(d.node_packs || {}).map(([id, p]) => ({ id, ...p }));
    const extra = (d.unmatched || []).map(unmatchedRow);
    return { packs: extra.length ? packs.concat(extra) : packs, notices: d.notices || [], channel: d.channel,
      age_seconds: d.age_seconds };
  }

  /** What custom_nodes holds, as list rows (no catalog needed: the offline box's first day). */
  async installedOnly() {
    const d = await this.client.listInstalled();
    return { packs: (d.packs || []).map(unmatchedRow) };
  }

  /** One pack's details: catalog entry, installed copies, node types. */
  pack(id) { return this.client.getPack(id); }

  /** What ComfyUI reported when it failed to import this pack at its last start, or null. */
  async importFailure(id, folder) {
    const d = await this.client.listImportFailures();
    const rows = Array.isArray(d) ? d : d.failures || [];
    return rows.find((f) => f.pack_id === id || (folder && f.name === folder)) || null;
  }

  async packVersions(id) {
    const d = await this.client.getPackVersions(id);
    return Array.isArray(d) ? d : d.versions || [];
  }

  async models({ refresh = false } = {}) {
    const d = await this.client.listModels({ mode: refresh ? "remote" : this.dbMode });
    return { models: Array.isArray(d) ? d : d.models || [] };
  }

  /** Queue one task; resolves to the accepted task records. */
  async enqueue(kind, target, params = {}) {
    const d = await this.client.enqueue({ kind, target, params });
    return d.tasks || [];
  }

  /**
   * The plans of tasks ([{kind, target, params}]) from the server's dry run: nothing is queued.
   * Resolves to one shared plan record per task (manager/plans.py Plan.to_dict()).
   */
  async plan(tasks) {
    const d = await this.client.enqueue(tasks.map((t) => ({ kind: t.kind, target: t.target, params: t.params || {} })),
      { dryRun: true });
    return Array.isArray(d.plans) ? d.plans : [];
  }

  async status() {
    const s = await this.client.getStatus();
    const cat = s.catalog || null;
    const url = s.channel_url || "";
    return {
      network_mode: s.network_mode, security_level: s.security_level, door: s.door, version: s.version,
      channel: cat && cat.channel ? cat.channel : { name: url.split("/").filter(Boolean).pop() || url, url },
      db: { loaded: !!cat, age_seconds: cat ? cat.age_seconds : null, stale: cat ? isStale(cat.notices) : false,
        mode: this.dbMode || "cache", source: cat && cat.sources ? Object.values(cat.sources)[0] : "" },
      queue: s.queue || null, can_restart: !!s.can_restart, raw: s,
    };
  }

  // --- trash ----------------------------------------------------------------------------------
  async trash() {
    const d = await this.client.listTrash();
    return Array.isArray(d) ? d : d.entries || [];
  }

  // --- offline bundles -----------------------------------------------------------------------
  /** Imported bundles and coverage: {bundles: [...], covered, uncovered, problems}. */
  bundles() { return this.client.listBundles(); }
  /** The BundleReport of a bundle file on the server (bad content is in `problems`, not thrown). */
  bundleVerify(path) { return this.client.verifyBundle(path); }
  /** What importing it would add per store (refused with a coded error for a bad bundle). */
  bundlePreview(path) { return this.client.previewBundle(path); }

  // --- snapshots -----------------------------------------------------------------------------
  async snapshots() {
    const d = await this.client.listSnapshots();
    return Array.isArray(d) ? d : d.snapshots || d.items || [];
  }
  async snapshotSave(name) { return this._resultOf(await this.client.saveSnapshot(name ? { name } : {})); }
  snapshotShow(name) { return this.client.getSnapshot(name); }
  async snapshotDiff(name) {
    const d = await this.client.diffSnapshot(name);
    return d && d.diff ? d.diff : d;
  }
  /**
   * The restore plan (a dry run: nothing changes), whether the server answers it or queues it:
   * {plan, blockers} where blockers are coded errors that would stop the restore before it starts.
   */
  async snapshotPlan(name) {
    const d = await this._resultOf(await this.client.restoreSnapshot(name, { dryRun: true }));
    return { plan: d && d.plan ? d.plan : d, blockers: (d && Array.isArray(d.blockers)) ? d.blockers : [] };
  }
  /** Start the restore; resolves to its task (progress arrives as events). */
  async snapshotRestore(name) {
    const d = await this.client.restoreSnapshot(name, { dryRun: false });
    return taskOf(d) || d;
  }
  snapshotRemove(name) { return this.client.removeSnapshot(name); }

  // --- settings ------------------------------------------------------------------------------
  async settings() {
    const d = await this.client.getConfig();
    const list = (d.settings || []).map((s) => ({ ...s, source: s.origin || s.source, editable: s.writable }));
    const db = list.find((s) => s.key === "db_mode");
    if (db && this.dbMode === undefined) this.dbMode = db.value;
    list.problems = d.problems || [];  // repeated sections/keys in config.ini, values skipped in a shared file
    list.notes = d.notes || [];
    return list;
  }
  channels() { return this.client.getChannels(); }
  async setSetting(key, value) {
    if (key === "network_mode") return this.client.setNetwork(value);
    const d = await this.client.setConfig({ [key]: value });
    if (key === "db_mode") this.dbMode = value;
    return d;
  }
  selectChannel(name) { return this.client.setChannel({ name }); }
  reboot() { return this.client.reboot(); }

  /** The answer itself, or, when the server queued a task, that task's result once it ends. */
  async _resultOf(d, { pollMs = 150, timeoutMs = 120000 } = {}) {
    let task = taskOf(d);
    if (!task) return d;
    const until = Date.now() + timeoutMs;
    while (!FINAL.has(task.state)) {
      if (Date.now() > until) throw { code: "request_timeout", message: `task ${task.id} did not finish`, hint: "See the queue in the status bar." };
      await new Promise((r) => setTimeout(r, pollMs));
      task = await this.client.getTask(task.id);
    }
    if (task.state !== "done") throw task.error || { code: `task_${task.state}`, message: `task ${task.id} ${task.state}` };
    return task.result || {};
  }

  /** Call `fn` when the host's socket reconnects (ComfyUI restarted); returns an unsubscribe function. */
  onReconnect(fn) {
    const handler = () => fn();
    this.client.addEventListener("reconnected", handler);
    return () => { try { this.client.removeEventListener("reconnected", handler); } catch (err) { console.warn(err); } };
  }

  /** Follow queue events; returns an unsubscribe function. */
  onEvent(fn) {
    const handler = (e) => fn(e.detail);
    this.client.addEventListener(EVENT, handler);
    return () => { try { this.client.removeEventListener(EVENT, handler); } catch (err) { console.warn(err); } };
  }
}
