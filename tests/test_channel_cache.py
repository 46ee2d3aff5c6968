"""ChannelCache: TTL, ETag/Last-Modified revalidation, stale fallback, corruption, bad bodies.

A real loopback server answers; an injectable clock drives the TTL; the cache lives in tmp_path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from aiohttp import web

from manager.channel_cache import ChannelCache, cache_file_name, format_age
from manager.errors import CacheCorrupt, CacheMissing, ChannelDataInvalid, NetworkBlocked, NetworkUnreachable
from manager.network import NetworkGate, NetworkMode, NetworkPolicy, run_sync

DAY = 86400.0
GOOD = b'{"custom_nodes": [{"title": "A"}]}'
NEWER = b'{"custom_nodes": [{"title": "A"}, {"title": "B"}]}'


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_cache(tmp_path: Path, clock: Clock, mode: NetworkMode = NetworkMode.PUBLIC, **policy) -> ChannelCache:
    gate = NetworkGate(NetworkPolicy(mode=mode, **policy))
    return ChannelCache(tmp_path / "cache", gate, ttl=DAY, clock=clock)


def cut_short(data: bytes, claimed: int):
    """A handler that announces ``claimed`` bytes, sends ``data`` and drops the connection."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(claimed), "Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(data)
        request.transport.close()
        return resp

    return handler


# -- TTL and revalidation --------------------------------------------------------------------
async def test_fresh_copy_needs_no_request_until_ttl(http_server, tmp_path, clock):
    http_server.static("/ch/custom-node-list.json", GOOD, etag='"v1"')
    cache = make_cache(tmp_path, clock)
    url = http_server.url("/ch/custom-node-list.json")
    first = await cache.aget(url)
    assert first.source == "fetched" and first.data == GOOD and first.notice is None
    clock.advance(DAY - 60)
    second = await cache.aget(url)
    assert second.source == "fresh" and second.data == GOOD
    assert second.age_seconds == pytest.approx(DAY - 60)
    assert http_server.count("/ch/custom-node-list.json") == 1  # no request while fresh
    clock.advance(120)
    third = await cache.aget(url)
    assert http_server.count("/ch/custom-node-list.json") == 2  # expired: asked again
    assert third.source == "revalidated" and third.data == GOOD
    assert http_server.requests[-1].headers.get("If-None-Match") == '"v1"'
    assert cache.peek(url).fetched_at == clock.t  # 304 bumps fetched_at
    assert (await cache.aget(url)).source == "fresh"


async def test_changed_file_is_refetched_after_ttl(http_server, tmp_path, clock):
    http_server.static("/c.json", GOOD, etag='"v1"')
    cache = make_cache(tmp_path, clock)
    url = http_server.url("/c.json")
    await cache.aget(url)
    http_server.static("/c.json", NEWER, etag='"v2"')
    assert (await cache.aget(url)).data == GOOD  # still fresh
    clock.advance(DAY + 1)
    got = await cache.aget(url)
    assert got.source == "fetched" and got.data == NEWER and cache.peek(url).etag == '"v2"'


async def test_last_modified_revalidation(http_server, tmp_path, clock):
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"

    async def handler(request):
        if request.headers.get("If-Modified-Since") == stamp:
            return web.Response(status=304)
        return web.Response(body=GOOD, headers={"Last-Modified": stamp}, content_type="application/json")

    http_server.route("GET", "/lm.json", handler)
    cache = make_cache(tmp_path, clock)
    url = http_server.url("/lm.json")
    await cache.aget(url)
    clock.advance(2 * DAY)
    got = await cache.aget(url)
    assert got.source == "revalidated" and got.data == GOOD
    assert http_server.requests[-1].headers["If-Modified-Since"] == stamp


