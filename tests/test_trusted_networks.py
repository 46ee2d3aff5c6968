"""trusted_networks through a real server, and the DNS-rebinding finding (issue 17, finding 1).

The standalone app runs on 127.0.0.1 (the test network has only loopback). The policy reads the
LISTEN address string, so a door built with ``listen="0.0.0.0"`` is a non-loopback listener
whose peer is the test client's 127.0.0.1; ``trusted_networks`` then decides whether that peer
may act. Every refusal is checked against a checksum listing of the whole tree.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manager.api.routes import PREFIX
from support import treesum

REPO = Path(__file__).resolve().parents[1]
PACK = "demo-mask-utils"
UNINSTALL_ROW = {"id": PACK, "version": "nightly", "ui_id": "u1"}
# the queue's lock file and the audit log are written by refused requests too (docs/api.md)
NOISE = ("demo/ComfyUI/user/__manager/locks", "demo/ComfyUI/user/__manager/logs")


async def _install(api) -> None:
    """Install the pack the tests then try to remove, as a local caller (no network peer)."""
    planned = api.manager.plan("install", PACK, listen="127.0.0.1")
    (task,) = await asyncio.to_thread(api.manager.submit, [planned])  # core work: off the loop
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)
    assert api.manager.queue.get(task.id).state.value == "done"


async def _error(resp, status: int, code: str) -> dict:
    body = await resp.json()
    assert resp.status == status, body
    assert body["ok"] is False and body["error"]["code"] == code, body
    return body["error"]


def _pending(api) -> int:
    return int(api.manager.queue.status()["pending_count"])


async def _risky_requests(client) -> list:
    """One of each kind of risky request a LAN peer might send, as a script (no Origin)."""
    return [
        await client.post("/manager/queue/uninstall", json=UNINSTALL_ROW),
        await client.post(PREFIX + "/queue", json={"kind": "disable", "target": PACK}),
        await client.post("/manager/channel_url_list", json={"value": "demo"}),
        await client.post(PREFIX + "/config", json={"changes": {"db_mode": "remote"}}),
        await client.post("/manager/db_mode", json={"value": "local"}),
    ]


@pytest.mark.parametrize("trusted", ["", "10.0.0.0/8, fd00::/8", "127.0.0.2/32"])
async def test_a_lan_peer_outside_trusted_networks_changes_nothing(aiohttp_client, api_app, tmp_path, trusted):
    app, api, root = api_app(listen="0.0.0.0", security=f"trusted_networks = {trusted}")
    await _install(api)
    client = await aiohttp_client(app)
    before = treesum.listing(tmp_path)
    config = str(api.manager.config.path)
    for resp in await _risky_requests(client):
        err = await _error(resp, 403, "security_denied")
        assert "trusted_networks" in err["hint"] and config in err["hint"], err
        assert "127.0.0.1" in err["message"], err  # names the peer it refused
    assert _pending(api) == 0
    # what any peer may still do: read, control the queue, go offline
    assert (await client.get(PREFIX + "/config")).status == 200
    assert (await client.post("/manager/queue/start")).status in (200, 201)
    assert (await client.post(PREFIX + "/network", json={"mode": "offline"})).status == 200
    policy = (await (await client.get(PREFIX + "/policy")).json())["data"]
    assert policy["settings"]["peer"] == "127.0.0.1" and policy["settings"]["peer_trusted"] is False
    assert policy["operations"]["uninstall"]["allowed"] is False
    assert "trusted_networks" in policy["operations"]["uninstall"]["hint"]
    await asyncio.to_thread(api.manager.queue.run_until_idle, 30)
    diff = treesum.changes(before, treesum.listing(tmp_path)).outside(*NOISE)
    assert not diff, diff.describe()
    assert (root / "custom_nodes" / PACK).is_dir()


@pytest.mark.parametrize("trusted", ["127.0.0.0/8", "10.0.0.0/8, 127.0.0.1", "::ffff:127.0.0.1/128, 127.0.0.1/32"])
async def test_a_peer_inside_trusted_networks_acts_where_the_level_allows(aiohttp_client, api_app, trusted):
    app, api, root = api_app(listen="0.0.0.0", security=f"trusted_networks = {trusted}")
    await _install(api)
    client = await aiohttp_client(app)
    policy = (await (await client.get(PREFIX + "/policy")).json())["data"]
    assert policy["settings"]["peer_trusted"] is True and policy["operations"]["uninstall"]["allowed"] is True
    # the loopback-only operations stay refused: trust does not replace --listen 127.0.0.1
    err = await _error(
        await client.post("/customnode/install/git_url", json={"url": "https://example.invalid/a.git"}),
        403,
        "security_denied",
    )
    assert "allow_git_url_install" in err["hint"] or "--listen 127.0.0.1" in err["hint"], err
    resp = await client.post("/manager/queue/uninstall", json=UNINSTALL_ROW)
    assert resp.status == 200, await resp.text()
    assert (await client.post("/manager/queue/start")).status in (200, 201)
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)
    assert not (root / "custom_nodes" / PACK).exists()


async def test_the_level_still_decides_inside_trusted_networks(aiohttp_client, api_app, tmp_path):
    app, api, _root = api_app(
        listen="0.0.0.0", default="security_level = strong", security="trusted_networks = 127.0.0.0/8"
    )
    client = await aiohttp_client(app)
    before = treesum.listing(tmp_path)
    err = await _error(await client.post("/manager/queue/uninstall", json=UNINSTALL_ROW), 403, "security_denied")
    assert "security_level = normal" in err["hint"] and str(api.manager.config.path) in err["hint"]
    assert _pending(api) == 0
    diff = treesum.changes(before, treesum.listing(tmp_path)).outside(*NOISE)
    assert not diff, diff.describe()


async def test_a_loopback_listener_ignores_trusted_networks(aiohttp_client, api_app):
    app, api, _root = api_app(security="trusted_networks = 10.0.0.0/8")
    client = await aiohttp_client(app)
    resp = await client.post(PREFIX + "/config", json={"changes": {"db_mode": "remote"}})
    assert resp.status == 200, await resp.text()


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
    return subprocess.run(
        [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_a_cli_refusal_names_the_setting_and_never_a_server(api_app, tmp_path):
    """The shell is a local user: trusted_networks does not apply, and a refusal names the key and the
    file, never a restart or --listen."""
    _app, api, root = api_app(default="security_level = strong", security="trusted_networks =")
    config = str(api.manager.config.path)
    api.manager.queue.stop(timeout=10)
    before = treesum.listing(tmp_path)
    for args in (("install", PACK), ("update", "all"), ("install", "https://example.invalid/evil.git")):
        proc = _cli(root, *args)
        assert proc.returncode != 0, proc
        err = proc.stderr
        assert "security_denied" in err and config in err, err
        assert "restart" not in err.lower() and "--listen" not in err and "server" not in err.lower(), err
    diff = treesum.changes(before, treesum.listing(tmp_path)).outside(*NOISE)
    assert not diff, diff.describe()
    # the same tree at normal: the CLI acts although trusted_networks is empty (it is no LAN peer)
    cfg = Path(config)
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("security_level = strong", ""), encoding="utf-8")
    proc = _cli(root, "install", PACK)
    assert proc.returncode == 0, proc.stderr
    assert (root / "custom_nodes" / PACK).is_dir()
