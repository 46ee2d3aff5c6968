"""Policy, CSRF and input guards through a real server: refused requests change nothing."""

from __future__ import annotations

import json

import pytest

from manager.api.envelope import MAX_BODY_BYTES
from manager.api.routes import PREFIX

INSTALL_ROW = {"id": "demo-image-tools", "version": "nightly", "selected_version": "nightly", "ui_id": "r1"}


def _nothing_queued(api) -> bool:
    return api.manager.queue.status()["total_count"] == 0


async def _error(resp, status: int, code: str) -> dict:
    body = await resp.json()
    assert resp.status == status, body
    assert body["ok"] is False and body["error"]["code"] == code, body
    return body["error"]


async def test_strong_level_refuses_changes_with_the_key_to_change(aiohttp_client, api_app):
    app, api, _root = api_app(default="security_level = strong")
    client = await aiohttp_client(app)
    for path, body in (
        ("/manager/queue/install", INSTALL_ROW),
        ("/manager/queue/uninstall", INSTALL_ROW),
        ("/manager/db_mode", {"value": "local"}),
        (PREFIX + "/queue", {"kind": "fix", "target": "demo-image-tools"}),
    ):
        err = await _error(await client.post(path, json=body), 403, "security_denied")
        assert "security_level = normal" in err["hint"] and str(api.manager.config.path) in err["hint"], err
    # reads and the always-allowed controls still work
    assert (await client.get("/customnode/getlist?mode=cache")).status == 200
    assert (await client.post("/manager/queue/start")).status in (200, 201)
    assert _nothing_queued(api)
    assert "db_mode" not in api.manager.config.path.read_text(encoding="utf-8")


async def test_git_url_and_pip_need_their_flag_and_loopback(aiohttp_client, api_app, tmp_path):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    err = await _error(
        await client.post("/customnode/install/git_url", json={"url": "https://example.invalid/a.git"}),
        403,
        "security_denied",
    )
    assert "allow_git_url_install = true" in err["hint"]
    err = await _error(await client.post("/customnode/install/pip", json={"packages": "numpy"}), 403, "security_denied")
    assert "allow_pip_install = true" in err["hint"]
    # the queue route: a URL no catalog lists is "high" risk, even with a made-up catalog row
    row = {"id": "x", "version": "unknown", "files": ["https://example.invalid/evil.git"], "ui_id": "u"}
    err = await _error(await client.post("/manager/queue/install", json=row), 403, "security_denied")
    assert "allow_git_url_install" in err["hint"]
    assert _nothing_queued(api)


async def test_flags_do_nothing_on_a_lan_listener(aiohttp_client, api_app):
    app, api, _root = api_app(
        listen="0.0.0.0",
        default="security_level = weak",
        # the test client's 127.0.0.1 is a trusted peer here: the flags still need a loopback listener
        security="allow_git_url_install = true\nallow_pip_install = true\nallow_remote_channel = true\n"
        "trusted_networks = 127.0.0.0/8",
    )
    client = await aiohttp_client(app)
    for path, body in (
        ("/customnode/install/git_url", {"url": "https://example.invalid/a.git"}),
        ("/customnode/install/pip", {"packages": "numpy"}),
        (PREFIX + "/network", {"mode": "public"}),
        (PREFIX + "/channels", {"url": "https://channels.example/c"}),
    ):
        err = await _error(await client.post(path, json=body), 403, "security_denied")
        assert "--listen 127.0.0.1" in err["hint"], (path, err)
    # a catalog install is still fine at weak on a LAN listener (classic "middle")
    assert (await client.post("/manager/queue/install", json=INSTALL_ROW)).status == 200
    policy = (await (await client.get(PREFIX + "/policy")).json())["data"]
    assert policy["settings"]["loopback"] is False
    assert policy["operations"]["direct_git_url"]["allowed"] is False and policy["operations"]["install"]["allowed"]


async def test_allowed_git_url_install_runs_from_a_local_repo(aiohttp_client, api_app, tmp_path):
    app, api, _root = api_app(security="allow_git_url_install = true")
    client = await aiohttp_client(app)
    repo = tmp_path / "demo" / "sources" / "demo-video-helper"
    resp = await client.post("/customnode/install/git_url", json={"url": repo.as_uri()})
    assert resp.status == 200, await resp.text()
    task = (await resp.json())["data"]["task"]
    assert task["params"]["policy"]["allowed"] is True
    import asyncio

    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 30)
    assert api.manager.queue.get(task["id"]).state.value == "done"


