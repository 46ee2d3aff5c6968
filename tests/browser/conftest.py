"""Browser fixtures: the system chromium driven by Playwright, a stand-in ComfyUI serving the
real frontend wheel with our extension loaded like ComfyUI does, and a tmp channel.

A missing chromium binary FAILS the browser tests with the install command (never a skip);
``scripts/test.sh`` installs it (and the test extra installs playwright and
comfyui-frontend-package). Never ``playwright install``: no browser download, ever.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.pages import PanelEnv, add_local_packs

from support import tools
from support.standin_host import StandInComfy

CHROMIUM = tools.chromium_path()
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
# Everything the page asks of a host that is not loopback is aborted (the real frontend asks
# api.comfy.org for release notes); loopback requests never go through the handler.
NOT_LOOPBACK = re.compile(r"^(https?|wss?)://(?!(127\.0\.0\.1|localhost|\[::1\])[:/])")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the system chromium through Playwright")


@pytest.fixture(autouse=True)
def _need_chromium() -> None:
    """A missing chromium FAILS every browser test with the install command (never a silent skip).
    A missing playwright or comfyui-frontend-package is an installation error and fails loudly too."""
    tools.require("chromium")


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Any]:
    # Module scope, not session: Playwright's sync API keeps an event loop running in this
    # thread while it lives, which would break the pytest-aiohttp tests collected after us.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture
def browser_context(playwright_driver: Any) -> Iterator[Any]:
    """A fresh chromium profile per test (its own user-data-dir), non-loopback requests aborted."""
    profile = tempfile.mkdtemp(prefix="cm-chromium-")
    ctx = playwright_driver.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 900}
    )
    ctx.route(NOT_LOOPBACK, lambda route: route.abort())
    ctx.set_default_timeout(20_000)
    try:
        yield ctx
    finally:
        ctx.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context: Any) -> Any:
    page = browser_context.new_page()
    page.console_errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    return page


# --- the Manager's environment ------------------------------------------------------------------
@pytest.fixture
def panel_env(tmp_path: Path, channel_db: Path, http_server: Any) -> PanelEnv:
    """The real default channel as a tmp file:// channel, plus one pack backed by a local git repo.

    Public mode, with the registry pointed at a loopback server that knows nothing: no request
    of the Manager can leave 127.0.0.1.
    """
    root = tmp_path / "ComfyUI"
    for sub in ("custom_nodes", "models/checkpoints", "user", "input", "output", "temp"):
        (root / sub).mkdir(parents=True)
    channel = tmp_path / "channel"
    shutil.copytree(channel_db / "default", channel)
    env = PanelEnv(root=root, channel=channel, config=root / "user" / "__manager" / "config.ini")
    add_local_packs(env, tmp_path / "repos", author="panel-tests")
    env.write_config(
        network_mode="public", channel_url=channel.as_uri(), registry_url=http_server.url(""), security_level="normal"
    )
    return env


@pytest.fixture
def comfy(panel_env: PanelEnv) -> Iterator[StandInComfy]:
    """The stand-in ComfyUI with our extension loaded, serving the real frontend."""
    with StandInComfy(panel_env.root) as host:
        yield host


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def standalone(panel_env: PanelEnv, tmp_path: Path) -> Iterator[str]:
    """``cm-cli.py serve`` in a subprocess over the panel tree; yields its URL, stopped after."""
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CM_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "cm-cli.py"), "--comfyui", str(panel_env.root), "serve", "--port", str(port)],
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
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