async def test_refresh_force_and_never(http_server, tmp_path, clock):
    http_server.static("/f.json", GOOD, etag='"v1"')
    cache = make_cache(tmp_path, clock)
    url = http_server.url("/f.json")
    with pytest.raises(CacheMissing) as info:
        await cache.aget(url, refresh="never")
    assert "cm-cli.py update-cache" in info.value.hint
    assert http_server.count("/f.json") == 0
    await cache.aget(url)
    assert (await cache.aget(url, refresh="force")).source == "revalidated"
    assert http_server.count("/f.json") == 2
    clock.advance(10 * DAY)
    never = await cache.aget(url, refresh="never")
    assert never.source == "stale" and "10 days" in never.notice.message
    assert http_server.count("/f.json") == 2
    with pytest.raises(ValueError):
        await cache.aget(url, refresh="sometimes")


# -- stale fallback ------------------------------------------------------------------------
async def test_stale_copy_with_its_age_when_server_is_down(http_server, tmp_path, clock):
    http_server.static("/s.json", GOOD)
    cache = make_cache(tmp_path, clock)
    url = http_server.url("/s.json")
    await cache.aget(url)
    http_server.stop()
    clock.advance(3 * DAY + 2 * 3600)
    got = await cache.aget(url)
    assert got.source == "stale" and got.stale and got.data == GOOD
    assert got.age_seconds == pytest.approx(3 * DAY + 2 * 3600)
    assert got.notice.level == "warning" and got.notice.code == "cache_stale"
    assert "3 days 2 h" in got.notice.message
    assert got.notice.details["reason"] == "network_unreachable"
    assert "network_mode" in got.notice.hint


async def test_stale_copy_when_server_answers_500(http_server, tmp_path, clock):
    http_server.static("/e.json", GOOD)
    cache = make_cache(tmp_path, clock)
    url = http_server.url("/e.json")
    await cache.aget(url)
    http_server.static("/e.json", "oops", status=500)
    clock.advance(2 * DAY)
    got = await cache.aget(url)
    assert got.source == "stale" and got.data == GOOD and got.notice.details["reason"] == "http_status"


async def test_no_copy_and_no_network_is_a_clear_error(tmp_path, clock):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cache = make_cache(tmp_path, clock)
    with pytest.raises(NetworkUnreachable) as info:
        await cache.aget(f"http://127.0.0.1:{port}/custom-node-list.json")
    assert "http_timeout" in info.value.hint


# -- modes -------------------------------------------------------------------------------------
async def test_offline_serves_cache_at_any_age_without_connecting(http_server, tmp_path, clock, socket_audit_log):
    http_server.static("/o.json", GOOD)
    url = http_server.url("/o.json")
    await make_cache(tmp_path, clock).aget(url)
    socket_audit_log.reset()
    offline = make_cache(tmp_path, clock, NetworkMode.OFFLINE)
    clock.advance(400 * DAY)
    got = await offline.aget(url, refresh="force")
    assert got.data == GOOD and got.source == "stale" and got.notice.level == "info"
    assert "offline mode" in got.notice.message and "400 days" in got.notice.message
    with pytest.raises(CacheMissing) as info:
        await offline.aget(http_server.url("/never-cached.json"))
    assert "offline" in info.value.message and "`cm-cli.py update-cache`" in info.value.hint
    assert socket_audit_log.inet_connects() == []
    assert http_server.count("/o.json") == 1


async def test_local_file_urls_are_read_directly_and_never_cached(tmp_path, clock, socket_audit_log):
    src = tmp_path / "chan" / "model-list.json"
    src.parent.mkdir()
    src.write_bytes(b'{"models": []}')
    cache = make_cache(tmp_path, clock, NetworkMode.OFFLINE)
    for url in (src.as_uri(), str(src)):
        got = await cache.aget(url)
        assert got.source == "local" and got.entry is None and got.data == b'{"models": []}'
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []
    src.write_bytes(b"<html>")
    with pytest.raises(ChannelDataInvalid):
        await cache.aget(src.as_uri())
    assert socket_audit_log.inet_connects() == []


