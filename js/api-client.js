// The one client of the Offline Manager API that the panel uses.
//
// Give it ComfyUI's `api` (from scripts/api.js) or the standalone page's shim: any object with
// fetchApi(path, init) (which adds the /api prefix) and addEventListener(type, fn). One method per
// route under /offline-manager/v1; each resolves to the envelope's `data` or throws a
// ManagerApiError carrying the error's code, message and hint. A test checks these methods
// against the server's route table and docs/openapi.json, so keep one `return this._call(...)`
// per method.
//
// Importing this module has no side effects (ComfyUI imports every .js file of the extension).

export const PREFIX = "/offline-manager/v1";
export const EVENT = "offline-manager.event";      // every queue event: {event, task_id, client_id, seq, at, data}
export const CLASSIC_EVENT = "cm-queue-status";    // classic progress messages (in_progress, done)

export class ManagerApiError extends Error {
  constructor(error, status) {
    super(error && error.message ? error.message : `request failed with status ${status}`);
    this.name = "ManagerApiError";
    this.code = (error && error.code) || `http_${status}`;
    this.hint = (error && error.hint) || "";
    this.details = (error && error.details) || {};
    this.status = status;
  }
}

const enc = encodeURIComponent;

export class OfflineManagerClient {
  constructor(api) {
    if (!api || typeof api.fetchApi !== "function") {
      throw new TypeError("OfflineManagerClient needs an object with fetchApi(path, init)");
    }
    this.api = api;
  }

  addEventListener(type, listener, options) { return this.api.addEventListener(type, listener, options); }
  removeEventListener(type, listener, options) { return this.api.removeEventListener(type, listener, options); }
  get clientId() { return this.api.clientId || this.api.initialClientId || undefined; }

