"""Hostile Host headers (DNS rebinding and its spellings) against the standalone app.

Every case sends its Host three ways — a config read, an uninstall posted the way a page of that
host would post it, and a websocket upgrade — and each must be refused with ``host_not_allowed``
(403, with the hint naming ``allowed_hosts``), nothing queued and no file of the tree changed.
The loopback spellings that must keep working are in tests/test_api_security.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from hostile.harness import Case
from manager.api.routes import PREFIX
from manager.api.standalone import build_app
from support import treesum
from support.api_tree import demo_root, make_api, write_config

pytestmark = pytest.mark.hostile("host-header")
NOISE = ("demo/ComfyUI/user/__manager/locks", "demo/ComfyUI/user/__manager/logs")
_WS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}

# (id, Host) refused by a loopback listener ({port} = the server's port)
LOOPBACK_LISTENER: list[Case] = [
    Case(f"loop-{label}", host, "host_not_allowed")
    for label, host in [
        ("name", "evil.example"),
        ("name-port", "evil.example:{port}"),
        ("name-upper", "EVIL.EXAMPLE:{port}"),
        ("name-dot", "evil.example.:{port}"),
        ("nip-io", "127.0.0.1.nip.io:{port}"),
        ("sslip-io", "127-0-0-1.sslip.io:{port}"),
        ("localtest-me", "localtest.me:{port}"),
        ("localhost-prefix", "localhost.evil.example:{port}"),
        ("loopback-prefix", "127.0.0.1.evil.example"),
        ("any-address", "0.0.0.0"),
        ("any-address-port", "0.0.0.0:{port}"),
        ("zero", "0:{port}"),
        ("decimal", "2130706433:{port}"),
        ("hex", "0x7f000001:{port}"),
        ("hex-dotted", "0x7f.0.0.1:{port}"),
        ("octal", "0177.0.0.1:{port}"),
        ("short-form", "127.1:{port}"),
        ("ipv6-any", "[::]:{port}"),
        ("ipv6-mapped-any", "[::ffff:0.0.0.0]:{port}"),
        ("ipv6-link-local", "[fe80::1]:{port}"),
        ("ipv6-unbracketed", "::1"),
        ("lan-address", "192.168.1.20:{port}"),
        ("userinfo-after", "evil.example@127.0.0.1:{port}"),
        ("userinfo-before", "127.0.0.1@evil.example"),
        ("path", "127.0.0.1:{port}/evil"),
        ("two-ports", "127.0.0.1:{port}:{port}"),
        ("port-out-of-range", "127.0.0.1:99999"),
        ("port-zero", "localhost:0"),
        ("empty", ""),
        ("punycode-lookalike", "xn--ocalhost-hn0d:{port}"),
    ]
]

# (id, Host) a browser page may not use on a non-loopback listener (scripts may)
LAN_LISTENER: list[Case] = [
    Case(f"lan-{label}", host, "host_not_allowed")
    for label, host in [
        ("name", "evil.example:{port}"),
        ("nip-io", "192.168.1.20.nip.io:{port}"),
        ("lan-name", "comfy-box.lan:{port}"),
        ("userinfo", "evil.example@192.168.1.20"),
    ]
]


@pytest.fixture
async def served(tmp_path: Path, aiohttp_client):
    """``make(listen) -> (client, HttpDoor)``: the standalone app over a demo tree with one pack installed."""
    apis = []

    async def make(listen: str = "127.0.0.1", security: str = ""):
        root = demo_root(tmp_path)
        write_config(root, security=security)
        api = make_api(root, listen=listen)
        apis.append(api)
        planned = api.manager.plan("install", "demo-mask-utils", listen="127.0.0.1")
        await asyncio.to_thread(api.manager.submit, [planned])  # core work: off the loop
        assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)
        return await aiohttp_client(build_app(api)), api

    yield make
    for api in apis:
        api.manager.queue.stop(timeout=10)


async def _refused_three_ways(client, api, host: str, tmp_path: Path, code: str) -> None:
    page = {"Host": host, "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
    row = json.dumps({"id": "demo-mask-utils", "version": "nightly", "ui_id": "h1"})
    before = treesum.listing(tmp_path)
    answers = [
        await client.get(PREFIX + "/config", headers=page),
        await client.post("/manager/queue/uninstall", data=row, headers={**page, "Content-Type": "text/plain"}),
        await client.get("/ws", headers={**page, **_WS}),
    ]
    for resp in answers:
        doc = json.loads(await resp.text())
        assert resp.status == 403 and doc.get("ok") is False, (host, resp.status, doc)
        assert doc["error"]["code"] == code and "allowed_hosts" in doc["error"]["hint"], doc
    assert api.manager.queue.status()["pending_count"] == 0
    await asyncio.to_thread(api.manager.queue.run_until_idle, 30)
    diff = treesum.changes(before, treesum.listing(tmp_path)).outside(*NOISE)
    assert not diff, diff.describe()


@pytest.mark.parametrize("case", [c.param() for c in LOOPBACK_LISTENER])
async def test_loopback_listener_refuses_host(case: Case, served, tmp_path: Path) -> None:
    client, api = await served()
    await _refused_three_ways(client, api, case.payload.replace("{port}", str(client.server.port)), tmp_path, case.code)


@pytest.mark.parametrize("case", [c.param() for c in LAN_LISTENER])
async def test_lan_listener_refuses_a_page_under_host(case: Case, served, tmp_path: Path) -> None:
    # trusted: the test client's 127.0.0.1 would be allowed to act, so only the Host check stands between
    client, api = await served("0.0.0.0", "trusted_networks = 127.0.0.0/8")
    await _refused_three_ways(client, api, case.payload.replace("{port}", str(client.server.port)), tmp_path, case.code)
