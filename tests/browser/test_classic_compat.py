"""In real headless Chromium: our entry is told apart from the classic manager's, the page's own
``api.fetchApi`` (JSON as text/plain) is accepted, pages of other sites and a DNS-rebound name
cannot make the Manager act, and an offline box without a catalog still shows its packs.

The ComfyUI page is the real frontend (comfyui-frontend-package) served by the stand-in host with
our extension mounted the way ComfyUI mounts it.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.conftest import CHROMIUM, CHROMIUM_FLAGS
from browser.pages import ENTRY, VISIBLE_ROW, pack_row, run_plan, screenshot

from support.standin_host import StandInComfy

pytestmark = pytest.mark.browser
ROW = {"id": "panel-test-pack", "version": "nightly", "selected_version": "nightly", "ui_id": "evil-1"}


def _manager_api(comfy: StandInComfy) -> Any:
    return comfy.server._offline_manager_started["api"]


def _boot(page: Any, url: str) -> None:
    page.goto(url)
    page.locator(ENTRY).first.wait_for(timeout=60_000)


def test_the_entry_reads_offline_manager(page: Any, comfy: StandInComfy) -> None:
    _boot(page, comfy.url("/"))
    # the action-bar button: accessible name and visible label both "Offline Manager"
    button = page.get_by_role("button", name="Offline Manager", exact=True).and_(page.locator(ENTRY))
    assert button.count() == 1 and button.is_visible()
    assert button.inner_text().strip() == "Offline Manager"
    assert page.get_by_role("button", name="Manager", exact=True).count() == 0  # ours never says just that
    button.click()
    page.wait_for_selector(VISIBLE_ROW, timeout=60_000)
    screenshot(page, "entry-offline-manager")


def test_fetchapi_json_sent_as_text_plain_is_accepted(page: Any, comfy: StandInComfy, panel_env: Any) -> None:
    _boot(page, comfy.url("/"))
    sent: list[dict[str, str]] = []
    page.on("request", lambda r: sent.append(r.headers) if r.url.endswith("/api/manager/db_mode") else None)
    status = page.evaluate("""async () => {
        const { api } = await import('/scripts/api.js');   // ComfyUI's own client, as the classic JS uses it
        const r = await api.fetchApi('/manager/db_mode', { method: 'POST', body: JSON.stringify({ value: 'local' }) });
        return r.status;
    }""")
    assert status == 200
    assert sent and sent[0].get("content-type", "").startswith("text/plain"), sent
    assert "db_mode = local" in panel_env.config.read_text(encoding="utf-8")


@pytest.mark.parametrize("evil_host", ["localhost", "127.0.0.1"], ids=["cross-site", "same-site-other-port"])
def test_a_page_of_another_origin_cannot_make_the_manager_act(
    page: Any, standalone: str, http_server: Any, evil_host: str
) -> None:
    """Against ``cm-cli.py serve``, where our guard is the only one (inside ComfyUI its own origin
    check answers such requests first, unless it runs with --enable-cors-header)."""
    target = standalone + "api/manager/queue/install"
    http_server.static(
        "/evil.html",
        f"""<!doctype html><body>
<form id=f method=POST enctype=text/plain action="{standalone}manager/queue/install">
<input name='{{"id":"panel-test-pack","version":"nightly","selected_version":"nightly","x":"' value='"}}'></form>
<script>
window.done = fetch({json.dumps(target)}, {{ method: "POST", mode: "no-cors", body: {json.dumps(json.dumps(ROW))} }})
  .then(() => "sent", (e) => String(e));
