"""The panel inside the REAL ComfyUI frontend (comfyui-frontend-package) served by the stand-in host.

Each test clicks our action-bar entry in the booted frontend, then drives the panel against our
real routes mounted the way ComfyUI mounts them, over a tmp copy of the real channel DB.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from browser.pages import (
    SECOND_PACK_ID,
    TEST_PACK_ID,
    PanelEnv,
    open_panel,
    pack_row,
    run_plan,
    screenshot,
    search,
    watch_row_badges,
)

from support.standin_host import StandInComfy

pytestmark = pytest.mark.browser


def test_entry_opens_panel_over_the_real_db(page: Any, comfy: StandInComfy, channel_db) -> None:
    open_panel(page, comfy)
    assert page.locator("[data-testid=offline-manager-overlay]").is_visible()
    count = page.inner_text("[data-testid=pack-count]")
    total = int(count.split(" of ")[1].replace(",", ""))
    assert total >= 5800, count  # the real channel (5,896 packs, minus duplicates)
    assert page.locator(".om-pack-row:not([hidden])").count() < 80  # virtualised: only the visible rows
    assert page.inner_text("[data-testid=status-network]") == "public"
    assert "DB" in page.inner_text("[data-testid=statusbar]")
    screenshot(page, "panel-nodes")

    search(page, "impact pack")
    titles = page.locator(".om-pack-row:not([hidden]) .om-row-title").all_inner_texts()
    assert titles and "Impact Pack" in titles[0], titles
    shown = int(page.inner_text("[data-testid=pack-count]").split(" of ")[0].replace(",", ""))
    assert 0 < shown < 100
    screenshot(page, "panel-search")

    search(page, "zz-no-such-pack-anywhere")
    assert page.locator(".om-empty").filter(has_text="No node pack matches").is_visible()

    # Untrusted catalog text is shown as text: the description's <img onerror> never runs.
    search(page, "panel test pack")
    pack_row(page, TEST_PACK_ID).locator(".om-row-title").click()
    drawer = page.locator("[data-testid=pack-drawer]")
    drawer.wait_for(state="visible")
    assert '<img src=x onerror="window.__xss=1">' in drawer.locator(".om-desc").inner_text()
    assert page.evaluate("window.__xss") is None
    assert drawer.locator("img").count() == 0
    screenshot(page, "panel-details")


def test_filter_and_sort(page: Any, comfy: StandInComfy) -> None:
    open_panel(page, comfy)
    page.select_option("[data-testid=pack-sort]", "name")
    first = page.locator(".om-pack-row:not([hidden]) .om-row-title").first.inner_text()
    page.select_option("[data-testid=pack-sort]", "stars")
    by_stars = page.locator(".om-pack-row:not([hidden]) .om-cell-stars").all_inner_texts()[:5]
    numbers = [int(re.sub(r"\D", "", s) or -1) for s in by_stars]
    assert numbers == sorted(numbers, reverse=True), by_stars
    assert first != page.locator(".om-pack-row:not([hidden]) .om-row-title").first.inner_text()
    page.select_option("[data-testid=pack-filter]", "installed")
    assert page.inner_text("[data-testid=pack-count]").startswith("0 of")


def _wait_badge(page: Any, pack_id: str, text: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        """([id, text]) => {
            const b = document.querySelector(`.om-pack-row[data-pack-id="${id}"]:not([hidden]) .om-task`);
            return b && !b.hidden && b.textContent === text; }""",
        arg=[pack_id, text],
        timeout=timeout,
    )


def _wait_state(page: Any, pack_id: str, state: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        """([id, state]) => { const r = document.querySelector(`.om-pack-row[data-pack-id="${id}"]:not([hidden])`);
            const b = r && r.querySelector('.om-state');
            return !!b && (state === 'not-installed' ? b.hidden : !b.hidden && b.textContent.startsWith(state)); }""",
        arg=[pack_id, state],
        timeout=timeout,
    )


def test_install_disable_enable_uninstall_from_a_local_repo(
    page: Any, comfy: StandInComfy, panel_env: PanelEnv
) -> None:
    custom_nodes = panel_env.root / "custom_nodes"
    open_panel(page, comfy)
    search(page, "panel test pack")
    row = pack_row(page, TEST_PACK_ID)
    watch_row_badges(page, TEST_PACK_ID)
    row.get_by_role("button", name="Install").click()
    run_plan(page)

    _wait_badge(page, TEST_PACK_ID, "restart required")
    seen = page.evaluate("window.__badges")
    assert seen[-1] == "restart required"
    assert any(b != "restart required" for b in seen), f"no progress shown before the end: {seen}"
    page.locator("[data-testid=restart-prompt]").wait_for(state="visible")
    _wait_state(page, TEST_PACK_ID, "enabled")
    assert any(
        p.name.startswith(TEST_PACK_ID) or p.name.lower().startswith("panel")
        for p in custom_nodes.iterdir()
        if not p.name.startswith(".")
    )
    screenshot(page, "panel-installed")

    row.get_by_role("button", name="Disable").click()
    run_plan(page)
    _wait_state(page, TEST_PACK_ID, "disabled")
    assert (custom_nodes / ".disabled").is_dir() and any((custom_nodes / ".disabled").iterdir())

    row.get_by_role("button", name="Enable").click()
    run_plan(page)
    _wait_state(page, TEST_PACK_ID, "enabled")

    row.get_by_role("button", name="Uninstall").click()
    run_plan(page)  # asked first (one confirm with the plan): the pack goes to the trash
    _wait_state(page, TEST_PACK_ID, "not-installed")
    assert not [p for p in custom_nodes.iterdir() if p.name.lower().startswith("panel")]
    screenshot(page, "panel-statusbar-restart")


def test_batch_install_and_uninstall_of_selected_packs(page: Any, comfy: StandInComfy, panel_env: PanelEnv) -> None:
    open_panel(page, comfy)
    search(page, "panel test pack")
    for pack_id in (TEST_PACK_ID, SECOND_PACK_ID):
        pack_row(page, pack_id).locator("input[data-action=select]").check()
    assert page.inner_text(".om-batch-count") == "2 selected"
    page.locator(".om-batch [data-batch=install]").click()
    run_plan(page)
    for pack_id in (TEST_PACK_ID, SECOND_PACK_ID):
        _wait_state(page, pack_id, "enabled")
    assert page.locator(".om-batch").is_hidden()  # the selection is cleared after a batch
    page.select_option("[data-testid=pack-filter]", "installed")
    page.wait_for_function("document.querySelector('.om-nodes').dataset.rows === '2'")
    for pack_id in (TEST_PACK_ID, SECOND_PACK_ID):
        pack_row(page, pack_id).locator("input[data-action=select]").check()
    page.locator(".om-batch [data-batch=uninstall]").click()
    run_plan(page)
    page.wait_for_function("document.querySelector('.om-nodes').dataset.rows === '0'", timeout=60_000)
    assert not [p for p in (panel_env.root / "custom_nodes").iterdir() if p.name.lower().startswith("panel")]


def test_snapshot_save_diff_restore_remove(page: Any, comfy: StandInComfy, panel_env: PanelEnv) -> None:
    open_panel(page, comfy)
    page.click("[data-tab=snapshots]")
    page.fill("[data-testid=snapshot-name]", "before-install")
    page.click("[data-testid=snapshot-save]")
    snap = page.locator('tr[data-snapshot="before-install"]')
    snap.wait_for()

    # Change the tree, then compare and restore.
    page.click("[data-tab=nodes]")
    search(page, "panel test pack")
    pack_row(page, TEST_PACK_ID).get_by_role("button", name="Install").click()
    run_plan(page)
    _wait_state(page, TEST_PACK_ID, "enabled")

    page.click("[data-tab=snapshots]")
    snap.get_by_role("button", name="Diff").click()
    diff = page.locator("[data-testid=snapshot-diff]")
    diff.wait_for()
    assert TEST_PACK_ID in diff.inner_text()
    screenshot(page, "panel-snapshots-diff")
    snap.get_by_role("button", name="Show").click()
    assert '"packs"' in page.locator("[data-testid=snapshot-json]").inner_text()

    snap.get_by_role("button", name="Restore…").click()
    plan = page.locator("[data-testid=restore-plan]")
    plan.wait_for()
    assert TEST_PACK_ID in plan.locator("li").first.inner_text()  # the plan is shown before anything runs
    assert any(p.name.lower().startswith("panel") for p in (panel_env.root / "custom_nodes").iterdir())
    screenshot(page, "panel-snapshots-plan")
    page.click("[data-testid=restore-run]")
    page.locator(".om-restore-status .om-badge").filter(has_text=re.compile("restored")).wait_for(timeout=60_000)
    assert not [p for p in (panel_env.root / "custom_nodes").iterdir() if p.name.lower().startswith("panel")]
    page.locator("tr[data-snapshot]").nth(1).wait_for()  # the restore saved an auto-snapshot first
    screenshot(page, "panel-snapshots")
    snap.get_by_role("button", name="Remove").click()
    snap.wait_for(state="detached")


def test_offline_mode_changes_the_status_bar_and_refuses_remote_work(page: Any, comfy: StandInComfy) -> None:
    open_panel(page, comfy)
    page.click("[data-tab=settings]")
    page.select_option("[data-testid=setting-network_mode]", "offline")
    page.wait_for_function("document.querySelector('[data-testid=status-network]').textContent === 'offline'")
    screenshot(page, "panel-settings")

    # A pack whose only source is GitHub: offline, the Manager refuses it with a code and a hint.
    page.click("[data-tab=nodes]")
    search(page, "impact pack")
    page.locator(".om-pack-row:not([hidden])").first.get_by_role("button", name="Install").click()
    # the confirm step shows the refusal as the plan's blocker, and Run stays disabled
    box = page.locator("[data-testid=plan-dialog] [data-testid=plan-blockers] .om-error").first
    box.wait_for(timeout=60_000)
    code = box.get_attribute("data-code")
    assert code in ("offline_mode", "network_blocked"), box.inner_text()
    assert box.locator(".om-error-code").inner_text() == code
    assert box.locator(".om-error-hint").inner_text().strip()
    assert page.locator("[data-testid=plan-run]").is_disabled()
    screenshot(page, "panel-offline-refusal")
    page.click("[data-testid=plan-cancel]")


MODEL_FILE = "panel-test-model.safetensors"


@pytest.fixture
def model_env(panel_env: PanelEnv, http_server: Any) -> PanelEnv:
    """A model whose only source is the loopback server, listed first in the tmp model-list.json."""
    body = b"\0" * (256 * 1024)
    http_server.static(f"/models/{MODEL_FILE}", body, content_type="application/octet-stream")
    path = panel_env.channel / "model-list.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["models"].insert(
        0,
        {
            "name": "Panel Test Model",
            "type": "checkpoint",
            "base": "SD1.5",
            "save_path": "checkpoints",
            "description": "served from 127.0.0.1",
            "reference": http_server.url("/"),
            "filename": MODEL_FILE,
            "url": http_server.url(f"/models/{MODEL_FILE}"),
            "size": "256KB",
        },
    )
    path.write_text(json.dumps(data), encoding="utf-8")
    return panel_env


def test_models_view_filters_and_installs_with_progress(page: Any, model_env: PanelEnv) -> None:
    with StandInComfy(model_env.root) as comfy:
        open_panel(page, comfy)
        page.click("[data-tab=models]")
        page.wait_for_selector(".om-model-row:not([hidden])")
        rows = int(page.locator(".om-models").get_attribute("data-rows"))
        assert rows >= 500  # the real model list (562)
        page.select_option("[data-testid=model-type]", index=1)
        assert 0 < int(page.locator(".om-models").get_attribute("data-rows")) < rows
        page.select_option("[data-testid=model-type]", "")
        page.fill("[data-testid=model-search]", "panel test model")
        row = page.locator(f'.om-model-row[data-model-id="checkpoints/{MODEL_FILE}"]:not([hidden])')
        row.wait_for()
        screenshot(page, "panel-models")
        page.evaluate("""() => { window.__modelBadges = [];
            new MutationObserver(() => {
                const b = document.querySelector('.om-model-row:not([hidden]) .om-task');
                if (b && !b.hidden && window.__modelBadges.at(-1) !== b.textContent)
                    window.__modelBadges.push(b.textContent); })
              .observe(document.querySelector('.om-model-list'),
                       {subtree: true, childList: true, characterData: true, attributes: true}); }""")
        row.get_by_role("button", name="Install").click()
        row.locator(".om-state").filter(has_text="installed").wait_for(timeout=60_000)
        assert (model_env.root / "models" / "checkpoints" / MODEL_FILE).stat().st_size == 256 * 1024
        assert page.evaluate("window.__modelBadges"), "no task state was shown while installing"
