// Search, filter and sort over the whole pack list, in the page, on every keystroke.
// Sort orders are computed once per data load; a keystroke is one linear scan over
// precomputed lower-case text (or over the previous result when the query only grew),
// so 5.9k packs filter in about a millisecond. Queries of one-char terms (the first keystroke,
// which scans every pack) read a per-character index built at idle time instead.

export const FILTERS = [
  ["all", "All"], ["installed", "Installed"], ["not-installed", "Not installed"],
  ["disabled", "Disabled"], ["update", "Update available"], ["import-failed", "Import failed"],
];
export const SORTS = [["stars", "Stars"], ["name", "Name"], ["updated", "Updated"]];

const truthy = (v) => v === true || v === "true" || v === "True" || v === 1;

/**
 * One catalog row as the server sends it -> the fields the panel uses. Accepts the v1 shape
 * (catalog record + `installed: null | {enabled, version, ...}`) and the classic one (`state`).
 */
export function normalisePack(raw, key) {
  const inst = raw.installed && typeof raw.installed === "object" ? raw.installed : null;
  const state = inst ? (inst.enabled ? "enabled" : "disabled")
    : String(raw.state || (raw.installed === true ? "enabled" : "not-installed"));
  const stars = Number(raw.stars);
  return {
    id: String(raw.id || key || raw.title || ""),
    title: String(raw.title || raw.name || raw.id || key || ""),
    author: String(raw.author || ""),
    description: String(raw.description || ""),
    reference: String(raw.reference || raw.repository || ""),
    stars: Number.isFinite(stars) && stars >= 0 ? stars : -1,
    lastUpdate: String(raw.last_update || ""),
    state,
    installed: state === "enabled" || state === "disabled",
    version: String((inst ? inst.version : raw.active_version || (state !== "not-installed" ? raw.version : "")) || ""),
    latest: String(raw.latest_version || raw.cnr_latest || ""),
    updateAvailable: truthy(raw.update_available ?? inst?.update_available ?? raw["update-state"])
      || registryUpdate(inst, raw.latest_version || raw.cnr_latest),
    importFailed: truthy(raw.import_failed ?? inst?.import_failed ?? raw["import-fail"]),
    installType: String(raw.install_type || ""),
    raw,
  };
}

/** "1.10.2" < "1.9" is false: compare dotted numbers; null when either is not a plain version. */
export function versionLess(a, b) {
  const pa = /^v?\d+(\.\d+)*$/.test(a) ? a.replace(/^v/, "").split(".").map(Number) : null;
  const pb = /^v?\d+(\.\d+)*$/.test(b) ? b.replace(/^v/, "").split(".").map(Number) : null;
  if (!pa || !pb) return null;
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] || 0, y = pb[i] || 0;
    if (x !== y) return x < y;
  }
  return false;
}

// A registry pack whose installed version is older than the catalog's latest. Git packs need a
// fetch to know, which no list route does: the server's own flag is used when it sends one.
function registryUpdate(inst, latest) {
  if (!inst || !latest || !inst.version || (inst.kind && inst.kind !== "cnr")) return false;
  return versionLess(String(inst.version), String(latest)) === true;
}

function matchesFilter(p, filter) {
  switch (filter) {
    case "installed": return p.installed;
    case "not-installed": return !p.installed;
    case "disabled": return p.state === "disabled";
    case "update": return p.installed && p.updateAvailable;
    case "import-failed": return p.importFailed;
    default: return true;
  }
}

export function splitTerms(text) {
  return String(text || "").toLowerCase().split(/\s+/).filter(Boolean);
}

export class PackIndex {
  constructor(packs = []) { this.setPacks(packs); }

  /**
   * Replace the data. Only what the first screen needs is computed now; the search text and
   * the other sort orders are built on first use or by `warm()` when the page is idle.
   */
  setPacks(packs) {
    this.packs = packs;
    this.hay = null;
    this.head = null;
    this.orders = {};
    this._names = null;
    this._last = null;
    this._chars = null;       // per-ASCII-char flags, complete (see _charStep)
    this._charWork = null;    // the flags while being built: { flags, next }
    this._none = null;
    this.version = (this.version || 0) + 1;
  }

  /** Build everything lazily built, at once (tests; the view uses `warmStep`). */
  warm() {
    while (!this.warmStep(Infinity));
  }

  /**
   * One slice of the idle-time work, stopping once `performance.now()` passes `deadline`:
   * search text, the sort orders, then the per-character index. True when all is built.
   */
  warmStep(deadline) {
    this._text();
    for (const [sort] of SORTS) {
      if (this.orders[sort]) continue;
      this.order(sort);
      if (performance.now() >= deadline) return false;
    }
    return this._charStep(deadline);
  }

  /**
   * Per-character index: for each ASCII char code c, a byte per pack (bit 1: c occurs in the
   * search text, bit 2: in the id/title). A query whose terms are all one char is then one pass
   * over the display order reading a byte per pack instead of a substring search per pack.
   */
  _charStep(deadline) {
    if (this._chars) return true;
    const n = this.packs.length, hay = this.hay, head = this.head;
    const work = this._charWork || (this._charWork = { flags: new Array(128).fill(null), next: 0 });
    const flags = work.flags;
    let i = work.next;
    while (i < n) {
      const stop = Math.min(n, i + 512);
      for (; i < stop; i++) {
        const s = hay[i], hl = head[i].length, len = s.length;
        for (let j = 0; j < len; j++) {
          const c = s.charCodeAt(j);
          if (c >= 128) continue;
          const f = flags[c] || (flags[c] = new Uint8Array(n));
          f[i] |= j < hl ? 3 : 1;
        }
      }
      if (i < n && performance.now() >= deadline) { work.next = i; return false; }
    }
    this._chars = flags;
    this._charWork = null;
    return true;
  }

