// ComfyUI entry of the Offline Manager: registers a command, a top-menu entry, an action-bar
// button and (where the frontend has them) a sidebar tab, all opening the panel. The panel
// talks to the server only through the api client over ComfyUI's `api`.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { EVENT, OfflineManagerClient } from "./api-client.js";
import { Backend } from "./panel/backend.js";
import { createPanel, ensureStyles } from "./panel/index.js";

export const EXTENSION_NAME = "OfflineManager.Panel";
export const COMMAND_ID = "OfflineManager.OpenPanel";
const ICON = "pi pi-box";
export const ENTRY_LABEL = "Offline Manager";      // never "Manager": the classic manager's button says that

const PRELOAD_SETTING = "OfflineManager.PreloadList";
const PRELOAD_DELAY_MS = 3000;

let backend = null;
let panel = null;
let overlay = null;

function getBackend() {
  if (!backend) backend = new Backend(new OfflineManagerClient(api));
  return backend;
}

/** Fetch the pack list ahead of a click (cached copy only), unless the panel already has it. */
function preload() {
  if (panel && panel.views.nodes.loaded) return;
  getBackend().prefetch();
}

function preloadEnabled() {
  try {
    const setting = app.extensionManager && app.extensionManager.setting;
    return !setting || typeof setting.get !== "function" || setting.get(PRELOAD_SETTING) !== false;
  } catch (err) {
    return true;
  }
}

function comfyToast(severity, summary, detail) {
  const toast = app.extensionManager && app.extensionManager.toast;
  if (!toast || typeof toast.add !== "function") throw new Error("no toast service");
  const sev = { warning: "warn" }[severity] || severity;
  toast.add({ severity: sev, summary, detail, life: sev === "error" ? 8000 : 3000 });
}

function ensurePanel() {
  if (panel) return panel;
  panel = createPanel({ backend: getBackend(), host: { toast: comfyToast } });
  overlay = document.createElement("div");
  overlay.className = "om-overlay";
  overlay.hidden = true;
  overlay.dataset.testid = "offline-manager-overlay";
  const dialog = document.createElement("div");
  dialog.className = "om-dialog";
  dialog.setAttribute("role", "dialog");
  dialog.setAttribute("aria-label", "Offline Manager");
  dialog.appendChild(panel.root);
  overlay.appendChild(dialog);
  overlay.addEventListener("mousedown", (e) => { if (e.target === overlay) closePanel(); });
  // Keys typed in the panel are ours: the graph canvas must not act on them.
  overlay.addEventListener("keydown", (e) => {
    if (e.key === "Escape") closePanel();
    e.stopPropagation();
  });
  panel.onClose = closePanel;
  document.body.appendChild(overlay);
  return panel;
}

/** Show the panel (building it on first use) on `tab` (nodes, models, snapshots, settings). */
export async function openPanel(tab) {
  const p = ensurePanel();
  overlay.hidden = false;
  const opened = p.open(tab);
  requestAnimationFrame(() => p.views.nodes.search.focus({ preventScroll: true }));
  await opened;
  return p;
}

export function closePanel() {
  if (overlay) overlay.hidden = true;
}

export function togglePanel() {
  if (overlay && !overlay.hidden) closePanel();
  else openPanel();
}

function renderLauncher(el) {
  el.textContent = "";
  const box = document.createElement("div");
  box.className = "om-launcher";
  const text = document.createElement("div");
  text.textContent = "Install, update and snapshot custom node packs and models, online or offline.";
  const button = document.createElement("button");
  button.className = "p-button p-component";
  button.textContent = "Open Offline Manager";
  button.dataset.testid = "offline-manager-launcher";
  button.addEventListener("click", () => openPanel());
  box.append(text, button);
  el.appendChild(box);
}

/**
 * Frontends before `actionBarButtons` (1.27 in ComfyUI 0.3.64) show no entry of ours in the top
 * bar: put our own button there. Where the frontend renders its own entry (it may do so after
 * setup), ours is removed again, so there is only ever one.
 */
function ensureEntryButton() {
  const native = () => document.querySelector(".offline-manager-entry:not(.om-entry-fallback)");
  const place = () => {
    if (native() || document.querySelector(".om-entry-fallback")) return;
    const bar = document.querySelector(".comfyui-menu-right") || document.querySelector(".comfyui-menu")
      || document.querySelector(".comfy-menu");
    if (!bar) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "offline-manager-entry om-entry-fallback p-button p-component p-button-text";
    button.setAttribute("aria-label", ENTRY_LABEL);
    button.title = ENTRY_LABEL;
    const icon = document.createElement("i");
    icon.className = ICON;
    const text = document.createElement("span");
    text.textContent = ENTRY_LABEL;
    button.append(icon, " ", text);
    button.addEventListener("click", () => togglePanel());
    bar.prepend(button);
  };
  const observer = new MutationObserver(() => {
    const fallback = document.querySelector(".om-entry-fallback");
    if (fallback && native()) fallback.remove();
  });
  observer.observe(document.body, { subtree: true, childList: true });
  setTimeout(() => observer.disconnect(), 15000);
  for (const ms of [1500, 5000]) setTimeout(place, ms);
}

app.registerExtension({
  name: EXTENSION_NAME,
  commands: [{ id: COMMAND_ID, label: ENTRY_LABEL, icon: ICON, tooltip: "Node packs, models and snapshots",
    function: () => togglePanel() }],
  menuCommands: [{ path: ["Extensions"], commands: [COMMAND_ID] }],
  // The frontend shows `label` and uses `tooltip || label` as the accessible name: both say
  // "Offline Manager", so the button is told apart from the classic manager's "Manager".
  actionBarButtons: [{ icon: ICON, label: ENTRY_LABEL, tooltip: ENTRY_LABEL, class: "offline-manager-entry",
    onClick: () => togglePanel() }],
  settings: [{ id: PRELOAD_SETTING, name: "Preload the node pack list in the background (cached copy, no network)",
    category: ["Offline Manager", "Panel", "Preload"], type: "boolean", defaultValue: true,
    tooltip: "Opening the Manager then shows its list at once. Turn off on slow links to the server." }],
  async setup() {
    // Pointing at an entry is intent: start the list download before the click lands.
    document.addEventListener("pointerover", (e) => {
      if (e.target && e.target.closest && e.target.closest(".offline-manager-entry, [data-testid=offline-manager-tab-button]")) preload();
    }, { passive: true });
    if (preloadEnabled()) {
      const idle = typeof requestIdleCallback === "function" ? (fn) => requestIdleCallback(fn, { timeout: 5000 }) : (fn) => fn();
      setTimeout(() => idle(preload), PRELOAD_DELAY_MS);
    }
    // The frontend logs every server message nobody listens to; our queue events arrive while
    // the panel is closed too (another tab or the shell queued work), so someone always listens.
    api.addEventListener(EVENT, () => {});
    ensureStyles();   // ready before the first click
    const em = app.extensionManager;
    if (em && typeof em.registerSidebarTab === "function") {
      em.registerSidebarTab({ id: "offline-manager", icon: ICON, title: ENTRY_LABEL, tooltip: ENTRY_LABEL,
        type: "custom", render: renderLauncher });
    }
    window.offlineManager = { open: openPanel, close: closePanel, get panel() { return panel; } };
    ensureEntryButton();
  },
});