# --- who may drive the Manager: the request guard (manager/api/origin.py) -------------------------
# A browser page is told apart by what the browser sends and the page cannot forge (Origin,
# Sec-Fetch-Site, Host); the Content-Type is not a signal: fetchApi posts JSON as text/plain and
# urllib labels every body as a form.
def _base(client) -> str:
    return f"http://{client.server.host}:{client.server.port}"


def _same_origin(client) -> dict[str, str]:
    """What Chromium sends for ComfyUI's api.fetchApi(path, {method: 'POST', body: JSON})."""
    return {
        "Origin": _base(client),
        "Sec-Fetch-Site": "same-origin",
        "Sec-Fetch-Mode": "cors",
        "Content-Type": "text/plain;charset=UTF-8",
    }


async def test_same_origin_page_posts_json_as_text_plain(aiohttp_client, api_app):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    resp = await client.post("/api/manager/queue/install", data=json.dumps(INSTALL_ROW), headers=_same_origin(client))
    assert resp.status == 200, await resp.text()
    assert api.manager.queue.status()["total_count"] == 1
    resp = await client.post("/manager/db_mode", data=json.dumps({"value": "local"}), headers=_same_origin(client))
    assert resp.status == 200, await resp.text()
    assert "db_mode = local" in api.manager.config.path.read_text(encoding="utf-8")
    # the classic UI's no-body POSTs (no Content-Type at all) and the default-port spelling of the origin
    resp = await client.post(
        "/manager/queue/start", headers={"Origin": _base(client)}, skip_auto_headers=["Content-Type"]
    )
    assert resp.status in (200, 201), await resp.text()


async def test_urllib_scripts_post_json_with_the_form_label(aiohttp_client, api_app):
    """urllib sends application/x-www-form-urlencoded for any body and no Origin: a script, accepted."""
    import asyncio
    import urllib.request

    app, api, _root = api_app()
    client = await aiohttp_client(app)

    def post(path: str, body: bytes) -> tuple[int, str, bytes]:
        req = urllib.request.Request(_base(client) + path, data=body, method="POST")
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, req.get_header("Content-type"), resp.read()

    status, ctype, _ = await asyncio.to_thread(post, "/manager/queue/install", json.dumps(INSTALL_ROW).encode())
    assert status == 200 and ctype == "application/x-www-form-urlencoded"
    assert api.manager.queue.status()["total_count"] == 1
    status, _, body = await asyncio.to_thread(post, PREFIX + "/queue/start", b"")
    assert status == 200 and json.loads(body)["ok"] is True
    status, _, _ = await asyncio.to_thread(post, "/manager/policy/component", b'{"value": "mine"}')
    assert status == 200 and api.manager.config["component_policy"] == "mine"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},  # a page of another host
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},  # a no-cors form post
        {"Origin": "null"},  # a sandboxed frame, a file:// page
        {"Origin": "http://127.0.0.1:9", "Sec-Fetch-Site": "same-site"},  # another local program's page
        {"Origin": "http://127.0.0.1:9"},
        {"Origin": "http://{host}.evil.example"},
    ],
    ids=["other-host", "other-host-cross-site", "cross-site", "null", "same-site-other-port", "other-port", "suffix"],
)
async def test_cross_site_requests_are_refused_and_change_nothing(aiohttp_client, api_app, headers):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    headers = {k: v.replace("{host}", str(client.server.host)) for k, v in headers.items()}
    before = api.manager.config.path.read_text(encoding="utf-8")
    for path, body in (
        ("/manager/queue/install", INSTALL_ROW),
        ("/api/manager/queue/start", None),
        (PREFIX + "/queue/reset", None),
        ("/api/manager/reboot", None),
        ("/manager/db_mode", {"value": "remote"}),
        (PREFIX + "/network", {"mode": "public"}),
    ):
        data = json.dumps(body) if body is not None else None
        err = await _error(
            await client.post(path, data=data, headers={"Content-Type": "text/plain", **headers}),
            403,
            "cross_origin_denied",
        )
        assert err["hint"], err
    # the classic UI's GET writes are guarded like POSTs; plain reads stay open to any page's navigation
    await _error(await client.get("/manager/queue/start", headers=headers), 403, "cross_origin_denied")
    await _error(await client.get("/manager/share_option?value=none", headers=headers), 403, "cross_origin_denied")
    assert (await client.get("/manager/share_option", headers=headers)).status == 200
    assert _nothing_queued(api) and not api.manager.queue.worker_alive
    assert api.manager.config.path.read_text(encoding="utf-8") == before


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "0.0.0.0:{port}",
        "192.168.1.20:{port}",
        "[fe80::1]:{port}",
        "localhost.evil.example:{port}",
    ],
)
async def test_a_rebinding_host_is_refused_even_for_reads(aiohttp_client, api_app, host):
    """DNS rebinding: the page of evil.example, now resolved to 127.0.0.1, is same-origin with itself."""
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    host = host.replace("{port}", str(client.server.port))
    page = {"Host": host, "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
    err = await _error(await client.get(PREFIX + "/config", headers={"Host": host}), 403, "host_not_allowed")
    assert "allowed_hosts" in err["hint"]
    await _error(await client.get("/customnode/installed", headers={"Host": host}), 403, "host_not_allowed")
    await _error(await client.post("/manager/queue/uninstall", json=INSTALL_ROW, headers=page), 403, "host_not_allowed")
    await _error(await client.get("/ws", headers=page), 403, "host_not_allowed")
    assert _nothing_queued(api)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "localhost:{port}",
        "LOCALHOST.:{port}",
        "[::1]:{port}",
        "127.0.0.2:{port}",
        "localhost",
        "panel.localhost:{port}",
    ],
)
async def test_loopback_host_names_are_accepted(aiohttp_client, api_app, host):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    host = host.replace("{port}", str(client.server.port))
    assert (await client.get(PREFIX + "/config", headers={"Host": host})).status == 200
    resp = await client.post("/manager/queue/start", headers={"Host": host, "Origin": f"http://{host}"})
    assert resp.status in (200, 201), await resp.text()


