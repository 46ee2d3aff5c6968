"""The ComfyUI entry module in a minimal host page that provides ComfyUI's ``app``/``api`` modules.

The page defines ``window.comfyAPI`` the way the frontend bundle does, so the wheel's real
``/scripts/app.js`` and ``/scripts/api.js`` shims resolve to a recording ``app`` and an ``api``
whose ``fetchApi`` reaches our real routes (same origin, ``/api`` prefix). Our other modules are
imported first, the way ComfyUI imports every .js file of an extension: none may act on import.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser.pages import PanelEnv, screenshot

from support.standin_host import StandInComfy

pytestmark = pytest.mark.browser

MINIMAL_HOST = """<!doctype html><html><head><meta charset="utf-8"><title>minimal host</title></head>
<body><div id="sidebar"></div>
<script>
  window.__registered = []; window.__sidebar = []; window.__toasts = [];
  const bus = new EventTarget();
  const api = {
    clientId: "minimal-host",
    fetchApi: (path, init) => fetch("/api" + path, init),
    addEventListener: (type, fn) => bus.addEventListener(type, fn),
    removeEventListener: (type, fn) => bus.removeEventListener(type, fn),
    emit: (type, detail) => bus.dispatchEvent(new CustomEvent(type, { detail })),
  };
  const app = {
    registerExtension(ext) { window.__registered.push(ext); },
    extensionManager: {
      registerSidebarTab(tab) { window.__sidebar.push(tab); },
      toast: { add(message) { window.__toasts.push(message); } },
    },
  };
  window.comfyAPI = { app: { app, ComfyApp: function ComfyApp() {}, sanitizeNodeName: (s) => s },
                      api: { api, ComfyApi: function ComfyApi() {},
                             UnauthorizedError: Error, PromptExecutionError: Error } };
  window.__hostApi = api;
</script>
</body></html>"""


@pytest.fixture
def minimal_host(panel_env: PanelEnv) -> Iterator[StandInComfy]:
    with StandInComfy(panel_env.root, pages={"/minimal-host.html": ("text/html", MINIMAL_HOST)}) as host:
        yield host


def test_every_module_is_inert_on_import_and_main_registers_the_entry(page: Any, minimal_host: StandInComfy) -> None:
    page.goto(minimal_host.url("/minimal-host.html"))
    ours = [p for p in minimal_host.extension_list() if p.startswith(f"/extensions/{minimal_host.extension_name}/")]
    assert any(p.endswith("/main.js") for p in ours) and any("/panel/" in p for p in ours)

    # ComfyUI imports every listed .js: all but main.js must do nothing when imported.
    others = [p for p in ours if not p.endswith("/main.js")]
    effects = page.evaluate(
        """async (paths) => {
        const before = document.body.innerHTML, heads = document.head.children.length;
        for (const p of paths) await import(p);
        return { body: document.body.innerHTML === before, head: document.head.children.length === heads,
                 registered: window.__registered.length, global: typeof window.offlineManager };
    }""",
        others,
    )
    assert effects == {"body": True, "head": True, "registered": 0, "global": "undefined"}, effects

    main = next(p for p in ours if p.endswith("/main.js"))
    ext = page.evaluate(
        """async (main) => {
        await import(main);
        const ext = window.__registered[0];
        return { count: window.__registered.length, name: ext.name,
                 commands: ext.commands.map((c) => ({ id: c.id, label: c.label, fn: typeof c.function })),
                 menu: ext.menuCommands, buttons: ext.actionBarButtons.map((b) => ({ label: b.label,
                   tooltip: b.tooltip, cls: b.class, fn: typeof b.onClick })), setup: typeof ext.setup };
    }""",
        main,
    )
    assert ext["count"] == 1 and ext["name"] == "OfflineManager.Panel"
    command_ids = {c["id"] for c in ext["commands"]}
    assert ext["commands"][0]["fn"] == "function" and ext["commands"][0]["label"]
    assert all(cid in command_ids for m in ext["menu"] for cid in m["commands"])  # menu ids must be ours
    # told apart from the classic manager's "Manager" button: label and accessible name (the tooltip)
    assert ext["buttons"] == [
        {"label": "Offline Manager", "tooltip": "Offline Manager", "cls": "offline-manager-entry", "fn": "function"}
    ]
    assert ext["setup"] == "function"

    # setup() adds the sidebar tab; its launcher opens the panel, which lists the real DB.
    page.evaluate("""async () => {
        await window.__registered[0].setup();
        window.__sidebar[0].render(document.getElementById('sidebar'));
    }""")
    assert page.evaluate("window.__sidebar.map(t => [t.id, t.type, typeof t.render, t.title])") == [
        ["offline-manager", "custom", "function", "Offline Manager"]
    ]
    page.click("[data-testid=offline-manager-launcher]")
    page.wait_for_selector(".om-pack-row:not([hidden])")
    assert page.locator("[data-testid=offline-manager-overlay]").is_visible()

    # Events arrive through api.addEventListener: a restart-required event shows the prompt.
    page.evaluate("""() => window.__hostApi.emit('offline-manager.event', { event: 'restart-required',
        task_id: 't1', seq: 999, data: { reason: 'installed', kind: 'install', target: 'some-pack' } })""")
    page.locator("[data-testid=restart-prompt]").wait_for(state="visible")
    assert "some-pack" in page.inner_text("[data-testid=restart-prompt]")
    screenshot(page, "entry-minimal-host")

    # The command toggles the panel closed again, like the action-bar button.
    page.evaluate("window.__registered[0].commands[0].function()")
    assert page.locator("[data-testid=offline-manager-overlay]").is_hidden()