  /** The per-char flags of each term when every term is one indexed char, else null. */
  _charTerms(terms) {
    const chars = this._chars;
    if (!chars || !terms.length) return null;
    const out = [];
    for (const t of terms) {
      const c = t.length === 1 ? t.charCodeAt(0) : 128;
      if (c >= 128) return null;
      out.push(chars[c] || this._none || (this._none = new Uint8Array(this.packs.length)));
    }
    return out;
  }

  _text() {
    if (this.hay) return;
    const packs = this.packs, n = packs.length;
    const hay = new Array(n), head = new Array(n);
    for (let i = 0; i < n; i++) {
      const p = packs[i];
      head[i] = (p.id + "\n" + p.title).toLowerCase();
      hay[i] = head[i] + "\n" + (p.author + "\n" + p.description).toLowerCase();
    }
    this.hay = hay;
    this.head = head;
  }

  /** Pack indices in `sort` order (stars, name or updated), computed once per data load. */
  order(sort) {
    if (this.orders[sort]) return this.orders[sort];
    const packs = this.packs;
    const ids = [...Array(packs.length).keys()];
    if (!this._names) this._names = packs.map((p) => p.title.toLowerCase());
    const name = this._names;
    const byName = (a, b) => (name[a] < name[b] ? -1 : name[a] > name[b] ? 1 : a - b);
    let out;
    if (sort === "name") out = ids.sort(byName);
    else if (sort === "updated") {
      out = ids.sort((a, b) => (packs[a].lastUpdate < packs[b].lastUpdate ? 1
        : packs[a].lastUpdate > packs[b].lastUpdate ? -1 : packs[b].stars - packs[a].stars || byName(a, b)));
    } else {
      sort = "stars";
      out = ids.sort((a, b) => packs[b].stars - packs[a].stars || byName(a, b));
    }
    this.orders[sort] = out;
    return out;
  }

  /** Mark one pack changed (state after an operation); keeps orders, drops the refine cache. */
  touched() { this._last = null; }

  /**
   * Indices into `packs`, in `sort` order, of the packs passing `filter` and containing every
   * term of `text`. With text, packs whose id/title hold every term come first.
   *
   * Returns an Int32Array view into buffers reused by the next call (no garbage per keystroke:
   * a collection landing in a keystroke would cost more than the search). Copy it to keep it.
   */
  query({ text = "", filter = "all", sort = "stars" } = {}) {
    const terms = splitTerms(text);
    const lower = String(text || "").toLowerCase();
    const key = filter + "\u0000" + sort;
    const last = this._last;
    // The query only grew: its matches are a subset of the last ones, in the same base order.
    const refine = !!(last && last.key === key && terms.length && last.text && lower.startsWith(last.text));
    const order = refine ? last.all : this.order(sort);
    if (terms.length) this._text();
    const n = this.packs.length;
    if (!this._bufs || this._bufs.n !== n) {
      this._bufs = { n, all: [new Int32Array(n), new Int32Array(n)], flip: 0, first: new Int32Array(n),
        rest: new Int32Array(n) };
    }
    const bufs = this._bufs;
    bufs.flip ^= 1;
    const all = bufs.all[bufs.flip], first = bufs.first, rest = bufs.rest;
    const hay = this.hay, head = this.head, packs = this.packs;
    const nt = terms.length;
    let na = 0, nf = 0, nr = 0;
    const cf = this._charTerms(terms);
    if (cf) {                                   // every term is one char: read the char index
      const nc = cf.length, f0 = cf[0];
      for (let k = 0; k < order.length; k++) {
        const i = order[k];
        if (!refine && filter !== "all" && !matchesFilter(packs[i], filter)) continue;
        let f = f0[i];
        for (let t = 1; t < nc && f; t++) f &= cf[t][i];
        if (!(f & 1)) continue;
        if (f & 2) first[nf++] = i; else rest[nr++] = i;
        all[na++] = i;
      }
      first.set(rest.subarray(0, nr), nf);
      this._last = { key, text: lower, all: all.subarray(0, na) };
      return first.subarray(0, nf + nr);
    }
    for (let k = 0; k < order.length; k++) {
      const i = order[k];
      if (!refine && filter !== "all" && !matchesFilter(packs[i], filter)) continue;
      if (nt) {
        const h = hay[i];
        let ok = true;
        for (let t = 0; t < nt; t++) { if (h.indexOf(terms[t]) === -1) { ok = false; break; } }
        if (!ok) continue;
        let inHead = true;
        const hd = head[i];
        for (let t = 0; t < nt; t++) { if (hd.indexOf(terms[t]) === -1) { inHead = false; break; } }
        if (inHead) first[nf++] = i; else rest[nr++] = i;
      } else {
        first[nf++] = i;
      }
      all[na++] = i;
    }
    first.set(rest.subarray(0, nr), nf);      // the tiered result: head matches, then the rest
    this._last = { key, text: lower, all: all.subarray(0, na) };
    return first.subarray(0, nf + nr);
  }
}
