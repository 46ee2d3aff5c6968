"""``cm-cli.py update-cache`` (and ``--cache-only``) rebuilds the persisted pack lists after it
refreshes the cache (issue 21 item 3): a server started after a cron refresh answers its first
list from the file, parsing nothing and asking the channel nothing, with the same rows a server
that built the catalog itself gives; a refresh that brings a changed channel rewrites them.

Real parts: the CLI as a subprocess, a channel served by a real aiohttp server on 127.0.0.1, the
HTTP door over the same tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from manager.api.standalone import build_app
from support.api_tree import make_api
from support.fake_registry import FakeRegistry

REPO = Path(__file__).resolve().parents[1]
FILES = ("custom-node-list.json", "extension-node-map.json", "model-list.json", "alter-list.json", "github-stats.json")
GETLIST = "/customnode/getlist?mode=cache&skip_update=true"
PACKS = "/offline-manager/v1/packs"


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(root), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=dict(os.environ))


def _serve(srv, ids: tuple[str, ...], tag: str) -> None:
    nodes = [
        {
            "id": i,
            "title": f"{i} <tools> & more",
            "author": "someone",
            "reference": f"https://github.com/someone/{i}",
            "files": [f"https://github.com/someone/{i}"],
            "install_type": "git-clone",
            "description": f"nodes of {i}",
            "tags": ["image"],
        }
        for i in ids
    ]
    stats = {f"https://github.com/someone/{i}": {"stars": n, "author_account_age_days": 900} for n, i in enumerate(ids)}
    node_map = {f"https://github.com/someone/{i}": [[f"{i}Node"], {"title_aux": i}] for i in ids}
    bodies = {"custom-node-list.json": {"custom_nodes": nodes}, "github-stats.json": stats}
    bodies["extension-node-map.json"] = node_map
    for name in FILES:
        srv.static(f"/ch/{name}", json.dumps(bodies.get(name, {})).encode(), etag=f'"{tag}-{name}"')


def _tree(root: Path, srv) -> Path:
    for sub in ("custom_nodes", "models", "user/__manager"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    manager = root / "user" / "__manager"
    (manager / "channels.list").write_text(f"main::{srv.url('/ch')}\n")
    (manager / "config.ini").write_text(
        f"[default]\nnetwork_mode = public\nchannel_url = {srv.url('/ch')}\nregistry_url = {srv.url('/api')}\n"
        "http_channel_enabled = true\n[security]\nallow_remote_channel = true\n"
    )
    return root


def _lists(root: Path) -> Path:
    return root / "user" / "__manager" / "cache" / "lists"


async def _first_lists(aiohttp_client, root: Path):
    """A freshly started server's first classic and v1 lists, and the door that served them."""
    api = make_api(root)
    try:
        client = await aiohttp_client(build_app(api))
        classic = await (await client.get(GETLIST)).json()
        v1 = await (await client.get(PACKS)).json()
        await api.listing.settled()
    finally:
        api.manager.queue.stop(timeout=10)
    v1["data"].pop("age_seconds")
    return api, classic, v1


async def test_update_cache_rebuilds_the_persisted_lists(tmp_path, http_server, aiohttp_client):
    FakeRegistry(prefix="/api").install(http_server)
    _serve(http_server, ("alpha", "beta"), "one")
    root = _tree(tmp_path / "ComfyUI", http_server)

    out = _cli(root, "update-cache", "--no-registry")
    assert out.returncode == 0, out.stderr
    assert "pack lists rebuilt for the next start (2 files" in out.stderr, out.stderr
    assert sorted(p.name for p in _lists(root).iterdir()) == ["classic.bin", "v1.bin"]
    fetched = http_server.count("/ch/custom-node-list.json")

    # the server's first lists come from the CLI's files: nothing parsed, nothing fetched
    api, classic, v1 = await _first_lists(aiohttp_client, root)
    assert api.manager.parse_cache.parses == 0 and api.manager._catalog_view is None
    assert api.listing.store.loads == 2 and api.listing.store.rejects == 0 and api.listing.saves == 0
    assert http_server.count("/ch/custom-node-list.json") == fetched
    assert sorted(classic["node_packs"]) == ["alpha", "beta"]
    assert classic["node_packs"]["beta"]["title"] == "beta &lt;tools&gt; &amp; more"
    assert classic["node_packs"]["beta"]["stars"] == 1 and classic["node_packs"]["beta"]["trust"] is True

    # the same rows a server that built the catalog itself answers (its own files written anew)
    for path in _lists(root).iterdir():
        path.unlink()
    built, classic_built, v1_built = await _first_lists(aiohttp_client, root)
    assert built.manager.parse_cache.parses == 5 and built.listing.saves == 2
    assert classic_built == classic and v1_built == v1

    # a cron refresh that brings a changed channel rewrites them: the new pack is there at the next start
    _serve(http_server, ("alpha", "beta", "gamma"), "two")
    out = _cli(root, "--cache-only", "--force-refresh")
    assert out.returncode == 0, out.stderr
    assert "pack lists rebuilt" in out.stderr, out.stderr
    api, classic, v1 = await _first_lists(aiohttp_client, root)
    assert api.manager.parse_cache.parses == 0 and api.listing.store.loads == 2 and api.listing.store.rejects == 0
    assert sorted(classic["node_packs"]) == ["alpha", "beta", "gamma"]
    assert [p["id"] for p in v1["data"]["packs"]] == ["alpha", "beta", "gamma"]


async def test_update_cache_that_fetches_nothing_writes_no_list(tmp_path, http_server):
    FakeRegistry(prefix="/api").install(http_server)
    root = _tree(tmp_path / "ComfyUI", http_server)  # the channel answers 404 for every file
    out = _cli(root, "--json", "update-cache", "--no-registry")
    assert out.returncode == 1, out.stderr
    assert "pack lists rebuilt" not in out.stderr and not _lists(root).exists()
    assert "persisted_lists" not in json.loads(out.stdout)["data"]
