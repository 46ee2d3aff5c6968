"""The same panel on the standalone server's page (``cm-cli.py serve``), no ComfyUI shims.

The server runs as a real subprocess on 127.0.0.1 over a tmp tree whose config points at a tmp
copy of the real channel; the page imports ``/js/panel.js`` and mounts the panel full-page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser.pages import TEST_PACK_ID, pack_row, run_plan, screenshot, search

pytestmark = pytest.mark.browser


def test_standalone_page_lists_searches_and_installs(page: Any, standalone: str) -> None:
    page.goto(standalone)
    page.wait_for_selector(".om-pack-row:not([hidden])", timeout=60_000)
    assert page.evaluate("typeof window.comfyAPI") == "undefined"  # no ComfyUI on this page
    total = int(page.inner_text("[data-testid=pack-count]").split(" of ")[1].replace(",", ""))
    assert total >= 5800
    search(page, "panel test pack")
    row = pack_row(page, TEST_PACK_ID)
    row.get_by_role("button", name="Install").click()
    run_plan(page)
    page.wait_for_function(
        """id => { const b = document.querySelector(`.om-pack-row[data-pack-id="${id}"]:not([hidden]) .om-task`);
            return b && b.textContent === 'restart required'; }""",
        arg=TEST_PACK_ID,
        timeout=60_000,
    )
    prompt = page.locator("[data-testid=restart-prompt]")
    prompt.wait_for(state="visible")
    assert page.locator("[data-testid=restart-now]").is_hidden()  # standalone cannot restart ComfyUI
    row.locator(".om-state").filter(has_text="enabled").wait_for(timeout=30_000)  # the list reloaded
    assert row.get_by_role("button", name="Disable").is_visible()
    screenshot(page, "standalone")


def test_install_shows_the_files_to_review(page: Any, standalone: str, panel_env: Any) -> None:
    """A catalog pack carrying a native library installs at level normal, and the drawer lists
    the file the install's inspection found (issue 17: archive inspection shown in the panel)."""
    from support.gitrepos import git

    repo = Path(panel_env.repo_url.removeprefix("file://"))
    (repo / "bin").mkdir()
    (repo / "bin" / "helper.so").write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 57)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "ship a native helper")
    page.goto(standalone)
    page.wait_for_selector(".om-pack-row:not([hidden])", timeout=60_000)
    search(page, "panel test pack")
    row = pack_row(page, TEST_PACK_ID)
    row.get_by_role("button", name="Install").click()
    run_plan(page)
    row.locator(".om-state").filter(has_text="enabled").wait_for(timeout=60_000)
    row.locator(".om-row-title").click()
    findings = page.locator("[data-testid=pack-drawer] .om-findings")
    findings.wait_for(state="visible", timeout=30_000)
    text = findings.inner_text()
    assert "1 file(s) to review" in text and "native library: bin/helper.so" in text, text
    assert (panel_env.root / "custom_nodes" / TEST_PACK_ID / "bin" / "helper.so").is_file()
    screenshot(page, "standalone-findings")