async def test_allowed_hosts_admits_a_proxy_name_and_its_pages(aiohttp_client, api_app):
    app, api, _root = api_app(security="allowed_hosts = comfy.lan, studio.example:8443")
    client = await aiohttp_client(app)
    assert (await client.get(PREFIX + "/config", headers={"Host": "comfy.lan:8188"})).status == 200
    # a proxy that rewrites Host to the listener: the page's origin is accepted because it is listed
    resp = await client.post("/manager/queue/start", headers={"Origin": "https://studio.example:8443"})
    assert resp.status in (200, 201), await resp.text()
    await _error(await client.get(PREFIX + "/config", headers={"Host": "studio.example:9999"}), 403, "host_not_allowed")
    await _error(
        await client.post("/manager/queue/start", headers={"Origin": "https://studio.example"}),
        403,
        "cross_origin_denied",
    )
    # allowed_hosts is a security key: no door may change it
    await _error(
        await client.post(PREFIX + "/config", json={"changes": {"allowed_hosts": ["evil.example"]}}),
        403,
        "security_denied",
    )


async def test_a_lan_listener_answers_scripts_under_any_host_but_pages_only_under_known_names(aiohttp_client, api_app):
    """A LAN listener: scripts may use any name; a browser page must name an address, this machine
    or an allowed_hosts entry (else a rebinding page in a trusted LAN browser could act)."""
    import socket

    app, api, _root = api_app(listen="0.0.0.0", security="allowed_hosts = studio.lan")
    client = await aiohttp_client(app)
    assert (await client.get(PREFIX + "/config", headers={"Host": "comfy-box.lan:8188"})).status == 200
    await _error(
        await client.post(
            "/manager/queue/start", headers={"Host": "192.168.1.20:8188", "Origin": "http://evil.example"}
        ),
        403,
        "cross_origin_denied",
    )
    for page_host in ("comfy-box.lan:8188", "evil.example", "192.168.1.20.nip.io:8188"):
        err = await _error(
            await client.post("/manager/queue/start", headers={"Host": page_host, "Origin": f"http://{page_host}"}),
            403,
            "host_not_allowed",
        )
        assert "allowed_hosts" in err["hint"], err
        await _error(
            await client.get(PREFIX + "/config", headers={"Host": page_host, "Sec-Fetch-Site": "same-origin"}),
            403,
            "host_not_allowed",
        )
    own = socket.gethostname().lower()
    for page_host in ("192.168.1.20:8188", "[fd00::5]:8188", "studio.lan", f"{own}:8188", "localhost:8188"):
        resp = await client.post("/manager/queue/start", headers={"Host": page_host, "Origin": f"http://{page_host}"})
        assert resp.status in (200, 201), (page_host, await resp.text())