async def test_private_mode_serves_cache_and_flags_block(tmp_path, clock, socket_audit_log):
    url = "https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main/custom-node-list.json"
    private = make_cache(tmp_path, clock, NetworkMode.PRIVATE, private_mirrors=("http://127.0.0.1:1/",))
    with pytest.raises(NetworkBlocked):
        await private.aget(url)
    private.put(url, GOOD, etag='"x"')  # e.g. imported from a bundle
    assert (await private.aget(url)).source == "fresh"
    clock.advance(2 * DAY)
    got = await private.aget(url)
    assert got.source == "stale" and got.notice.details["reason"] == "network_blocked"
    assert "private_mirrors" in got.notice.hint
    assert socket_audit_log.inet_connects() == []


# -- corruption --------------------------------------------------------------------------------
async def _seed(http_server, tmp_path, clock):
    http_server.static("/k/custom-node-list.json", GOOD, etag='"v1"')
    cache = make_cache(tmp_path, clock)
    url = http_server.url("/k/custom-node-list.json")
    await cache.aget(url)
    body, sidecar = cache.paths(url)
    return cache, url, body, sidecar


async def test_tampered_body_is_detected_and_refetched(http_server, tmp_path, clock):
    cache, url, body, _ = await _seed(http_server, tmp_path, clock)
    body.write_bytes(GOOD.replace(b"A", b"Z"))  # same size, different bytes
    got = await cache.aget(url)
    assert got.source == "fetched" and got.data == GOOD
    assert got.notice.code == "cache_corrupt" and "sha256" in got.notice.message
    assert http_server.requests[-1].headers.get("If-None-Match") is None  # no revalidating a bad copy
    assert body.read_bytes() == GOOD


async def test_tampered_body_is_refused_when_refetch_fails(http_server, tmp_path, clock):
    cache, url, body, _ = await _seed(http_server, tmp_path, clock)
    body.write_bytes(b'{"custom_nodes": []}')
    http_server.stop()
    with pytest.raises(CacheCorrupt) as info:
        await cache.aget(url)
    assert "corrupt" in info.value.message and info.value.hint
    offline = ChannelCache(cache.cache_dir, NetworkGate(NetworkPolicy(mode=NetworkMode.OFFLINE)), ttl=DAY, clock=clock)
    with pytest.raises(CacheCorrupt):
        await offline.aget(url)


@pytest.mark.parametrize("tamper", ["size_lie", "garbled", "missing", "wrong_url", "body_gone"])
async def test_bad_sidecars_are_detected(http_server, tmp_path, clock, tamper):
    cache, url, body, sidecar = await _seed(http_server, tmp_path, clock)
    meta = json.loads(sidecar.read_text())
    if tamper == "size_lie":
        meta["size"] += 5
        sidecar.write_text(json.dumps(meta))
    elif tamper == "garbled":
        sidecar.write_text("{not json")
    elif tamper == "missing":
        sidecar.unlink()
    elif tamper == "wrong_url":
        meta["url"] = "http://127.0.0.1/other.json"
        sidecar.write_text(json.dumps(meta))
    else:
        body.unlink()
    assert any(row["state"] == "corrupt" for row in cache.health())
    with pytest.raises(CacheCorrupt):
        await cache.aget(url, refresh="never")
    got = await cache.aget(url)
    assert got.source == "fetched" and got.notice.code == "cache_corrupt"
    assert [row["state"] for row in cache.health()] == ["fresh"]


async def test_cached_bad_json_with_matching_sidecar_is_not_served(http_server, tmp_path, clock):
    cache, url, body, sidecar = await _seed(http_server, tmp_path, clock)
    bad = b"<html>rate limited</html>"
    body.write_bytes(bad)
    meta = json.loads(sidecar.read_text())
    meta.update(size=len(bad), sha256=hashlib.sha256(bad).hexdigest())
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CacheCorrupt) as info:
        await cache.aget(url, refresh="never")
    assert "validation" in info.value.message