</script></body>""",
        content_type="text/html",
    )
    seen: list[int] = []
    page.on("response", lambda r: seen.append(r.status) if "/manager/queue/install" in r.url else None)
    page.goto(http_server.url("/evil.html").replace("127.0.0.1", evil_host))
    assert page.evaluate("window.done") == "sent"
    with page.expect_navigation():
        page.evaluate("document.getElementById('f').submit()")
    assert len(seen) == 2 and all(s == 403 for s in seen), seen
    assert "cross_origin_denied" in page.content()
    with urllib.request.urlopen(standalone + "manager/queue/status", timeout=10) as resp:
        assert json.loads(resp.read())["total_count"] == 0


@pytest.fixture
def rebinding_page(playwright_driver: Any) -> Iterator[Any]:
    """Chromium resolving evil.example to 127.0.0.1, as a DNS-rebinding attacker arranges."""
    profile = tempfile.mkdtemp(prefix="cm-chromium-")
    ctx = playwright_driver.chromium.launch_persistent_context(
        profile,
        executable_path=CHROMIUM,
        headless=True,
        viewport={"width": 1400, "height": 900},
        args=CHROMIUM_FLAGS + ["--host-resolver-rules=MAP evil.example 127.0.0.1"],
    )
    ctx.route(
        re.compile(r"^(https?|wss?)://(?!(127\.0\.0\.1|localhost|evil\.example)[:/])"), lambda route: route.abort()
    )
    try:
        yield ctx.new_page()
    finally:
        ctx.close()
        shutil.rmtree(profile, ignore_errors=True)


def test_a_rebound_host_name_gets_nothing(rebinding_page: Any, comfy: StandInComfy) -> None:
    page = rebinding_page
    page.goto(comfy.url("/offline-manager/v1/status").replace("127.0.0.1", "evil.example"))
    assert "host_not_allowed" in page.content()
    answers = page.evaluate(
        """async (row) => {
        const read = await fetch('/api/offline-manager/v1/config');
        const write = await fetch('/api/manager/queue/install', { method: 'POST', body: JSON.stringify(row) });
        return [read.status, (await read.json()).error.code, write.status, (await write.json()).error.code];
    }""",
        ROW,
    )
    assert answers == [403, "host_not_allowed", 403, "host_not_allowed"]
    assert _manager_api(comfy).manager.queue.status()["total_count"] == 0


# --- an offline box with no catalog yet -------------------------------------------------------------
@pytest.fixture
def offline_comfy(tmp_path: Path) -> Iterator[StandInComfy]:
    root = tmp_path / "ComfyUI"
    for sub in ("custom_nodes/local-pack", "models/checkpoints", "user/__manager", "input", "output", "temp"):
        (root / sub).mkdir(parents=True)
    (root / "custom_nodes" / "local-pack" / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (root / "user" / "__manager" / "config.ini").write_text("[default]\nnetwork_mode = offline\n", encoding="utf-8")
    with StandInComfy(root) as host:
        yield host


def test_without_a_catalog_the_panel_says_how_to_get_one_and_lists_what_is_installed(
    page: Any, offline_comfy: StandInComfy
) -> None:
    _boot(page, offline_comfy.url("/"))
    page.locator(ENTRY).first.click()
    notice = page.locator("[data-testid=catalog-missing]")
    notice.wait_for(timeout=60_000)
    text = notice.inner_text()
    assert "`python cm-cli.py update-cache`" in text and text.count(". ") == 0, text  # one sentence
    row = pack_row(page, "local-pack")
    row.wait_for()
    assert page.locator("[data-testid=panel-errors] .om-error").count() == 0  # not shown as a failure
    screenshot(page, "panel-no-catalog")
    row.get_by_role("button", name="Disable").click()
    run_plan(page)
    page.wait_for_function(
        """() => { const b = document.querySelector(
        '.om-pack-row[data-pack-id="local-pack"]:not([hidden]) .om-state');
        return b && !b.hidden && b.textContent.startsWith('disabled'); }""",
        timeout=60_000,
    )
    disabled = offline_comfy.comfy_root / "custom_nodes" / ".disabled" / "local-pack"
    assert disabled.is_dir()
    page.click("[data-tab=models]")
    assert "cm-cli.py update-cache" in page.locator("[data-testid=catalog-missing-models]").inner_text()