@pytest.mark.parametrize(
    "body,ctype,code",
    [
        (b"value=local", "application/x-www-form-urlencoded", "content_type_refused"),
        (
            b'--x\r\nContent-Disposition: form-data; name="value"\r\n\r\nlocal\r\n--x--\r\n',
            "multipart/form-data; boundary=x",
            "content_type_refused",
        ),
        (b"local", "text/plain;charset=UTF-8", "request_invalid"),
        (b"", "application/x-www-form-urlencoded", "request_invalid"),
    ],
)
async def test_a_body_that_is_not_json_is_refused_naming_the_fix(aiohttp_client, api_app, body, ctype, code):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    before = api.manager.config.path.read_text(encoding="utf-8")
    for path in ("/manager/db_mode", "/manager/queue/install", PREFIX + "/queue"):
        err = await _error(await client.post(path, data=body, headers={"Content-Type": ctype}), 400, code)
        assert "JSON" in err["hint"], err
    assert api.manager.config.path.read_text(encoding="utf-8") == before and _nothing_queued(api)


async def test_body_cap_and_malformed_json(aiohttp_client, api_app):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    big = b'{"kind": "fix", "target": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
    await _error(
        await client.post(PREFIX + "/queue", data=big, headers={"Content-Type": "application/json"}),
        413,
        "request_too_large",
    )
    await _error(
        await client.post(PREFIX + "/queue", data=b"{not json", headers={"Content-Type": "application/json"}),
        400,
        "request_invalid",
    )
    await _error(await client.post(PREFIX + "/queue", json=["a", "list"]), 400, "request_invalid")
    err = await _error(await client.post("/customnode/install/git_url", json={"link": "x"}), 400, "request_invalid")
    assert "'url'" in err["message"]
    assert _nothing_queued(api)


async def test_network_mode_route_persists_and_moves_the_gate(aiohttp_client, api_app):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    data = (await (await client.get(PREFIX + "/network")).json())["data"]
    assert data["mode"] == "offline" and data["source"] == "file"
    resp = await client.post(PREFIX + "/network", json={"mode": "public"})
    assert resp.status == 200, await resp.text()
    assert api.manager.gate.mode.value == "public"
    assert "network_mode = public" in api.manager.config.path.read_text(encoding="utf-8")
    assert (await client.post(PREFIX + "/network", json={"mode": "offline"})).status == 200
    assert api.manager.gate.offline
    await _error(await client.post(PREFIX + "/network", json={"mode": "sometimes"}), 400, "request_invalid")


async def test_strong_level_may_still_go_offline(aiohttp_client, api_app):
    app, api, _root = api_app(default="security_level = strong", network_mode="public")
    client = await aiohttp_client(app)
    assert (await client.post(PREFIX + "/network", json={"mode": "offline"})).status == 200
    assert api.manager.gate.offline
    await _error(await client.post(PREFIX + "/network", json={"mode": "private"}), 403, "security_denied")


async def test_channel_and_config_writes(aiohttp_client, api_app, tmp_path):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    other = tmp_path / "demo" / "demo-channel"
    resp = await client.post("/manager/channel_url_list", json={"value": "demo"})
    assert resp.status == 200, await resp.text()
    await _error(
        await client.post(PREFIX + "/channels", json={"url": "https://channels.example/c"}), 403, "security_denied"
    )
    resp = await client.post(PREFIX + "/channels", json={"url": other.as_uri()})
    assert resp.status == 200, await resp.text()
    await _error(
        await client.post(PREFIX + "/config", json={"changes": {"channel_url": "https://channels.example/c"}}),
        403,
        "security_denied",
    )
    await _error(
        await client.post(PREFIX + "/config", json={"changes": {"channel_url": "http://10.0.0.5/c"}}),
        403,
        "security_denied",
    )
    resp = await client.post(
        PREFIX + "/config", json={"changes": {"db_mode": "remote", "update_policy": "nightly-comfyui"}}
    )
    assert resp.status == 200, await resp.text()
    text = api.manager.config.path.read_text(encoding="utf-8")
    assert "db_mode = remote" in text and "update_policy = nightly-comfyui" in text
    for key, value in (
        ("git_exe", "/tmp/evil"),
        ("security_level", "weak"),
        ("allow_pip_install", True),
        ("pip_index_url", "https://evil.example/simple"),
    ):
        err = await _error(
            await client.post(PREFIX + "/config", json={"changes": {key: value}}), 403, "security_denied"
        )
        assert "by hand" in err["hint"]
    assert api.manager.config.path.read_text(encoding="utf-8") == text
    config = (await (await client.get(PREFIX + "/config")).json())["data"]
    writable = {row["key"]: row["writable"] for row in config["settings"]}
    assert writable["db_mode"] is True and writable["git_exe"] is False
    assert await (await client.get("/manager/policy/update")).text() == "nightly-comfyui"
    assert (await client.post("/manager/policy/update", json={"value": "stable"})).status == 200
    assert api.manager.config["update_policy"] == "stable-comfyui"


