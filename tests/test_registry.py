"""The Comfy Registry client against a recorded-shape registry on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from manager.channel_cache import ChannelCache
from manager.errors import (
    CacheCorrupt,
    CacheMissing,
    ConfigError,
    HttpStatusError,
    InvalidName,
    NetworkBlocked,
    NotFound,
    OfflineModeEnabled,
    RegistryError,
)
from manager.network import NetworkGate, NetworkMode, NetworkPolicy, run_sync
from manager.registry import NIGHTLY, VERSION_STATUSES, RegistryClient, RegistryListing, decode_listing, to_node_packs
from support.fake_registry import FakeRegistry, make_node, sample_data, synthetic_nodes

TTL = 3600.0


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(http_server) -> FakeRegistry:
    return FakeRegistry().install(http_server)


def gate_for(mode: NetworkMode = NetworkMode.PUBLIC, **kw) -> NetworkGate:
    return NetworkGate(NetworkPolicy(mode=mode, **kw))


def client_for(
    base: str,
    tmp_path: Path,
    clock: Clock,
    *,
    mode: NetworkMode = NetworkMode.PUBLIC,
    cached: bool = True,
    page_size: int = 2,
    **policy,
) -> RegistryClient:
    gate = gate_for(mode, **policy)
    cache = ChannelCache(tmp_path / "registry-cache", gate, ttl=TTL, clock=clock) if cached else None
    return RegistryClient(base, gate, cache, page_size=page_size)


# --- listing and paging ---------------------------------------------------------------------------
async def test_paging_assembles_every_node(http_server, tmp_path, clock):
    nodes, versions = synthetic_nodes(250)
    fake = FakeRegistry(nodes, versions).install(http_server)
    client = client_for(http_server.url(), tmp_path, clock, page_size=100)

    listing = await client.list_nodes()

    assert sorted(fake.pages) == [1, 2, 3]
    assert len(listing.nodes) == 250 == listing.total_reported
    assert {n.id for n in listing.nodes} == {n["id"] for n in nodes}
    assert listing.source == "fetched" and listing.notice is None and listing.skipped == 0
    queries = [r.query for r in http_server.requests if r.path == "/nodes"]
    assert all("limit=100" in q for q in queries)


async def test_listing_parses_real_field_names(fake, http_server, tmp_path, clock):
    listing = await client_for(http_server.url(), tmp_path, clock).list_nodes()
    by_id = {n.id: n for n in listing.nodes}
    impact = by_id["comfyui-impact-pack"]
    assert impact.name == "ComfyUI Impact Pack"
    assert impact.publisher_id == "drltdata" and impact.publisher_name == "Dr.Lt.Data"
    assert impact.repository == "https://github.com/ltdrdata/ComfyUI-Impact-Pack"
    assert impact.latest_version == "8.8.1"
    assert impact.latest_download_url.endswith("/comfyui-impact-pack/8.8.1/node.zip")
    assert impact.downloads == 1_900_000 and impact.github_stars == 2500
    assert impact.tags == ("detailer", "segmentation")
    assert by_id["comfyui-unreleased-pack"].latest_version == NIGHTLY


async def test_bad_nodes_are_skipped_and_counted(http_server, tmp_path, clock):
    nodes, versions = sample_data()
    broken = [
        {"name": "no id here"},
        make_node("../evil", name="x", publisher_id="p", publisher_name="p", repository=""),
        "not an object",
    ]
    FakeRegistry(nodes[:2] + broken + nodes[2:], versions).install(http_server)

    listing = await client_for(http_server.url(), tmp_path, clock).list_nodes()

    assert len(listing.nodes) == len(nodes)
    assert listing.skipped == 3
    problems = " | ".join(i.problem for i in listing.issues)
    assert "without an id" in problems and "unsafe node id" in problems and "not an object" in problems


async def test_second_call_within_ttl_makes_no_request(fake, http_server, tmp_path, clock):
    client = client_for(http_server.url(), tmp_path, clock)
    first = await client.list_nodes()
    requests_after_first = len(http_server.requests)
    clock.now += TTL / 2
    second = await client.list_nodes()

    assert len(http_server.requests) == requests_after_first == 3  # 5 nodes, 2 per page
    assert second.source == "fresh" and second.age_seconds == pytest.approx(TTL / 2)
    assert second.nodes == first.nodes


async def test_after_ttl_the_listing_is_refetched(fake, http_server, tmp_path, clock):
    client = client_for(http_server.url(), tmp_path, clock)
    await client.list_nodes()
    clock.now += TTL + 1
    again = await client.list_nodes()
    assert again.source == "fetched" and fake.calls["nodes"] == 6


async def test_force_refetches_and_never_stays_on_disk(fake, http_server, tmp_path, clock):
    client = client_for(http_server.url(), tmp_path, clock)
    with pytest.raises(CacheMissing):
        await client.list_nodes(refresh="never")
    assert fake.calls["nodes"] == 0
    await client.list_nodes()
    await client.list_nodes(refresh="force")
    assert fake.calls["nodes"] == 6
    assert (await client.list_nodes(refresh="never")).source == "fresh"
    assert fake.calls["nodes"] == 6


async def test_listing_is_one_cache_entry(fake, http_server, tmp_path, clock):
    client = client_for(http_server.url(), tmp_path, clock)
    await client.list_nodes()
    entries = client.cache.entries()
    assert [e.url for e in entries] == [client.listing_key()]
    doc = decode_listing(await asyncio.to_thread(Path(entries[0].path).read_bytes))
    assert len(doc["nodes"]) == 5 and doc["base_url"] == http_server.url()


async def test_a_corrupt_cached_listing_is_refetched_never_served(fake, http_server, tmp_path, clock):
    client = client_for(http_server.url(), tmp_path, clock)
    await client.list_nodes()
    body = Path(client.cache.entries()[0].path)
    await asyncio.to_thread(body.write_bytes, b'{"format": "something else"}')

    offline = client_for(http_server.url(), tmp_path, clock, mode=NetworkMode.OFFLINE)
    with pytest.raises(CacheCorrupt):
        await offline.list_nodes()
    again = await client.list_nodes()
    assert again.source == "fetched" and len(again.nodes) == 5 and fake.calls["nodes"] == 6
    assert decode_listing(await asyncio.to_thread(body.read_bytes))["base_url"] == http_server.url()


async def test_page_count_is_derived_when_the_mirror_omits_it(http_server, tmp_path, clock):
    nodes, _ = synthetic_nodes(7)

    async def handler(request):
        page, limit = int(request.query["page"]), int(request.query["limit"])
        return web.json_response(
            {"total": 7, "limit": limit, "page": page, "nodes": nodes[(page - 1) * limit : page * limit]}
        )

    http_server.route("GET", "/nodes", handler)
    listing = await client_for(http_server.url(), tmp_path, clock, page_size=3).list_nodes()
    assert len(listing.nodes) == 7 and http_server.count("/nodes") == 3


async def test_too_many_pages_is_a_registry_error(http_server, tmp_path, clock):
    nodes, versions = synthetic_nodes(30)
    FakeRegistry(nodes, versions).install(http_server)
    gate = gate_for()
    client = RegistryClient(http_server.url(), gate, None, page_size=2, max_pages=5)
    with pytest.raises(RegistryError) as err:
        await client.list_nodes()
    assert "15 pages" in err.value.message


# --- offline and private modes --------------------------------------------------------------------
async def test_offline_serves_the_cached_listing_without_any_connect(
    fake, http_server, tmp_path, clock, socket_audit_log
):
    filled = await client_for(http_server.url(), tmp_path, clock).list_nodes()
    socket_audit_log.reset()
    requests_before = len(http_server.requests)

    offline = client_for(http_server.url(), tmp_path, clock, mode=NetworkMode.OFFLINE)
    fresh = await offline.list_nodes()
    clock.now += 10 * TTL
    old = await offline.list_nodes(refresh="force")

    assert socket_audit_log.inet_connects() == []
    assert len(http_server.requests) == requests_before
    assert fresh.nodes == filled.nodes and fresh.source == "fresh"
    assert old.source == "stale" and old.notice is not None and old.notice.code == "cache_stale"
    assert "offline" in old.notice.message


async def test_offline_with_nothing_cached_fails_cleanly(fake, http_server, tmp_path, clock, socket_audit_log):
    cached = client_for(http_server.url(), tmp_path, clock, mode=NetworkMode.OFFLINE)
    with pytest.raises(CacheMissing) as err:
        await cached.list_nodes()
    assert "offline" in err.value.hint
    with pytest.raises(CacheMissing):
        await cached.versions("comfyui-kjnodes")
    with pytest.raises(OfflineModeEnabled):
        await cached.install_info("comfyui-kjnodes")

    uncached = client_for(http_server.url(), tmp_path, clock, mode=NetworkMode.OFFLINE, cached=False)
    with pytest.raises(OfflineModeEnabled) as off:
        await uncached.list_nodes()
    assert off.value.code == "offline_mode"
    assert socket_audit_log.inet_connects() == [] and http_server.requests == []


async def test_offline_serves_a_pinned_install_answer_cached_before(
    fake, http_server, tmp_path, clock, socket_audit_log
):
    await client_for(http_server.url(), tmp_path, clock).install_info("comfyui-kjnodes", "1.0.7")
    socket_audit_log.reset()
    offline = client_for(http_server.url(), tmp_path, clock, mode=NetworkMode.OFFLINE)
    info = await offline.install_info("comfyui-kjnodes", "1.0.7")
    assert info.version == "1.0.7" and socket_audit_log.inet_connects() == []


async def test_private_mode_reaches_a_listed_mirror_only(fake, http_server, tmp_path, clock, socket_audit_log):
    mirror = http_server.url()
    private = client_for(mirror, tmp_path / "a", clock, mode=NetworkMode.PRIVATE, private_mirrors=(mirror,))
    listing = await private.list_nodes()
    assert len(listing.nodes) == 5
    assert (await private.install_info("rgthree-comfy")).version == "1.0.0"

    socket_audit_log.reset()
    public_base = client_for(
        "https://api.comfy.org", tmp_path / "b", clock, mode=NetworkMode.PRIVATE, private_mirrors=(mirror,)
    )
    with pytest.raises(NetworkBlocked) as err:
        await public_base.list_nodes()
    assert err.value.code == "network_blocked" and "private_mirrors" in err.value.hint
    with pytest.raises(NetworkBlocked):
        await public_base.versions("rgthree-comfy")
    with pytest.raises(NetworkBlocked):
        await public_base.install_info("rgthree-comfy")
    assert socket_audit_log.inet_connects() == []


async def test_stale_listing_is_served_when_the_registry_goes_away(fake, http_server, tmp_path, clock):
    client = client_for(http_server.url(), tmp_path, clock)
    filled = await client.list_nodes()
    clock.now += TTL + 60
    http_server.stop()

    stale = await client.list_nodes()

    assert stale.source == "stale" and stale.nodes == filled.nodes
    assert stale.age_seconds == pytest.approx(TTL + 60)
    assert stale.notice is not None and stale.notice.level == "warning"
    assert stale.notice.code == "cache_stale" and stale.notice.details["reason"] == "network_unreachable"
    assert "61 min ago" in stale.notice.message


async def test_stale_listing_on_server_error_and_error_without_cache(fake, http_server, tmp_path, clock):
    client = client_for(http_server.url(), tmp_path, clock)
    await client.list_nodes()
    clock.now += TTL + 1
    fake.mode = "error_500"
    stale = await client.list_nodes()
    assert stale.source == "stale" and stale.notice.details["reason"] == "http_status"

    fresh_client = client_for(http_server.url(), tmp_path / "empty", clock)
    with pytest.raises(HttpStatusError) as err:
        await fresh_client.list_nodes()
    assert err.value.code == "http_status" and "registry_url" in err.value.hint


# --- versions and install info --------------------------------------------------------------------
async def test_versions_shape_and_status_filter(fake, http_server, tmp_path, clock):
    client = client_for(http_server.url(), tmp_path, clock)
    vhs = await client.versions("comfyui-videohelpersuite")
    assert fake.seen_statuses == [list(VERSION_STATUSES)]
    assert [v.version for v in vhs] == ["1.5.2", "1.5.3"]
    assert {v.status for v in vhs} == set(VERSION_STATUSES)

    impact = await client.versions("comfyui-impact-pack")
    first = impact[0]
    assert first.node_id == "comfyui-impact-pack" and first.version == "8.8.1"
    assert first.dependencies == ("segment-anything", "scikit-image", "piexif")
    assert first.download_url == "https://cdn.comfy.org/drltdata/comfyui-impact-pack/8.8.1/node.zip"
    assert first.created_at == "2025-03-10T08:00:00Z" and first.changelog == "Release 8.8.1"
    assert first.supported_comfyui_version == ">=0.3.0" and first.supported_os == ("OS Independent",)
    assert [v.deprecated for v in impact] == [False, False, True]

    again = await client.versions("comfyui-impact-pack")
    assert again == impact and fake.calls["versions"] == 2  # second answer came from the cache


async def test_install_info_latest_is_never_cached_pinned_is(fake, http_server, tmp_path, clock):
    client = client_for(http_server.url(), tmp_path, clock)
    latest = await client.install_info("comfyui-kjnodes")
    assert latest.version == "1.0.8" and latest.dependencies == ("pillow>=10.3.0", "scipy", "color-matcher")
    assert latest.download_url.endswith("/kijai/comfyui-kjnodes/1.0.8/node.zip")
    await client.install_info("comfyui-kjnodes", "latest")
    assert fake.calls["install"] == 2

    pinned = await client.install_info("comfyui-kjnodes", "1.0.7")
    await client.install_info("comfyui-kjnodes", "1.0.7")
    assert pinned.version == "1.0.7" and fake.calls["install"] == 3
    assert [r.query for r in http_server.requests if r.path.endswith("/install")][-1] == "version=1.0.7"


async def test_unknown_node_or_version_is_not_found(fake, http_server, tmp_path, clock):
    client = client_for(http_server.url(), tmp_path, clock)
    with pytest.raises(NotFound) as err:
        await client.install_info("comfyui-impact-pack", "9.9.9")
    assert err.value.code == "not_found" and "/nodes/comfyui-impact-pack/versions" in err.value.hint
    assert err.value.details["version"] == "9.9.9"
    with pytest.raises(NotFound):
        await client.versions("no-such-node")
    with pytest.raises(NotFound):
        await client_for(http_server.url(), tmp_path, clock, cached=False).install_info("no-such-node")


@pytest.mark.parametrize("mode", ["not_json", "wrong_shape"])
async def test_malformed_answers_are_registry_errors(fake, http_server, tmp_path, clock, mode):
    fake.mode = mode
    client = client_for(http_server.url(), tmp_path, clock)
    with pytest.raises(RegistryError) as err:
        await client.list_nodes()
    assert err.value.code == "registry_error" and "registry_url" in err.value.hint
    with pytest.raises(RegistryError):
        await client.versions("comfyui-kjnodes")
    with pytest.raises(RegistryError):
        await client.install_info("comfyui-kjnodes")
    assert client.cache.entries() == []  # nothing bad was stored


async def test_a_mirror_answering_another_node_is_refused(http_server, tmp_path, clock):
    nodes, versions = sample_data()
    versions["rgthree-comfy"] = versions["comfyui-kjnodes"]  # a confused mirror
    FakeRegistry(nodes, versions).install(http_server)
    client = client_for(http_server.url(), tmp_path, clock)
    with pytest.raises(RegistryError):
        await client.install_info("rgthree-comfy")


@pytest.mark.parametrize("bad", ["../x", "a/b", "a?b=1", "a#b", "", "..", ".hidden", "a b", "%2e%2e", "x\n"])
async def test_hostile_ids_are_refused_before_any_request(fake, http_server, tmp_path, clock, bad):
    client = client_for(http_server.url(), tmp_path, clock)
    calls = (
        lambda: client.versions(bad),
        lambda: client.install_info(bad),
        lambda: client.install_info("ok-id", bad or "x/y"),
    )
    for call in calls:
        with pytest.raises(InvalidName) as err:
            await call()
        assert err.value.code == "invalid_name"
    assert http_server.requests == []


def test_registry_url_must_be_http(tmp_path):
    for bad in ("ftp://mirror/registry", "not a url", "https://api.comfy.org/?x=1"):
        with pytest.raises(ConfigError) as err:
            RegistryClient(bad, gate_for())
        assert "registry_url" in err.value.hint
    assert RegistryClient("https://api.comfy.org/", gate_for()).base_url == "https://api.comfy.org"


# --- catalog records and sync doors ---------------------------------------------------------------
async def test_to_node_packs(fake, http_server, tmp_path, clock):
    listing = await client_for(http_server.url(), tmp_path, clock).list_nodes()
    packs = {p.id: p for p in to_node_packs(listing)}
    kj = packs["comfyui-kjnodes"]
    assert kj.install_type == "cnr" and kj.cnr_id == "comfyui-kjnodes" and kj.latest_version == "1.0.8"
    assert kj.reference == "https://github.com/kijai/ComfyUI-KJNodes" and kj.author == "kijai"
    assert kj.files == ("https://github.com/kijai/ComfyUI-KJNodes",) and kj.stars == 1400
    assert packs["comfyui-unreleased-pack"].latest_version == NIGHTLY
    assert RegistryClient.to_node_packs(listing) == list(packs.values())


def test_sync_callers_cross_through_run_sync(fake, http_server, tmp_path, clock):
    client = client_for(http_server.url(), tmp_path, clock)
    listing = run_sync(client.list_nodes())
    assert isinstance(listing, RegistryListing) and len(listing.nodes) == 5
    assert run_sync(client.versions("rgthree-comfy"))[0].version == "1.0.0"
    assert run_sync(client.install_info("rgthree-comfy", "1.0.0")).node_id == "rgthree-comfy"
