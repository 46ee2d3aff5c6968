// Settings: network mode, channel and DB mode are changed here; every other setting is shown
// read-only with where its value comes from (security settings are changed in config.ini with
// ComfyUI stopped, never from a web page).

import { el, replace, clear } from "../dom.js";
import { errorBox } from "../errors.js";

const EDITABLE = ["network_mode", "db_mode"];
const CHOICES = { network_mode: ["public", "private", "offline"], db_mode: ["cache", "local", "remote"] };

/** Settings answer -> [{key, value, source, help, section, choices, secret}] (list or map accepted). */
export function normaliseSettings(res) {
  const list = Array.isArray(res) ? res : Array.isArray(res?.settings) ? res.settings
    : Object.entries(res?.values || res || {}).map(([key, value]) => ({ key, value }));
  return list.map((s) => ({ key: String(s.key), value: s.value, source: s.source || s.origin || "",
    help: s.help || "", section: s.section || "default", choices: s.choices || CHOICES[s.key] || null,
    secret: !!s.secret, editable: s.editable }));
}

const show = (v) => Array.isArray(v) ? v.join(", ") : v === null || v === undefined ? "" : String(v);

export class SettingsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.errors = el("div", { class: "om-errors" });
    this.form = el("div", { class: "om-form", dataset: { testid: "settings-form" } });
    this.others = el("tbody");
    this.problems = el("div", { class: "om-problems", dataset: { testid: "config-problems" } });
    this.doctor = el("div", { class: "om-doctor", dataset: { testid: "doctor" } });
    this.root = el("div", { class: "om-view om-settings", dataset: { view: "settings" } },
      this.errors, this.problems,
      el("div", { class: "om-section" },
        el("h3", { text: "Network and data" }), this.form,
        el("h3", { text: "All settings (read-only here)" }),
        el("table", { class: "om-table" },
          el("thead", {}, el("tr", {}, el("th", {}, "Setting"), el("th", {}, "Value"), el("th", {}, "Source"))),
          this.others)),
      el("div", { class: "om-section" }, el("h3", { text: "Doctor (pre-deploy checklist)" }), this.doctor));
  }

  async load() {
    try {
      const [settings, channels] = await Promise.all([this.ctx.backend.settings(),
        this.ctx.backend.channels().catch(() => null)]);
      this.render(normaliseSettings(settings), channels);
      this.renderProblems(settings?.problems || [], settings?.notes || []);
      clear(this.errors);
    } catch (err) {
      replace(this.errors, errorBox(err));
    }
    await this.loadDoctor();
  }

  /** The same checklist as `cm-cli.py doctor`: one row per check, its status and its fix. */
  async loadDoctor() {
    replace(this.doctor, el("div", { class: "om-help", text: "Running the checks…" }));
    try {
      const report = await this.ctx.backend.client.getDoctor();
      const counts = report.counts || {};
      const rows = (report.checks || []).map((c) => el("tr", { class: `om-doctor-${c.status}`,
        dataset: { check: c.id, status: c.status } },
        el("td", { class: "om-label", text: c.status.toUpperCase() }),
        el("td", { text: c.title }),
        el("td", {}, el("div", { text: c.detail }),
          c.fix && c.status !== "pass" ? el("div", { class: "om-help", text: `Fix: ${c.fix}` }) : null)));
      replace(this.doctor,
        el("div", { class: "om-help", dataset: { testid: "doctor-summary" },
          text: `${report.status.toUpperCase()}: ${counts.pass || 0} pass, ${counts.warn || 0} warn, ${counts.fail || 0} fail` }),
        el("table", { class: "om-table" },
          el("thead", {}, el("tr", {}, el("th", {}, "Status"), el("th", {}, "Check"), el("th", {}, "Detail and fix"))),
          el("tbody", {}, rows)));
    } catch (err) {
      replace(this.doctor, errorBox(err));
    }
  }

  render(settings, channels) {
    this.settings = settings;
    const byKey = new Map(settings.map((s) => [s.key, s]));
    const rows = [];
    for (const key of EDITABLE) {
      const s = byKey.get(key);
      if (!s) continue;
      const select = el("select", { class: "om-select", dataset: { setting: key, testid: `setting-${key}` } },
        (s.choices || []).map((c) => el("option", { value: c }, c)));
      select.value = show(s.value);
      select.disabled = s.editable === false;
      select.addEventListener("change", () => this.save(key, select.value, select));
      rows.push(el("label", { text: key }), select, s.help ? el("div", { class: "om-help", text: `${s.help}${s.source ? ` (now from ${s.source})` : ""}` }) : null);
    }
    const list = channels ? (Array.isArray(channels) ? channels : channels.channels || []) : [];
    if (list.length) {
      const active = channels.active?.name || channels.selected || byKey.get("channel_url")?.value;
      const select = el("select", { class: "om-select", dataset: { setting: "channel", testid: "setting-channel" } },
        list.map((c) => el("option", { value: c.name }, `${c.name} — ${c.url}`)));
      const hit = list.find((c) => c.active || c.name === active || c.url === active);
      if (hit) select.value = hit.name;
      else {
        // channel_url names a channel outside channels.list: show it as it is, not as the first entry
        const url = channels.channel_url || byKey.get("channel_url")?.value || "";
        const custom = el("option", { value: "", disabled: true }, `custom — ${url}`);
        select.prepend(custom);
        custom.selected = true;
      }
      select.addEventListener("change", () => this.saveChannel(select.value, select));
      rows.push(el("label", { text: "channel" }), select,
        el("div", { class: "om-help", text: "Where the node pack and model lists come from (channels.list)." }));
    }
    replace(this.form, ...rows);
    replace(this.others, settings.map((s) => el("tr", { dataset: { setting: s.key } },
      el("td", { title: s.help }, el("code", { text: s.key })),
      el("td", { text: s.secret ? "(hidden)" : show(s.value) }),
      el("td", { class: "om-label", text: s.source }))));
  }

  /** What config.ini got wrong (a repeated [default], a key set twice): message and fix, never hidden. */
  renderProblems(problems, notes) {
    const rows = problems.map((p) => el("div", { class: "om-error", dataset: { code: p.code || "" } },
      el("b", { text: p.message || String(p) }), p.hint ? el("div", { class: "om-help", text: `Fix: ${p.hint}` }) : null));
    const info = notes.map((n) => el("div", { class: "om-help", text: String(n) }));
    if (!rows.length && !info.length) { clear(this.problems); return; }
    replace(this.problems, rows.length ? el("h3", { text: "Problems in the config file" }) : null, ...rows, ...info);
  }

  async save(key, value, control) {
    control.disabled = true;
    try {
      await this.ctx.backend.setSetting(key, value);
      this.ctx.notify("success", "Setting saved", `${key} = ${value}`);
      clear(this.errors);
      await this.ctx.refreshStatus();
      if (key === "db_mode") this.ctx.reloadData();
    } catch (err) {
      replace(this.errors, errorBox(err));
      this.ctx.report(err);
    } finally {
      control.disabled = false;
      await this.load();
    }
  }

  async saveChannel(name, control) {
    control.disabled = true;
    try {
      await this.ctx.backend.selectChannel(name);
      clear(this.errors);
      await this.ctx.refreshStatus();
      this.ctx.reloadData();
    } catch (err) {
      replace(this.errors, errorBox(err));
      this.ctx.report(err);
    } finally {
      control.disabled = false;
    }
  }
}
