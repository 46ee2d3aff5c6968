"""Hostile network paths: plain http in public mode, redirects to hosts off the allow-list, loops,
redirects to local files, https -> http downgrades, a registry that names a local file.

Real parts: loopback aiohttp servers answering real redirects (one on 127.0.0.2 stands for a
foreign host), the real gate, model installer and registry install path. Each case ends in a
coded refusal, no connection to the refused host (socket audit) and an unchanged tree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from manager.errors import HttpsRequired, NetworkBlocked, RedirectRefused
from manager.models.install import install_model
from manager.network import NetworkGate, NetworkMode, NetworkPolicy
from manager.records import ModelEntry
from support import treesum
from support.fake_registry import FakeRegistry, make_node, make_version
from support.ops_fixtures import build_zip, cnr_files, make_env

pytestmark = pytest.mark.hostile("download")

MODEL = b"safetensors-bytes" * 64
CREATED = "2025-01-01T00:00:00Z"
REPO = "https://github.com/example/pack"


def gate(**kw: object) -> NetworkGate:
    return NetworkGate(NetworkPolicy(mode=NetworkMode.PUBLIC, **kw))  # type: ignore[arg-type]


@pytest.fixture
async def foreign() -> AsyncIterator[tuple[str, list[str]]]:
    """A server on 127.0.0.2 (a host no list names): its base URL and the paths it was asked for."""
    seen: list[str] = []

    async def any_path(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        return web.Response(body=MODEL)

    app = web.Application()
    app.router.add_get("/{tail:.*}", any_path)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.2:{port}", seen
    finally:
        await runner.cleanup()


def _entry(url: str, filename: str = "m.safetensors") -> ModelEntry:
    return ModelEntry(name="m", type="checkpoint", filename=filename, url=url)


@pytest.fixture
def env(tmp_path: Path, http_server):
    e = make_env(tmp_path, mode="public", registry_url=http_server.url("/api"))
    yield e
    e.close()


# -- plain http in public mode ------------------------------------------------------------------
@pytest.mark.parametrize("purpose", ["model", "registry", "channel", "other"])
async def test_plain_http_is_refused_before_any_socket(purpose, socket_audit_log, tmp_path):
    g = gate()
    with pytest.raises(HttpsRequired) as info:
        await g.get("http://models.example.org/x.bin", purpose=purpose)
    err = info.value
    assert err.code == "https_required" and err.details["host"] == "models.example.org"
    assert "allowed_http_hosts" in err.hint and "models.example.org" in err.hint
    with pytest.raises(HttpsRequired):
        await g.download("http://models.example.org/x.bin", tmp_path / "x.bin", purpose=purpose)
    assert list(tmp_path.iterdir()) == []
    assert socket_audit_log.inet_connects() == []


def test_plain_http_allowed_only_for_listed_hosts_and_other_purposes():
    g = gate(allowed_http_hosts=("models.example.org", "*.corp.example", "pinned.example:8080"))
    assert g.decide("http://models.example.org/x", "model")
    assert g.decide("http://a.b.corp.example/x", "registry")
    assert g.decide("http://pinned.example:8080/x", "model")
    for bad in ("http://pinned.example/x", "http://corp.example/x", "http://models.example.org.evil/x"):
        with pytest.raises(HttpsRequired):
            g.decide(bad, "model")
    assert gate().decide("http://git.example/x.git", "git")  # git and pip keep their own rules
    assert gate(http_channels=True).decide("http://channel.example/c/custom-node-list.json", "channel")


async def test_model_install_over_plain_http_leaves_the_tree_unchanged(env, socket_audit_log):
    before = treesum.listing(env.root)
    with pytest.raises(HttpsRequired) as info:
        await install_model(env.manager, _entry("http://cdn.example.org/sd.safetensors"))
    assert info.value.code == "https_required"
    assert not treesum.changes(before, treesum.listing(env.root))
    assert socket_audit_log.inet_connects() == []


def test_registry_archive_over_plain_http_is_refused(env, http_server, tmp_path, socket_audit_log):
    version = make_version("plain-pack", "pub", "1.0.0", created_at=CREATED, download_base="http://cdn.example.org")
    node = make_node(
        "plain-pack", name="P", publisher_id="pub", publisher_name="P", repository=REPO, versions=[version]
    )
    FakeRegistry([node], {"plain-pack": [version]}, prefix="/api").install(http_server)
    before = treesum.listing(env.root)
    task = env.run("install", "plain-pack@1.0.0")
    assert task.state.value == "failed"
    assert task.error["code"] == "https_required", task.error
    assert "allowed_http_hosts" in task.error["hint"]
    # the manager's own bookkeeping (operations lock, registry answer cache) aside, nothing changed
    assert not treesum.changes(before, treesum.listing(env.root)).outside("user/__manager")
    assert all(addr[0] == "127.0.0.1" for addr in socket_audit_log.inet_connects())  # type: ignore[index]


def test_registry_download_url_naming_a_local_file_is_refused(env, http_server, tmp_path):
    secret = tmp_path / "secret.zip"
    build_zip(secret, cnr_files("local-pack", "1.0.0"))
    version = make_version("local-pack", "pub", "1.0.0", created_at=CREATED)
    version["downloadUrl"] = secret.as_uri()
    node = make_node(
        "local-pack", name="L", publisher_id="pub", publisher_name="L", repository=REPO, versions=[version]
    )
    FakeRegistry([node], {"local-pack": [version]}, prefix="/api").install(http_server)
    before = treesum.listing(env.custom_nodes)
    task = env.run("install", "local-pack@1.0.0")
    assert task.state.value == "failed"
    assert task.error["code"] == "registry_error" and "not an http(s) URL" in task.error["message"]
    assert not treesum.changes(before, treesum.listing(env.custom_nodes))


# -- redirects ------------------------------------------------------------------------------------
async def test_redirect_to_a_host_off_the_list_is_refused_before_connecting(
    http_server, foreign, socket_audit_log, tmp_path
):
    base, seen = foreign

    async def bounce(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{base}/stolen.safetensors")

    http_server.route("GET", "/m.safetensors", bounce)
    dest = tmp_path / "models" / "m.safetensors"
    with pytest.raises(RedirectRefused) as info:
        await gate().download(http_server.url("/m.safetensors"), dest)
    err = info.value
    assert err.code == "redirect_refused" and err.details["reason"] == "host_not_allowed"
    assert err.details["host"].startswith("127.0.0.2:") and "allowed_download_hosts" in err.hint
    assert not dest.exists() and seen == []
    assert all(addr[0] == "127.0.0.1" for addr in socket_audit_log.inet_connects())  # type: ignore[index]
    # the admin lists the host: the same redirect is followed
    got = await gate(redirect_hosts=("127.0.0.2",)).download(http_server.url("/m.safetensors"), dest)
    assert got.read_bytes() == MODEL and seen == ["/stolen.safetensors"]


async def test_model_install_redirected_off_the_list_leaves_the_tree_unchanged(env, http_server, foreign):
    base, seen = foreign

    async def bounce(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(f"{base}/x.safetensors")

    http_server.route("GET", "/hf/x.safetensors", bounce)
    before = treesum.listing(env.root)
    with pytest.raises(RedirectRefused):
        await install_model(env.manager, _entry(http_server.url("/hf/x.safetensors")))
    assert not treesum.changes(before, treesum.listing(env.root)) and seen == []


async def test_redirect_loop_is_refused(http_server, tmp_path):
    async def to_b(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/b")

    async def to_a(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/a")

    http_server.route("GET", "/a", to_b)
    http_server.route("GET", "/b", to_a)
    with pytest.raises(RedirectRefused) as info:
        await gate().get(http_server.url("/a"), purpose="channel")
    assert info.value.details["reason"] == "loop"
    assert http_server.count("/a") == 1 and http_server.count("/b") == 1
    with pytest.raises(RedirectRefused):
        await gate().download(http_server.url("/a"), tmp_path / "x.bin")
    assert list(tmp_path.iterdir()) == []


async def test_endless_redirects_stop_at_the_cap(http_server):
    async def deeper(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"/deep?n={int(request.query.get('n', '0')) + 1}")

    http_server.route("GET", "/deep", deeper)
    with pytest.raises(RedirectRefused) as info:
        await gate().get(http_server.url("/deep"))
    assert info.value.details["reason"] == "too_many"


async def test_redirect_to_a_local_file_is_refused(http_server, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("credentials")

    async def to_file(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(secret.as_uri())

    http_server.route("GET", "/m.safetensors", to_file)
    dest = tmp_path / "out" / "m.safetensors"
    with pytest.raises(RedirectRefused) as info:
        await gate().download(http_server.url("/m.safetensors"), dest)
    assert info.value.details["reason"] == "scheme"
    assert not dest.exists() and not dest.with_name("m.safetensors.part").exists()


def test_https_to_http_downgrade_and_known_cdns():
    g = gate()
    start = "https://huggingface.co/org/repo/resolve/main/m.safetensors"
    assert g.decide_redirect(start, start, "https://cdn-lfs.hf.co/x", "model") == "https://cdn-lfs.hf.co/x"
    with pytest.raises(RedirectRefused) as info:
        g.decide_redirect(start, start, "http://cdn-lfs.hf.co/x", "model")
    assert info.value.details["reason"] == "downgrade" and "allowed_http_hosts" in info.value.hint
    with pytest.raises(RedirectRefused) as info:
        g.decide_redirect(start, start, "https://evil.example/x", "model")
    assert info.value.details["reason"] == "host_not_allowed"
    with pytest.raises(RedirectRefused):  # a public host bouncing onto this machine (SSRF)
        g.decide_redirect(start, start, "https://127.0.0.1:8188/api/queue", "model")
    assert isinstance(info.value, NetworkBlocked)  # callers that catch network_blocked still do


def test_private_mode_redirect_names_private_mirrors():
    g = NetworkGate(NetworkPolicy(mode=NetworkMode.PRIVATE, private_mirrors=("https://mirror.corp",)))
    with pytest.raises(RedirectRefused) as info:
        g.decide_redirect("https://mirror.corp/a", "https://mirror.corp/a", "https://elsewhere.example/a", "model")
    assert info.value.details["reason"] == "host_not_allowed" and "private_mirrors" in info.value.hint