# -- bad bodies from the network ---------------------------------------------------------------
async def test_bad_json_from_network_keeps_last_good_copy(http_server, tmp_path, clock):
    cache, url, body, sidecar = await _seed(http_server, tmp_path, clock)
    before = (body.read_bytes(), sidecar.read_bytes())
    http_server.static("/k/custom-node-list.json", "<html>Service Unavailable</html>", etag='"v2"')
    clock.advance(DAY + 5)
    got = await cache.aget(url)
    assert got.source == "stale" and got.data == GOOD
    assert got.notice.details["reason"] == "channel_data_invalid"
    assert (body.read_bytes(), sidecar.read_bytes()) == before
    with pytest.raises(ChannelDataInvalid):
        await cache.aget(http_server.url("/k/custom-node-list.json") + "?fresh=1")


async def test_custom_validator_rejects_body(http_server, tmp_path, clock):
    http_server.static("/list.txt", "not-a-list", content_type="text/plain")
    cache = make_cache(tmp_path, clock)

    def must_start_with_hash(data: bytes) -> None:
        if not data.startswith(b"#"):
            raise ValueError("no header")

    with pytest.raises(ChannelDataInvalid) as info:
        await cache.aget(http_server.url("/list.txt"), validate=must_start_with_hash)
    assert "no header" in info.value.message
    assert cache.entries() == []
    assert (await cache.aget(http_server.url("/list.txt"))).data == b"not-a-list"  # no default check for .txt


async def test_truncated_body_is_rejected_and_last_good_copy_stays(http_server, tmp_path, clock):
    cache, url, body, _ = await _seed(http_server, tmp_path, clock)
    http_server.route("GET", "/k/custom-node-list.json", cut_short(NEWER[:10], len(NEWER)))
    clock.advance(DAY + 5)
    got = await cache.aget(url)
    assert got.source == "stale" and got.data == GOOD
    assert got.notice.details["reason"] == "download_incomplete"
    assert body.read_bytes() == GOOD


# -- layout and inspection ---------------------------------------------------------------------
def test_layout_entries_health_and_sync_get(http_server, tmp_path, clock):
    http_server.static("/a/model-list.json", '{"models": []}', etag='"m"')
    http_server.static("/a/github-stats.json", "{}")
    cache = make_cache(tmp_path, clock)
    url_m, url_g = http_server.url("/a/model-list.json"), http_server.url("/a/github-stats.json")
    assert run_sync(cache.aget(url_m)).source == "fetched"  # from sync code: the one bridge
    clock.advance(2 * DAY)
    cache.put(url_g, b"{}")
    body, sidecar = cache.paths(url_m)
    assert body.name == cache_file_name(url_m) and body.name.endswith("_model-list.json")
    assert sidecar.name == body.name + ".meta.json"
    meta = json.loads(sidecar.read_text())
    assert {"url", "etag", "last_modified", "fetched_at", "sha256", "size"} <= set(meta)
    assert meta["sha256"] == hashlib.sha256(body.read_bytes()).hexdigest()
    assert [e.url for e in cache.entries()] == sorted([url_m, url_g])
    states = {row["url"]: row["state"] for row in cache.health()}
    assert states == {url_m: "stale", url_g: "fresh"}
    assert all(row["sha_ok"] for row in cache.health())
    assert cache.peek(http_server.url("/nothing.json")) is None
    assert not list(cache.cache_dir.glob("*.tmp"))


def test_names_and_ages():
    a = cache_file_name("https://h/x/custom-node-list.json")
    b = cache_file_name("https://h/y/custom-node-list.json")
    assert a != b and a.endswith("_custom-node-list.json")
    assert cache_file_name("https://h/").endswith("_h") or cache_file_name("https://h/").endswith("_index")
    assert cache_file_name("https://h/../../etc/passwd").count("/") == 0
    assert format_age(30) == "30 s" and format_age(3 * 86400 + 7200) == "3 days 2 h"
