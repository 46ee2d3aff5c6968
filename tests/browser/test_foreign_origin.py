"""A page of another origin cannot make the Manager act, even under a foreign Host name (issue 17).

Real parts only: the Manager is ``cm-cli.py serve`` on 127.0.0.1 over a demo tree with one pack
installed; the hostile page is served by a second aiohttp server on another loopback port; the
system chromium resolves ``evil.example`` to 127.0.0.1 (``--host-resolver-rules``), as a DNS
rebinding attack would make it. Three attackers:

- the page at ``http://evil.example:<hostile-port>/`` posting to ``http://evil.example:<manager-port>``
  (the listener reached under a foreign name) and to ``http://127.0.0.1:<manager-port>`` (cross-origin);
- the page after a completed rebinding: its document is ``http://evil.example:<manager-port>/`` itself
  (Playwright fulfils only that one navigation; every request the page then makes goes through
  chromium's network stack to the Manager), so the browser calls its requests same-origin and the
  page can read every answer.

Each tries a no-cors fetch, a CORS fetch, a text/plain POST, a form POST and the websocket.
Nothing may be queued and no file of the tree may change; the control — the same uninstall from
the Manager's own page — works.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from browser.conftest import CHROMIUM, CHROMIUM_FLAGS, REPO_ROOT, _free_port
from browser.pages import screenshot

from support import treesum
from support.api_tree import demo_root, write_config

pytestmark = pytest.mark.browser
PACK = "demo-mask-utils"
NOISE = ("demo/ComfyUI/user/__manager/locks", "demo/ComfyUI/user/__manager/logs")
# The server's own background work after it starts, whatever the page does: the pack lists it
# persists for the next start (manager/list_cache.py), and the cache folder made to hold them.
LISTS = "demo/ComfyUI/user/__manager/cache/lists"


def _server_lists_only(paths: tuple[str, ...]) -> bool:
    cache = LISTS.rsplit("/", 1)[0]
    return all(p == cache or p == LISTS or p.startswith(LISTS + "/") for p in paths)


ATTACK_JS = """
async (base) => {
  const row = JSON.stringify({id: "__PACK__", version: "nightly", ui_id: "evil"});
  const task = JSON.stringify({kind: "uninstall", target: "__PACK__"});
  const out = {};
  const note = async (name, p) => {
    try { const r = await p; let body = null;
          try { body = await r.json(); } catch (e) { body = null; }
          out[name] = {type: r.type, status: r.status, code: body && body.error ? body.error.code : null};
    } catch (e) { out[name] = {error: String(e)}; }
  };
  await note("nocors-uninstall", fetch(base + "/manager/queue/uninstall",
      {method: "POST", mode: "no-cors", body: row, headers: {"Content-Type": "text/plain"}}));
  await note("nocors-queue", fetch(base + "/offline-manager/v1/queue",
      {method: "POST", mode: "no-cors", body: task}));
  await note("cors-text-plain", fetch(base + "/api/manager/queue/uninstall",
      {method: "POST", body: row, headers: {"Content-Type": "text/plain;charset=UTF-8"}}));
  await note("cors-channel", fetch(base + "/manager/channel_url_list",
      {method: "POST", body: JSON.stringify({value: "demo"})}));
  await note("start", fetch(base + "/manager/queue/start", {method: "POST", mode: "no-cors"}));
  await note("read-config", fetch(base + "/offline-manager/v1/config"));
  // a form POST (text/plain encoding: the body arrives as '{"kind":..., "x":"="}') into a frame
  await new Promise((resolve) => {
    const frame = document.createElement("iframe"); frame.name = "sink"; document.body.appendChild(frame);
    const form = document.createElement("form");
    form.method = "POST"; form.enctype = "text/plain"; form.target = "sink";
    form.action = base + "/offline-manager/v1/queue";
    const field = document.createElement("input"); field.type = "hidden";
    field.name = task.slice(0, -1) + ', "x": "'; field.value = '"}';
    form.appendChild(field); document.body.appendChild(form);
    frame.onload = () => resolve(); form.submit(); setTimeout(resolve, 5000);
  });
  out["form"] = {submitted: true};
  out["websocket"] = await new Promise((resolve) => {
    let ws;
    try { ws = new WebSocket(base.replace("http", "ws") + "/ws"); } catch (e) { resolve("throw " + e); return; }
    ws.onopen = () => { resolve("open"); ws.close(); };
    ws.onerror = () => resolve("error");
    setTimeout(() => resolve("timeout"), 5000);
  });
  document.body.insertAdjacentHTML("beforeend", "<pre id=out>" + JSON.stringify(out, null, 1) + "</pre>");
  return out;
}
""".replace("__PACK__", PACK)

HOSTILE_PAGE = "<!doctype html><title>cute cats</title><h1>Nothing to see here</h1>"


def _cli(root: Path, *args: str, **kw: Any) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "cm-cli.py"), "--comfyui", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        **kw,
    )


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:  # a script: no Origin, loopback Host
        return json.loads(resp.read())


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    """``cm-cli.py serve`` over a demo tree with PACK installed: (base URL, port, ComfyUI root)."""
    root = demo_root(tmp_path)
    write_config(root)
    proc = _cli(root, "install", PACK)
    assert proc.returncode == 0, proc.stderr
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
    server = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "cm-cli.py"), "--comfyui", str(root), "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get_json(base + "/offline-manager/v1/status")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("cm-cli.py serve did not start:\n" + (tmp_path / "serve.log").read_text())
                time.sleep(0.2)
        yield base, port, root
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()


@pytest.fixture
def hostile_site() -> Iterator[int]:
    """A second aiohttp server on 127.0.0.1 (its own port and loop) serving the attacker's page."""
    port = _free_port()
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=HOSTILE_PAGE, content_type="text/html")

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/", page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture
def rebinding_browser(playwright_driver: Any, tmp_path: Path) -> Iterator[Any]:
    """Chromium resolving evil.example to 127.0.0.1; any other non-loopback request is aborted."""
    import re

    ctx = playwright_driver.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=[
            *CHROMIUM_FLAGS,
            "--host-resolver-rules=MAP evil.example 127.0.0.1",
            # the browser's own Private Network Access checks would stop some attacks before they
            # reach the server (a fulfilled document counts as public); off, so the server alone is tested
            "--disable-features=BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights,"
            "PrivateNetworkAccessRespectPreflightResults,LocalNetworkAccessChecks",
        ],
        viewport={"width": 1200, "height": 800},
    )
    ctx.route(re.compile(r"^(https?|wss?)://(?!(127\.0\.0\.1|evil\.example)[:/])"), lambda route: route.abort())
    ctx.set_default_timeout(20_000)
    try:
        yield ctx
    finally:
        ctx.close()


