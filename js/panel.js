// The panel's entry for pages other than ComfyUI (the standalone server's page imports this and
// calls mountStandalone). No ComfyUI shim is imported here, and importing this module does
// nothing: ComfyUI imports every .js file of the extension, this one included.

import { Backend } from "./panel/backend.js";
import { createPanel } from "./panel/index.js";

export { Backend } from "./panel/backend.js";
export { createPanel, Panel } from "./panel/index.js";

/**
 * Fill `root` with the panel, full page.
 * @param {HTMLElement} root
 * @param {import("./api-client.js").OfflineManagerClient} client
 * @param {object} [api]  the page's api object (unused beyond the client; kept for symmetry)
 * @returns {Promise<import("./panel/index.js").Panel>}
 */
export async function mountStandalone(root, client, api) {
  const panel = createPanel({ backend: new Backend(client), title: "ComfyUI Offline Manager" });
  panel.closeBtn.hidden = true;   // nothing to close to: the page is the panel
  root.textContent = "";
  root.classList.add("om-standalone");
  root.appendChild(panel.root);
  if (typeof window !== "undefined") window.offlineManager = { ...(window.offlineManager || {}), panel, client, api };
  await panel.open("nodes");
  return panel;
}
