"""NetworkGate: the three modes, the mirror map, schemes, HTTP errors, TLS bypass, sessions.

Everything runs against real aiohttp servers on 127.0.0.1; refusals are proven by the socket
audit log (no connect at all), not by mocks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from aiohttp import web

from manager.errors import (
    HttpStatusError,
    NetworkBlocked,
    NetworkUnreachable,
    NotFound,
    OfflineModeEnabled,
    ResponseTooLarge,
)
from manager.network import GateResponse, NetworkGate, NetworkMode, NetworkPolicy, run_sync
from support import tools

PUBLIC_RAW = "https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main/custom-node-list.json"


def gate(mode: NetworkMode = NetworkMode.PUBLIC, **kw) -> NetworkGate:
    return NetworkGate(NetworkPolicy(mode=mode, **kw))


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- public --------------------------------------------------------------------------------
async def test_public_fetches_and_sends_user_agent(http_server):
    http_server.static("/f.json", '{"a": 1}', etag='"e1"')
    resp = await gate().get(http_server.url("/f.json"), purpose="channel")
    assert isinstance(resp, GateResponse)
    assert resp.status == 200 and resp.json() == {"a": 1}
    assert resp.headers["etag"] == '"e1"'  # plain dict, lower-case keys
    assert http_server.requests[-1].headers["User-Agent"] == "comfyui-offline-manager"


def test_run_sync_outside_loop_and_refused_inside(http_server):
    http_server.static("/x", "hello", content_type="text/plain")
    g = gate()
    assert run_sync(g.get(http_server.url("/x"))).text() == "hello"

    async def inside():
        with pytest.raises(RuntimeError, match="await"):
            run_sync(g.get(http_server.url("/x")))

    asyncio.run(inside())


async def test_304_is_returned_and_4xx_5xx_raise(http_server):
    http_server.static("/etag", "body", etag='"v1"')
    g = gate()
    resp = await g.get(http_server.url("/etag"), headers={"If-None-Match": '"v1"'})
    assert resp.status == 304 and resp.not_modified and resp.body == b""
    with pytest.raises(HttpStatusError) as info:
        await g.get(http_server.url("/missing"), purpose="channel")
    assert info.value.details["status"] == 404 and "channels.list" in info.value.hint
    http_server.static("/boom", "err", status=500)
    with pytest.raises(HttpStatusError) as info:
        await g.get(http_server.url("/boom"))
    assert info.value.details["status"] == 500


async def test_connection_refused_is_unreachable_with_hint():
    with pytest.raises(NetworkUnreachable) as info:
        await gate().get(f"http://127.0.0.1:{closed_port()}/x.json", purpose="channel")
    hint = info.value.hint
    assert "network_mode" in hint and "http_timeout" in hint and "PROXY" in hint
    assert info.value.details["reason"] == "connect"


async def test_timeout_is_unreachable(http_server):
    async def slow(request):
        await asyncio.sleep(2)
        return web.Response(text="late")

    http_server.route("GET", "/slow", slow)
    with pytest.raises(NetworkUnreachable) as info:
        await gate(total_timeout=0.3).get(http_server.url("/slow"))
    assert info.value.details["reason"] == "timeout" and "http_timeout" in info.value.hint


async def test_max_bytes_cap(http_server):
    http_server.static("/big", b"x" * 5000, content_type="application/octet-stream")
    with pytest.raises(ResponseTooLarge):
        await gate().get(http_server.url("/big"), max_bytes=1000)


async def test_credentials_are_redacted_in_errors():
    with pytest.raises(NetworkUnreachable) as info:
        await gate().get(f"http://user:s3cret@127.0.0.1:{closed_port()}/x")
    assert "s3cret" not in str(info.value) and "s3cret" not in str(info.value.details)


# -- private -------------------------------------------------------------------------------
async def test_private_refuses_public_host_before_any_connect(socket_audit_log):
    g = gate(NetworkMode.PRIVATE, private_mirrors=("http://127.0.0.1:1",))
    with pytest.raises(NetworkBlocked) as info:
        await g.get(PUBLIC_RAW, purpose="channel")
    assert not isinstance(info.value, OfflineModeEnabled)
    assert info.value.code == "network_blocked"
    assert "private_mirrors" in info.value.hint and "[mirrors]" in info.value.hint
    with pytest.raises(NetworkBlocked):
        await g.download("https://huggingface.co/x/y.safetensors", Path("/nonexistent/never/y"))
    assert socket_audit_log.inet_connects() == []


async def test_private_allows_listed_loopback_mirror(http_server, socket_audit_log):
    http_server.static("/mirror/custom-node-list.json", '{"custom_nodes": []}')
    g = gate(NetworkMode.PRIVATE, private_mirrors=(http_server.url("/mirror"),))
    resp = await g.get(http_server.url("/mirror/custom-node-list.json"), purpose="channel")
    assert resp.json() == {"custom_nodes": []}
    assert socket_audit_log.inet_connects()  # it really connected
    # the same host outside the allowed path is refused
    with pytest.raises(NetworkBlocked):
        g.decide(http_server.url("/elsewhere/x"))


def test_private_prefix_matches_only_at_boundaries():
    g = gate(
        NetworkMode.PRIVATE, private_mirrors=("https://mirror.corp",), allowed_prefixes=("https://api.comfy.org/",)
    )
    assert g.decide("https://mirror.corp/a/b") == "https://mirror.corp/a/b"
    assert g.decide("HTTPS://Mirror.Corp/a") == "HTTPS://Mirror.Corp/a"  # case of scheme/host
    assert g.decide("https://api.comfy.org/nodes?page=1", "registry")
    for bad in (
        "https://mirror.corp.evil.com/x",
        "https://mirror.corp:8443/x",
        "https://mirror.corpx/",
        "https://api.comfy.org.evil/nodes",
    ):
        with pytest.raises(NetworkBlocked):
            g.decide(bad)


async def test_private_refuses_a_redirect_to_a_public_host(http_server, socket_audit_log):
    async def bounce(request):
        raise web.HTTPFound(PUBLIC_RAW)

    http_server.route("GET", "/m/x.json", bounce)
    g = gate(NetworkMode.PRIVATE, private_mirrors=(http_server.url("/m"),))
    with pytest.raises(NetworkBlocked):
        await g.get(http_server.url("/m/x.json"))
    assert all(addr[0] == "127.0.0.1" for addr in socket_audit_log.inet_connects())


async def test_redirects_are_followed_but_never_to_local_files(http_server, tmp_path):
    (tmp_path / "secret").write_text("s")
    http_server.static("/real", "ok", content_type="text/plain")

    async def hop(request):
        raise web.HTTPMovedPermanently("/real")

    async def to_file(request):
        raise web.HTTPFound((tmp_path / "secret").as_uri())

    http_server.route("GET", "/hop", hop)
    http_server.route("GET", "/tofile", to_file)
    resp = await gate().get(http_server.url("/hop"))
    assert resp.text() == "ok" and resp.url.endswith("/real")
    with pytest.raises(NetworkBlocked):
        await gate().get(http_server.url("/tofile"))


# -- offline -------------------------------------------------------------------------------
async def test_offline_refuses_everything_remote_with_zero_connects(http_server, socket_audit_log, tmp_path):
    http_server.static("/x.json", "{}")
    g = gate(NetworkMode.OFFLINE, private_mirrors=(http_server.url(),))
    for url, purpose in (
        (http_server.url("/x.json"), "channel"),
        (PUBLIC_RAW, "channel"),
        ("https://api.comfy.org/nodes", "registry"),
        ("https://pypi.org/simple/", "pip"),
    ):
        with pytest.raises(OfflineModeEnabled) as info:
            await g.get(url, purpose=purpose)
        assert isinstance(info.value, ConnectionError)  # generic callers can catch it too
        assert "network_mode" in info.value.hint
    with pytest.raises(OfflineModeEnabled):
        g.decide("git@github.com:owner/repo.git", "git")
    with pytest.raises(OfflineModeEnabled):
        await g.download(http_server.url("/x.json"), tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "x.json.part").exists()
    assert socket_audit_log.inet_connects() == []
    assert http_server.requests == []


async def test_offline_reads_local_files(tmp_path, socket_audit_log):
    f = tmp_path / "dir with space" / "model-list.json"
    f.parent.mkdir()
    f.write_text('{"models": []}')
    g = gate(NetworkMode.OFFLINE)
    assert (await g.get(f.as_uri())).json() == {"models": []}
    assert (await g.get(str(f))).json() == {"models": []}  # a plain path works too
    with pytest.raises(NotFound):
        await g.get((tmp_path / "nope.json").as_uri())
    assert socket_audit_log.inet_connects() == []


# -- mirror map ----------------------------------------------------------------------------
async def test_mirror_map_rewrites_before_deciding(http_server, socket_audit_log):
    http_server.static("/gh/ltdrdata/ComfyUI-Manager/main/custom-node-list.json", '{"custom_nodes": [1]}')
    mirror = http_server.url("/gh/")
    g = gate(
        NetworkMode.PRIVATE,
        private_mirrors=(mirror,),
        mirror_map=(
            ("https://raw.githubusercontent.com/", mirror),
            ("https://raw.githubusercontent.com/ltdrdata/", "http://never.used/"),
        ),
    )
    assert g.decide(PUBLIC_RAW) == mirror + "ltdrdata/ComfyUI-Manager/main/custom-node-list.json"
    resp = await g.get(PUBLIC_RAW, purpose="channel")
    assert resp.json() == {"custom_nodes": [1]}  # first matching rule wins
    assert http_server.count("/gh/ltdrdata/ComfyUI-Manager/main/custom-node-list.json") == 1
    assert all(addr[0] == "127.0.0.1" for addr in socket_audit_log.inet_connects())


async def test_mirror_map_onto_a_local_folder_works_offline(tmp_path, socket_audit_log):
    (tmp_path / "main").mkdir()
    (tmp_path / "main" / "extras.json").write_text('{"ok": true}')
    g = gate(
        NetworkMode.OFFLINE,
        mirror_map=(("https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager", tmp_path.as_uri()),),
    )
    resp = await g.get("https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main/extras.json")
    assert resp.json() == {"ok": True}
    assert socket_audit_log.inet_connects() == []


# -- schemes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url,purpose",
    [
        ("ext::sh -c touch% /tmp/pwned", "git"),
        ("fd::3", "git"),
        ("ftp://example.com/x", "model"),
        ("ssh://git@github.com/a/b.git", "model"),
        ("git@github.com:a/b.git", "pip"),
        ("htps://github.com/a/b", "git"),
        ("https:///no-host", "other"),
        ("", "other"),
    ],
)
def test_unsupported_schemes_are_blocked(url, purpose, socket_audit_log):
    with pytest.raises(NetworkBlocked):
        gate().decide(url, purpose)
    assert socket_audit_log.inet_connects() == []


def test_git_accepts_ssh_forms_and_local_paths_are_local():
    g = gate()
    assert g.decide("ssh://git@github.com/a/b.git", "git").startswith("ssh://")
    assert g.decide("git@github.com:a/b.git", "git") == "git@github.com:a/b.git"
    for local in ("file:///srv/channel", "/srv/channel", "./channel", "C:\\models\\x", "models/a:b"):
        assert NetworkGate.is_local(local), local
        assert g.decide(local) == local
    for remote in ("https://x/y", "git@host:a/b", "ext::x"):
        assert not NetworkGate.is_local(remote)


# -- TLS -----------------------------------------------------------------------------------
@pytest.fixture
def tls_server(tmp_path):
    """A self-signed HTTPS server on 127.0.0.1 (openssl CLI makes the certificate)."""
    tools.require("openssl")  # missing: the test fails with the install command
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict = {}

    async def boot():
        app = web.Application()

        async def answer(request):
            return web.json_response({"tls": True})

        app.router.add_get("/x.json", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        state["runner"] = runner
        state["port"] = site._server.sockets[0].getsockname()[1]

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(boot())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    yield f"https://127.0.0.1:{state['port']}/x.json"
    asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


async def test_untrusted_certificate_fails_with_bypass_ssl_hint(tls_server):
    with pytest.raises(NetworkUnreachable) as info:
        await gate().get(tls_server)
    assert info.value.details["reason"] == "ssl" and "bypass_ssl" in info.value.hint


async def test_bypass_ssl_fetches_and_warns_once(tls_server, caplog):
    g = gate(bypass_ssl=True)
    with caplog.at_level(logging.WARNING, logger="offline_manager.network"):
        assert (await g.get(tls_server)).json() == {"tls": True}
        assert (await g.get(tls_server)).json() == {"tls": True}
    warnings = [r for r in caplog.records if "bypass_ssl" in r.getMessage()]
    assert len(warnings) == 1 and "NOT verified" in warnings[0].getMessage()


async def test_session_carries_policy():
    g = gate(connect_timeout=2.5, total_timeout=12.0, user_agent="ua-test")
    async with g.session() as sess:
        assert sess.timeout.total == 12.0 and sess.timeout.sock_connect == 2.5
        assert sess.trust_env is True
        assert sess.headers["User-Agent"] == "ua-test"
    async with g.session(streaming=True) as sess:
        assert sess.timeout.total is None and sess.timeout.sock_read == 12.0