def _assert_refused(out: dict[str, Any], readable: bool) -> None:
    assert out["websocket"] != "open", out
    for name in ("nocors-uninstall", "nocors-queue", "start"):
        got = out[name]
        # an opaque answer says nothing to the page; a same-origin one must be the coded refusal
        assert "error" in got or got["type"] == "opaque" or got["status"] == 403, (name, out)
    for name in ("cors-text-plain", "cors-channel", "read-config"):
        got = out[name]
        if readable:
            assert got.get("status") == 403 and got.get("code") == "host_not_allowed", (name, out)
        else:
            assert "error" in got, (name, out)  # CORS: the page learns nothing, and the server refused


def test_a_foreign_page_cannot_make_the_manager_act(
    manager: tuple[str, int, Path], hostile_site: int, rebinding_browser: Any, tmp_path: Path
) -> None:
    base, port, root = manager
    before = treesum.listing(tmp_path, skip=["serve.log", "profile"])
    page = rebinding_browser.new_page()

    # 1. the attacker's own site, aiming at the Manager under a foreign name and under 127.0.0.1
    page.goto(f"http://evil.example:{hostile_site}/")
    for target in (f"http://evil.example:{port}", f"http://127.0.0.1:{port}"):
        _assert_refused(page.evaluate(ATTACK_JS, target), readable=False)

    # 2. after the rebinding: the document's origin IS evil.example:<manager port>
    rebound = f"http://evil.example:{port}/"
    page.route(rebound, lambda route: route.fulfill(status=200, content_type="text/html", body=HOSTILE_PAGE))
    page.goto(rebound)
    page.unroute(rebound)
    out = page.evaluate(ATTACK_JS, f"http://evil.example:{port}")
    _assert_refused(out, readable=True)
    for name in ("nocors-uninstall", "nocors-queue", "start"):
        assert out[name].get("code") in (None, "host_not_allowed"), (name, out)
    screenshot(page, "foreign-origin-refused")

    # the Manager did nothing: no task, the pack still installed, no file of the tree changed
    time.sleep(1.0)
    with urllib.request.urlopen(base + "/manager/queue/status", timeout=10) as resp:  # classic counts
        queue = json.loads(resp.read())
    assert queue["total_count"] == 0 and queue["pending_count"] == 0, queue
    diff = treesum.changes(before, treesum.listing(tmp_path, skip=["serve.log", "profile"])).outside(*NOISE)
    assert not diff.removed and not diff.modified and _server_lists_only(diff.added), diff.describe()
    assert (root / "custom_nodes" / PACK).is_dir()

    # the control: the same uninstall from the Manager's own page works
    own = rebinding_browser.new_page()
    own.goto(base + "/")
    result = own.evaluate(
        """async ([pack]) => {
            const r = await fetch("/manager/queue/uninstall", {method: "POST",
                body: JSON.stringify({id: pack, version: "nightly", ui_id: "own"}),
                headers: {"Content-Type": "text/plain;charset=UTF-8"}});
            const s = await fetch("/manager/queue/start", {method: "POST"});
            return [r.status, s.status];
        }""",
        [PACK],
    )
    assert result[0] == 200 and result[1] in (200, 201), result
    deadline = time.monotonic() + 60
    while (root / "custom_nodes" / PACK).exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not (root / "custom_nodes" / PACK).exists()
