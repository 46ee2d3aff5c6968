// The standalone server's page (cm-cli.py serve): the `api` object the panel expects from
// ComfyUI (fetchApi and socket events), over fetch and the server's /ws, then the panel
// full-page. Importing this module does nothing, because ComfyUI imports every .js file of the
// extension, this one included: the page calls startStandalone().

import { OfflineManagerClient } from "./api-client.js";

/** ComfyUI's `api`, as far as the panel uses it: fetchApi(path, init) and events from the socket. */
export class StandaloneApi extends EventTarget {
  constructor() { super(); this.apiBase = "/api"; this.clientId = undefined; this.connect(); }
  fetchApi(path, init) { return fetch(this.apiBase + path, init); }
  connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.onmessage = (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type === "status" && msg.data && msg.data.sid) this.clientId = msg.data.sid;
      this.dispatchEvent(new CustomEvent(msg.type, { detail: msg.data }));
    };
    ws.onclose = () => setTimeout(() => this.connect(), 1000);
  }
}

/**
 * Mount the panel into `root`; without the panel module, a one-line status instead.
 * @param {HTMLElement} root
 */
export async function startStandalone(root) {
  const api = new StandaloneApi();
  const client = new OfflineManagerClient(api);
  window.offlineManager = { api, client };
  try {
    const panel = await import("./panel.js");          // the panel module, when this build has it
    await panel.mountStandalone(root, client, api);
  } catch (err) {
    const status = await client.getStatus();
    root.textContent = `Offline Manager ${status.version}: network ${status.network_mode}, ` +
      `channel ${status.channel_url}. API: ${location.origin}/offline-manager/v1/openapi.json`;
  }
}