  async _call(method, path, { query, body, etag, tagged = false } = {}) {
    let url = PREFIX + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
      }
      const text = params.toString();
      if (text) url += `?${text}`;
    }
    const init = { method, headers: {} };
    if (etag) init.headers["If-None-Match"] = etag;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await this.api.fetchApi(url, init);
    if (tagged && res.status === 304) return { notModified: true, etag };
    const text = await res.text();
    let payload = null;
    try { payload = text ? JSON.parse(text) : null; } catch (_) { payload = null; }
    if (payload && payload.ok === false) throw new ManagerApiError(payload.error, res.status);
    if (!res.ok) throw new ManagerApiError({ message: text.slice(0, 300) }, res.status);
    const data = payload && payload.ok === true ? payload.data : payload;
    return tagged ? { data, etag: res.headers.get("ETag") || "" } : data;
  }

  // --- status and catalog ---------------------------------------------------------------------
  getStatus() { return this._call("GET", `/status`); }
  getOpenapi() { return this._call("GET", `/openapi.json`); }
  // `tagged` or `etag`: {data, etag}; with `etag`, {notModified: true} while the server's list is that one (304)
  listPacks({ mode, etag, tagged } = {}) { return this._call("GET", `/packs`, { query: { mode }, etag, tagged: !!(tagged || etag) }); }
  getPack(id) { return this._call("GET", `/packs/${enc(id)}`); }
  getPackVersions(id) { return this._call("GET", `/packs/${enc(id)}/versions`); }
  listInstalled() { return this._call("GET", `/installed`); }
  findNodeType(name) { return this._call("GET", `/node-types/${enc(name)}`); }
  // workflow: the workflow JSON, or {workflow, prefer?, choices?, known_types?} (docs/api.md)
  workflowMissing(workflow) { return this._call("POST", `/workflow/missing`, { body: workflow }); }
  listModels({ mode } = {}) { return this._call("GET", `/models`, { query: { mode } }); }
  verifyModels({ sha256 } = {}) { return this._call("GET", `/models/verify`, { query: { sha256 } }); }

  // --- queue ------------------------------------------------------------------------------------
  getQueue({ clientId, history } = {}) {
    return this._call("GET", `/queue`, { query: { client_id: clientId, history } });
  }
  // tasks: one {kind, target, params, task_id?} or an array of them; resolves to {tasks, started};
  // dryRun: nothing is queued, resolves to {dry_run, plans: [one plan record per task]} (docs/api.md)
  // Inside ComfyUI an update/reinstall/switch_version of a loaded pack is scheduled for the next
  // start instead: the answer then holds {scheduled: [...], after_restart: "..."}, also handed to
  // every onScheduled(fn) listener (the panel shows it).
  enqueue(tasks, { start = true, dryRun = false } = {}) {
    return this._call("POST", `/queue`, { body: { tasks: [].concat(tasks), start, client_id: this.clientId, ...(dryRun ? { dry_run: true } : {}) } })
      .then((d) => {
        if (d && Array.isArray(d.scheduled) && d.scheduled.length) {
          for (const fn of this._scheduledListeners || []) { try { fn(d); } catch (_e) { /* a listener must not break the call */ } }
        }
        return d;
      });
  }
  onScheduled(fn) {
    (this._scheduledListeners = this._scheduledListeners || []).push(fn);
    return () => { this._scheduledListeners = this._scheduledListeners.filter((f) => f !== fn); };
  }
  startQueue() { return this._call("POST", `/queue/start`); }
  resetQueue() { return this._call("POST", `/queue/reset`); }
  getTask(id) { return this._call("GET", `/tasks/${enc(id)}`); }
  cancelTask(id) { return this._call("POST", `/tasks/${enc(id)}/cancel`); }

  // --- trash ------------------------------------------------------------------------------------
  // resolves to {entries: [{id, name, original, trashed_at, reason, pack_id, version, commit, size_bytes}],
  // count, total_bytes, path}; restore/empty are the queued kinds restore_trash / empty_trash
  listTrash() { return this._call("GET", `/trash`); }

  // --- offline bundles --------------------------------------------------------------------------
  // a bundle file the server can read (absolute path); the import is the queued kind bundle_import
  listBundles() { return this._call("GET", `/bundles`); }
  verifyBundle(path) { return this._call("POST", `/bundles/verify`, { body: { path } }); }
  previewBundle(path) { return this._call("POST", `/bundles/preview`, { body: { path } }); }

  // --- snapshots --------------------------------------------------------------------------------
  listSnapshots() { return this._call("GET", `/snapshots`); }
  // resolves to the stored entry {name, path, created_at, summary, ...}
  saveSnapshot({ name, overwrite, hashModels } = {}) {
    return this._call("POST", `/snapshots`, { body: { name, overwrite, hash_models: hashModels } });
  }
  currentSnapshot() { return this._call("GET", `/snapshots/current`); }
  getSnapshot(name) { return this._call("GET", `/snapshots/${enc(name)}`); }
  // against: "current" (default) or another snapshot's name; resolves to {name, against, diff}
  diffSnapshot(name, { against } = {}) {
    return this._call("GET", `/snapshots/${enc(name)}/diff`, { query: { against } });
  }
  // dryRun: resolves to {plan, blockers, policy}; atNextStart: {scheduled}; else {task, started} (queued)
  restoreSnapshot(name, { dryRun = false, atNextStart = false, options } = {}) {
    return this._call("POST", `/snapshots/${enc(name)}/restore`,
      { body: { dry_run: dryRun, at_next_start: atNextStart, options, client_id: this.clientId } });
  }
  removeSnapshot(name) { return this._call("POST", `/snapshots/${enc(name)}/remove`); }

  // --- ComfyUI start: import failures, operations for the next start ---------------------------
  listImportFailures() { return this._call("GET", `/import-failures`); }
  getStartup() { return this._call("GET", `/startup`); }
  // action: uninstall | disable | enable | snapshot_restore; resolves to {scheduled}
  scheduleAtStartup(action, target, params = {}) {
    return this._call("POST", `/startup`, { body: { action, target, params } });
  }
  cancelAtStartup(id) { return this._call("POST", `/startup/${enc(id)}/cancel`); }

  // --- settings, channels, cache, policy -------------------------------------------------------
  getConfig() { return this._call("GET", `/config`); }
  setConfig(changes) { return this._call("POST", `/config`, { body: { changes } }); }
  getNetwork() { return this._call("GET", `/network`); }
  setNetwork(mode) { return this._call("POST", `/network`, { body: { mode } }); }
  getChannels() { return this._call("GET", `/channels`); }
  setChannel({ name, url } = {}) { return this._call("POST", `/channels`, { body: { name, url } }); }
  getCache() { return this._call("GET", `/cache`); }
  refreshCache() { return this._call("POST", `/cache/refresh`); }
  getPolicy() { return this._call("GET", `/policy`); }
  // the pre-deploy checklist: {status, ok, counts, checks: [{id, status, title, detail, fix}]}
  getDoctor({ online } = {}) { return this._call("GET", `/doctor`, { query: { online } }); }
  reboot() { return this._call("POST", `/reboot`); }
}