async def test_reboot_answers_then_restarts(aiohttp_client, api_app):
    import asyncio

    called = asyncio.Event()
    app, api, _root = api_app(restart=called.set)
    client = await aiohttp_client(app)
    resp = await client.post("/manager/reboot")
    assert resp.status == 200 and (await resp.json())["data"]["restarting"] is True
    await asyncio.wait_for(called.wait(), 5)


@pytest.mark.parametrize(
    "task",
    [
        {"kind": "install", "target": "https://example.invalid/evil.git"},
        {"kind": "install", "target": "git@example.invalid:owner/evil.git"},
        {"kind": "install", "target": "/tmp/somewhere/pack"},
        {"kind": "install", "target": "file:///tmp/somewhere/pack"},
        {"kind": "install", "target": "demo-image-tools", "params": {"url": "https://example.invalid/evil.git@abc123"}},
        {"kind": "reinstall", "target": "x", "params": {"url": "https://example.invalid/evil.git"}},
    ],
)
async def test_a_url_or_path_in_any_field_is_a_risky_source(aiohttp_client, api_app, task):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    err = await _error(await client.post(PREFIX + "/queue", json=task), 403, "security_denied")
    assert "allow_git_url_install" in err["hint"] and err["details"]["risk"] in ("git_url", "local_path")
    assert _nothing_queued(api)


async def test_a_bad_pack_id_is_refused_before_queueing(aiohttp_client, api_app):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    await _error(
        await client.post(PREFIX + "/queue", json={"kind": "install", "target": "../../etc"}), 400, "invalid_name"
    )
    assert _nothing_queued(api)


# --- issue 17, finding 1: DNS rebinding, proved on the tree ------------------------------------
REBOUND = ["evil.example", "evil.example:{port}", "EVIL.EXAMPLE:{port}", "127.0.0.1.nip.io:{port}", "0.0.0.0:{port}"]


@pytest.mark.parametrize("host", REBOUND)
async def test_finding_1_a_rebound_page_changes_nothing_and_reads_nothing(aiohttp_client, api_app, tmp_path, host):
    """A page of evil.example resolved to 127.0.0.1: uninstall, channel switch, config read and the
    websocket are each refused with a code, and no file of the tree changes."""
    import asyncio

    from support import treesum

    app, api, root = api_app()
    planned = api.manager.plan("install", "demo-mask-utils", listen="127.0.0.1")
    (task,) = await asyncio.to_thread(api.manager.submit, [planned])  # core work: off the loop
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)
    client = await aiohttp_client(app)
    host = host.replace("{port}", str(client.server.port))
    page = {"Host": host, "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
    before = treesum.listing(tmp_path)
    row = {"id": "demo-mask-utils", "version": "nightly", "ui_id": "e1"}
    refused = [
        await client.post(
            "/manager/queue/uninstall", data=json.dumps(row), headers={**page, "Content-Type": "text/plain"}
        ),
        await client.post(PREFIX + "/queue", json={"kind": "uninstall", "target": "demo-mask-utils"}, headers=page),
        await client.post("/manager/channel_url_list", json={"value": "demo"}, headers=page),
        await client.post(
            PREFIX + "/channels", json={"url": (tmp_path / "demo" / "demo-channel").as_uri()}, headers=page
        ),
        await client.get(PREFIX + "/config", headers=page),
        await client.get("/manager/channel_url_list", headers=page),
        await client.get(
            "/ws",
            headers={
                **page,
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        ),
    ]
    for resp in refused:
        err = await _error(resp, 403, "host_not_allowed")
        assert "allowed_hosts" in err["hint"], err
    assert (await client.post("/manager/queue/start", headers=page)).status == 403
    assert api.manager.queue.status()["pending_count"] == 0
    await asyncio.to_thread(api.manager.queue.run_until_idle, 30)
    diff = treesum.changes(before, treesum.listing(tmp_path)).outside(
        "demo/ComfyUI/user/__manager/locks", "demo/ComfyUI/user/__manager/logs"
    )
    assert not diff, diff.describe()
    assert (root / "custom_nodes" / "demo-mask-utils").is_dir() and task.id
    # the control: the same uninstall from the Manager's own origin is accepted and runs
    own = f"127.0.0.1:{client.server.port}"
    resp = await client.post(
        "/manager/queue/uninstall",
        data=json.dumps(row),
        headers={"Host": own, "Origin": f"http://{own}", "Sec-Fetch-Site": "same-origin", "Content-Type": "text/plain"},
    )
    assert resp.status == 200, await resp.text()
    assert (await client.post("/manager/queue/start", headers={"Origin": f"http://{own}"})).status in (200, 201)
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)
    assert not (root / "custom_nodes" / "demo-mask-utils").exists()
