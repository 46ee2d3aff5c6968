"""The panel in the page the real ComfyUI serves (its own pinned frontend), driven by clicks.

A user opens ComfyUI, clicks our entry, sees the pack list (the real channel DB as a file://
channel, offline), searches, installs a pack from a local git repo, disables, enables and
uninstalls it; each step is confirmed on disk. strace then shows that the whole ComfyUI
process tree made no connect() outside loopback while the panel was used.
"""

from __future__ import annotations

from typing import Any

from browser.pages import ENTRY, TEST_PACK_ID, open_panel, pack_row, run_plan, screenshot, search
from realhost.helpers import need_host

from support import realhost


def _wait_state(page: Any, pack_id: str, state: str, timeout: float = 90_000) -> None:
    page.wait_for_function(
        """([id, state]) => { const r = document.querySelector(`.om-pack-row[data-pack-id="${id}"]:not([hidden])`);
            const b = r && r.querySelector('.om-state');
            return !!b && (state === 'not-installed' ? b.hidden : !b.hidden && b.textContent.startsWith(state)); }""",
        arg=[pack_id, state],
        timeout=timeout,
    )


def _pack_dirs(host: realhost.RealComfyUI) -> list[str]:
    return sorted(p.name for p in host.custom_nodes.iterdir() if p.name.lower().startswith("panel"))


def test_a_user_installs_disables_enables_and_uninstalls_in_the_real_page(
    real_comfy: realhost.RealComfyUI, page: Any
) -> None:
    need_host(real_comfy.version, browser=True)
    tag = f"real-{real_comfy.version}"
    open_panel(page, real_comfy)  # clicks our entry in ComfyUI's own page
    entry = page.locator(ENTRY).first
    assert "Offline Manager" in (entry.get_attribute("aria-label") or entry.inner_text())
    total = int(page.inner_text("[data-testid=pack-count]").split(" of ")[1].replace(",", ""))
    assert total >= 5800
    assert page.inner_text("[data-testid=status-network]") == "offline"
    assert page.inner_text("[data-testid=status-routes]") == "ours"  # no other manager installed
    screenshot(page, f"{tag}-panel-open")

    search(page, "panel test pack")
    row = pack_row(page, TEST_PACK_ID)
    assert row.count() == 1
    screenshot(page, f"{tag}-panel-search")

    row.get_by_role("button", name="Install").click()
    run_plan(page)
    _wait_state(page, TEST_PACK_ID, "enabled")
    installed = _pack_dirs(real_comfy)
    assert installed and (real_comfy.custom_nodes / installed[0] / "__init__.py").is_file()
    screenshot(page, f"{tag}-panel-installed")

    row.get_by_role("button", name="Disable").click()
    run_plan(page)
    _wait_state(page, TEST_PACK_ID, "disabled")
    assert _pack_dirs(real_comfy) == []
    disabled = real_comfy.custom_nodes / ".disabled"
    assert disabled.is_dir() and any(p.name.lower().startswith("panel") for p in disabled.iterdir())

    row.get_by_role("button", name="Enable").click()
    run_plan(page)
    _wait_state(page, TEST_PACK_ID, "enabled")
    assert _pack_dirs(real_comfy) == installed

    row.get_by_role("button", name="Uninstall").click()
    run_plan(page)
    _wait_state(page, TEST_PACK_ID, "not-installed")
    assert _pack_dirs(real_comfy) == []
    screenshot(page, f"{tag}-panel-uninstalled")
    assert page.console_errors == [] or all("offline-manager" not in e for e in page.console_errors), (
        page.console_errors
    )


def test_no_connect_outside_loopback_while_the_panel_was_used(real_comfy: realhost.RealComfyUI) -> None:
    assert real_comfy.alive()
    assert real_comfy.strace_path.exists()
    assert real_comfy.connects() == []
