"""The panel's "Missing nodes" view on the standalone page (``cm-cli.py serve`` in a subprocess)
over the demo tree, whose channel lists two packs for DemoResize: a workflow file is read, each
missing type shows its candidates, the ambiguous one waits for the user's choice, Install shows
the batch's plan and runs it, and the re-check says the installed packs need a restart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.pages import PLAN_DIALOG, run_plan, screenshot

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    from support.api_tree import demo_root, write_config

    root = demo_root(tmp_path)
    write_config(root)  # offline, the demo's file:// channel
    path = root.parent / "demo-channel" / "extension-node-map.json"
    node_map = json.loads(path.read_text(encoding="utf-8"))
    for url, entry in node_map.items():
        if url.rstrip("/").endswith("demo-prompt-kit"):
            entry[0].append("DemoResize")
    path.write_text(json.dumps(node_map), encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "serve.log").open("w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CM_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(root), "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "offline-manager/v1/status", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("cm-cli.py serve did not start:\n" + (tmp_path / "serve.log").read_text())
                time.sleep(0.2)
        yield url, root
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_missing_nodes_view_lists_candidates_installs_the_choice_and_rechecks(
    page: Any, demo_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = demo_server
    wf = tmp_path / "workflow.json"
    wf.write_text(
        json.dumps({"nodes": [{"id": 1, "type": "DemoResize"}, {"id": 2, "type": "DemoMaskBlur"}]}), encoding="utf-8"
    )
    page.goto(url)
    page.wait_for_selector(".om-pack-row:not([hidden])", timeout=60_000)
    page.locator(".om-tab[data-tab=missing]").click()
    assert page.locator("[data-testid=missing-use-open]").is_hidden()  # no ComfyUI graph on this page
    page.set_input_files("[data-testid=missing-file]", str(wf))
    resize = page.locator("[data-testid=missing-table] tr[data-type=DemoResize]")
    resize.wait_for(timeout=30_000)
    assert resize.get_attribute("data-state") == "choose"
    choice = resize.locator("[data-testid=missing-choice]")
    options = choice.locator("option").all_inner_texts()
    assert any("demo-image-tools" in o or "Demo Image Tools" in o for o in options), options
    assert any("Demo Prompt Kit" in o for o in options), options
    assert choice.input_value() == ""  # never picked in silence
    mask = page.locator("[data-testid=missing-table] tr[data-type=DemoMaskBlur]")
    assert mask.locator("[data-testid=missing-choice]").input_value() == "demo-mask-utils"
    assert "only pack" in mask.inner_text()
    choice.select_option("demo-prompt-kit")
    screenshot(page, "missing-nodes-choices")
    page.locator("[data-testid=missing-install]").click()
    # the confirm step: one dialog with the plan of the whole batch, then Run queues it
    page.wait_for_selector(f"{PLAN_DIALOG}:not([data-state=planning])", timeout=60_000)
    added = page.locator(f"{PLAN_DIALOG} [data-testid=plan-packs] li[data-change=added]").all_inner_texts()
    assert any("demo-prompt-kit" in a for a in added) and any("demo-mask-utils" in a for a in added), added
    assert page.locator("[data-testid=plan-skip-deps]").count() == 1  # the "without dependencies" choice
    screenshot(page, "missing-nodes-plan")
    run_plan(page)
    summary = page.locator("[data-testid=missing-recheck-summary]")
    summary.wait_for(timeout=120_000)
    assert "2 of 2 install(s) done" in summary.inner_text(), summary.inner_text()
    still = page.locator("[data-testid=missing-still]")
    states = {
        still.nth(i).get_attribute("data-type"): still.nth(i).get_attribute("data-state") for i in range(still.count())
    }
    assert states == {"DemoResize": "restart_needed", "DemoMaskBlur": "restart_needed"}, states
    assert (root / "custom_nodes" / "demo-prompt-kit").is_dir() and (root / "custom_nodes" / "demo-mask-utils").is_dir()
    assert not (root / "custom_nodes" / "demo-image-tools").exists()
    assert page.locator("[data-testid=missing-restart]").count() == 0  # the standalone page cannot restart
    assert page.console_errors == []  # type: ignore[attr-defined]
    screenshot(page, "missing-nodes-recheck")
