"""Persisted pack lists (issue 21 item 1): the first list request after a restart answers from the
file written when the catalog was built, without reading or parsing a channel file; a changed
channel or a damaged file is rebuilt, never served; the live installed state is merged per request.

Real files throughout: the demo tree (real git packs, a file:// channel), real aiohttp servers on
127.0.0.1, a fresh ``Manager`` per "restart".
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import subprocess
import zlib
from pathlib import Path

from manager.api.listing import GZIP_MIN_BYTES, ListingCache, _Fragments, _join
from manager.api.standalone import build_app
from manager.list_gzip import CHUNK, chunk_texts, deflate_piece, gzip_pieces
from support.api_tree import make_api

GETLIST = "/customnode/getlist?mode=cache&skip_update=true"
PACKS = "/offline-manager/v1/packs"


async def _first_run(aiohttp_client, api_app):
    """A server that loads the catalog, answers both lists and persists them."""
    app, api, root = api_app()
    for name in ("demo-image-tools", "demo-prompt-kit"):  # installed the way a user does: a git clone
        source = root.parent / "sources" / name
        argv = ["git", "clone", "-q", source.as_uri(), str(root / "custom_nodes" / name)]
        await asyncio.to_thread(subprocess.run, argv, check=True)
    client = await aiohttp_client(app)
    classic = await (await client.get(GETLIST)).json()
    v1 = await (await client.get(PACKS)).json()
    await api.listing.settled()
    return root, classic, v1, api


async def _restart(aiohttp_client, root: Path):
    api = make_api(root)
    return api, await aiohttp_client(build_app(api))


def _lists(root: Path) -> Path:
    return root / "user" / "__manager" / "cache" / "lists"


async def test_first_list_after_restart_comes_from_the_file(aiohttp_client, api_app):
    root, classic, v1, first = await _first_run(aiohttp_client, api_app)
    assert first.listing.saves == 2 and sorted(p.name for p in _lists(root).iterdir()) == ["classic.bin", "v1.bin"]
    assert first.manager.parse_cache.parses == 5  # the first server did parse the channel

    api, client = await _restart(aiohttp_client, root)
    resp = await client.get(GETLIST)
    assert resp.status == 200 and await resp.json() == classic
    again = await (await client.get(PACKS)).json()
    for body in (again, v1):
        body["data"].pop("age_seconds")
    assert again == v1
    # nothing of the channel was read or parsed: no catalog view, no parse, both files accepted
    assert api.manager.parse_cache.parses == 0 and api.loaded_view is None and api.manager._catalog_view is None
    assert api.listing.store.loads == 2 and api.listing.store.rejects == 0
    installed = [row for row in classic["node_packs"].values() if row["state"] != "not-installed"]
    assert installed, "the demo tree has installed packs: their live state is merged into the file's rows"
    # warm: the same bytes, no new build
    builds = api.listing.builds
    assert await (await client.get(GETLIST)).json() == classic and api.listing.builds == builds


async def test_a_changed_channel_file_invalidates_the_persisted_list(aiohttp_client, api_app):
    root, classic, _v1, _ = await _first_run(aiohttp_client, api_app)
    channel = root.parent / "demo-channel" / "custom-node-list.json"
    data = json.loads(channel.read_text(encoding="utf-8"))
    data["custom_nodes"].append(
        {
            "author": "someone",
            "title": "Brand New Pack",
            "id": "brand-new-pack",
            "reference": "https://github.com/someone/brand-new-pack",
            "files": ["https://github.com/someone/brand-new-pack"],
            "install_type": "git-clone",
            "description": "added after the list was persisted",
        }
    )
    channel.write_text(json.dumps(data), encoding="utf-8")

    api, client = await _restart(aiohttp_client, root)
    fresh = await (await client.get(GETLIST)).json()
    assert "brand-new-pack" in fresh["node_packs"] and set(classic["node_packs"]) < set(fresh["node_packs"])
    assert api.listing.store.rejects == 1 and api.manager.parse_cache.parses == 5  # stale: rebuilt, not served
    await api.listing.settled()
    assert api.listing.saves == 1

    api3, client3 = await _restart(aiohttp_client, root)
    assert await (await client3.get(GETLIST)).json() == fresh
    assert api3.listing.store.loads == 1 and api3.manager.parse_cache.parses == 0


async def test_a_damaged_file_is_rebuilt_never_served(aiohttp_client, api_app):
    root, classic, _v1, _ = await _first_run(aiohttp_client, api_app)
    path = _lists(root) / "classic.bin"
    raw = bytearray(path.read_bytes())
    raw[-40] ^= 0x55  # one flipped byte in the payload
    path.write_bytes(bytes(raw))

    api, client = await _restart(aiohttp_client, root)
    assert await (await client.get(GETLIST)).json() == classic
    assert api.listing.store.rejects == 1 and api.manager.parse_cache.parses == 5
    await api.listing.settled()
    assert path.read_bytes() != bytes(raw)  # written again, whole

    path.write_bytes(b"not a list at all")
    api2, client2 = await _restart(aiohttp_client, root)
    assert await (await client2.get(GETLIST)).json() == classic and api2.listing.store.rejects == 1


async def test_live_state_is_merged_without_rewriting_the_file(aiohttp_client, api_app):
    root, classic, _v1, _ = await _first_run(aiohttp_client, api_app)
    api, client = await _restart(aiohttp_client, root)
    await client.get(GETLIST)
    stamp = (_lists(root) / "classic.bin").stat().st_mtime_ns
    assert classic["node_packs"]["demo-image-tools"]["state"] == "enabled"
    disabled = root / "custom_nodes" / ".disabled"
    disabled.mkdir(exist_ok=True)
    moved = [p for p in (root / "custom_nodes").iterdir() if p.is_dir() and not p.name.startswith(".")]
    for p in moved:
        shutil.move(str(p), str(disabled / p.name))
    after = await (await client.get(GETLIST)).json()
    assert after["node_packs"]["demo-image-tools"]["state"] == "disabled"
    assert all(r["state"] != "enabled" for r in after["node_packs"].values())
    assert api.manager.parse_cache.parses == 0 and (_lists(root) / "classic.bin").stat().st_mtime_ns == stamp


async def test_large_fragments_are_read_again_on_a_change(aiohttp_client, api_app):
    """Fragments over ``keep_fragment_bytes`` leave memory once the body is built (a 59k-pack list
    holds ~80 MB of them); a changed tree reads them again, a changed channel falls back to it."""
    root, classic, _v1, _ = await _first_run(aiohttp_client, api_app)
    api = make_api(root)
    api.listing = ListingCache(api, keep_fragment_bytes=0)
    client = await aiohttp_client(build_app(api))
    assert await (await client.get(GETLIST)).json() == classic
    loads = api.listing.store.loads
    disabled = root / "custom_nodes" / ".disabled"
    disabled.mkdir(exist_ok=True)
    shutil.move(str(root / "custom_nodes" / "demo-image-tools"), str(disabled / "demo-image-tools"))
    after = await (await client.get(GETLIST)).json()
    assert after["node_packs"]["demo-image-tools"]["state"] == "disabled"
    assert api.listing.store.loads == loads + 1 and api.manager.parse_cache.parses == 0  # read again, not parsed

    channel = root.parent / "demo-channel" / "custom-node-list.json"
    data = json.loads(channel.read_text(encoding="utf-8"))
    data["custom_nodes"][0]["description"] = "changed while the server ran"
    channel.write_text(json.dumps(data), encoding="utf-8")
    shutil.move(str(disabled / "demo-image-tools"), str(root / "custom_nodes" / "demo-image-tools"))
    fresh = await (await client.get(GETLIST)).json()
    first_id = data["custom_nodes"][0]["id"]
    assert fresh["node_packs"][first_id]["description"] == "changed while the server ran"
    assert fresh["node_packs"]["demo-image-tools"]["state"] == "enabled" and api.manager.parse_cache.parses == 5


async def test_large_fragments_built_from_the_catalog_leave_memory_once_written(aiohttp_client, api_app):
    """A server that built the catalog keeps no large fragments after writing them (a 59k-pack
    catalog's two lists are ~90 MB beside their bodies): a changed tree reads them back from the
    file it wrote, without encoding the catalog again, with the same rows."""
    app, api, root = api_app()
    api.listing.keep_fragment_bytes = 0
    client = await aiohttp_client(app)
    before = await (await client.get(GETLIST)).json()
    await api.listing.settled()
    assert api.listing.saves == 1 and api.listing._frags == {} and api.manager.parse_cache.parses == 5
    source = root.parent / "sources" / "demo-image-tools"
    argv = ["git", "clone", "-q", source.as_uri(), str(root / "custom_nodes" / "demo-image-tools")]
    await asyncio.to_thread(subprocess.run, argv, check=True)
    loads = api.listing.store.loads
    after = await (await client.get(GETLIST)).json()
    await api.listing.settled()
    assert after["node_packs"]["demo-image-tools"]["state"] == "enabled"
    assert api.listing.store.loads == loads + 1 and api.listing.saves == 1  # read back, not encoded and written
    before["node_packs"].pop("demo-image-tools"), after["node_packs"].pop("demo-image-tools")
    assert after == before


def test_a_joined_body_gzip_recompresses_only_changed_chunks():
    fragments = [b'"p%d":{"title":"pack %d","d":"%s"}' % (i, i, b"y" * (i % 97)) for i in range(CHUNK * 40)]
    frags = _Fragments.from_encoded("classic", "v", [f"p{i}" for i in range(len(fragments))], fragments)
    replaced = {5: b'"p5":{"state":"enabled"}', CHUNK * 7 + 3: b'"p451":{"state":"disabled"}'}
    data, packed = _join(frags, b'{"node_packs":{', b"}}", replaced, [b'"extra":{}'])
    assert packed is not None and len(data) > GZIP_MIN_BYTES
    assert gzip.decompress(packed) == data and b'"p5":{"state":"enabled"}' in data and data.endswith(b',"extra":{}}}')
    assert json.loads(data)["node_packs"]["p6"] == {"title": "pack 6", "d": "y" * 6}


def test_gzip_from_pieces_matches_the_text():
    fragments = [json.dumps({"id": f"p{i}", "text": "x" * (i % 50)}).encode() for i in range(CHUNK * 3 + 5)]
    texts = chunk_texts(fragments)
    assert len(texts) == 4 and b"".join(texts) == b",".join(fragments)
    data = b"[" + b",".join(fragments) + b"]"
    packed = gzip_pieces(data, [deflate_piece(b"["), *(deflate_piece(t) for t in texts), deflate_piece(b"]")])
    assert gzip.decompress(packed) == data
    assert zlib.decompress(packed, 31) == data  # one gzip member, checked by zlib's own reader


FILES = ("custom-node-list.json", "extension-node-map.json", "model-list.json", "alter-list.json", "github-stats.json")


def _node_list(*ids: str) -> bytes:
    nodes = [
        {
            "id": i,
            "title": f"Pack {i}",
            "author": "someone",
            "reference": f"https://example.invalid/{i}",
            "files": [f"https://example.invalid/{i}"],
            "install_type": "git-clone",
            "description": "served by a remote channel and kept in the cache",
        }
        for i in ids
    ]
    return json.dumps({"custom_nodes": nodes}).encode()


async def test_a_cached_remote_channel_is_checked_by_its_sidecars(aiohttp_client, tmp_path, http_server):
    """A remote channel read through the cache: the first server fetches (loopback) and persists,
    a restart answers from the file without a request, a changed cached copy invalidates it."""
    for name in FILES:
        http_server.static(f"/ch/{name}", _node_list("alpha", "beta") if name == FILES[0] else b"{}", etag=f'"{name}"')
    root = tmp_path / "ComfyUI"
    for sub in ("custom_nodes", "models", "user/__manager"):
        (root / sub).mkdir(parents=True)
    url = http_server.url("/ch")
    (root / "user/__manager/channels.list").write_text(f"remote::{url}\n", encoding="utf-8")
    (root / "user/__manager/config.ini").write_text(
        f"[default]\nnetwork_mode = public\nchannel_url = {url}\nhttp_channel_enabled = true\n"
        "[security]\nallow_remote_channel = true\n",
        encoding="utf-8",
    )
    api, client = await _restart(aiohttp_client, root)
    assert set((await (await client.get(GETLIST)).json())["node_packs"]) == {"alpha", "beta"}
    await api.listing.settled()
    fetched = http_server.count(f"/ch/{FILES[0]}")
    assert fetched == 1 and api.listing.saves == 1

    api2, client2 = await _restart(aiohttp_client, root)
    assert set((await (await client2.get(GETLIST)).json())["node_packs"]) == {"alpha", "beta"}
    assert api2.listing.store.loads == 1 and api2.manager.parse_cache.parses == 0
    assert http_server.count(f"/ch/{FILES[0]}") == fetched  # fresh in the cache: nobody asked the channel

    # a newer copy lands in the cache (another process ran update-cache): the file is stale
    api2.manager.cache.put(f"{url}/{FILES[0]}", _node_list("alpha", "beta", "gamma"), etag='"new"')
    api3, client3 = await _restart(aiohttp_client, root)
    assert set((await (await client3.get(GETLIST)).json())["node_packs"]) == {"alpha", "beta", "gamma"}
    assert api3.listing.store.rejects == 1 and api3.manager.parse_cache.parses >= 1
    assert http_server.count(f"/ch/{FILES[0]}") == fetched
