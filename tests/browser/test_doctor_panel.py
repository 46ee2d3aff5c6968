"""The doctor section of the panel's settings view on the standalone page (issue 18): the same
checklist as ``cm-cli.py doctor``, one row per check with its status and fix, the effective URL of
each endpoint family among them."""

from __future__ import annotations

from typing import Any

import pytest
from browser.pages import screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def old_config(panel_env: Any) -> Any:
    """A classic config.ini at the pre-0.3.76 location, written before the server starts."""
    old = panel_env.root / "user" / "default" / "ComfyUI-Manager" / "config.ini"
    old.parent.mkdir(parents=True)
    old.write_text("[default]\ndb_mode = local\n", encoding="utf-8")
    return old


def test_settings_view_shows_the_doctor_checklist(page: Any, old_config: Any, standalone: str) -> None:
    page.goto(standalone)
    page.wait_for_selector(".om-pack-row:not([hidden])", timeout=60_000)
    page.click("[data-tab=settings]")
    summary = page.locator("[data-testid=doctor-summary]")
    summary.wait_for(state="visible", timeout=60_000)
    assert any(word in summary.inner_text() for word in ("PASS", "WARN", "FAIL"))
    doctor = page.locator("[data-testid=doctor]")
    for check in ("python", "network_mode", "git", "security", "listener", "config", "wheelhouse"):
        assert doctor.locator(f"tr[data-check={check}]").count() == 1, check
    for family in ("github", "raw_github", "registry", "pypi", "huggingface", "channel", "default_channel"):
        row = doctor.locator(f'tr[data-check="endpoint:{family}"]')  # the effective URL of each family
        assert row.count() == 1 and "Endpoint:" in row.inner_text(), family
    channel = doctor.locator('tr[data-check="endpoint:channel"]').inner_text()
    assert "file://" in channel and "works in every network mode" in channel
    old_row = doctor.locator("tr[data-check=config_old]")
    assert old_row.count() == 1 and "cm-cli.py migrate" in old_row.inner_text()
    doctor.scroll_into_view_if_needed()
    screenshot(page, "panel-doctor")
    assert page.console_errors == []
