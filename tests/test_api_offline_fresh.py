"""An offline box on its first day: no channel data cached yet (issue 15 item 3).

Through a real server on 127.0.0.1: every route that is about what is on disk (installed packs,
snapshots, config, queue, status, settings) answers 200 with its shape; the catalog routes answer
``cache_missing`` whose hint names a command that exists (run through the real cm-cli.py); pack
operations still queue and run. No connection leaves the machine (the suite's socket guard).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from manager.api.routes import PREFIX, ROUTES
from manager.api.standalone import build_app, prepare
from manager.context import Manager
from support.gitrepos import git

REPO = Path(__file__).resolve().parents[1]
# Routes that need channel data: without any they answer the coded error, nothing else.
CATALOG_GETS = {
    PREFIX + "/packs",
    PREFIX + "/models",
    PREFIX + "/models/verify",  # checks installed files against the catalog's model list
    "/customnode/getlist",
    "/customnode/getmappings",
    "/customnode/alternatives",
    "/externalmodel/getlist",
}
# GETs that never touch the catalog but are not plain 200s here (or are not about this box).
OTHER_GETS = {"/customnode/get_node_types_in_workflows": 204}  # no saved workflows yet


def fresh_tree(base: Path) -> Path:
    """A ComfyUI tree with two enabled packs (a git clone and a plain folder), one disabled pack,
    and a config that says offline; no cache, no channel files anywhere."""
    root = base / "ComfyUI"
    nodes = root / "custom_nodes"
    repo = nodes / "git-pack"
    repo.mkdir(parents=True)
    (repo / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    git(repo, "remote", "add", "origin", "https://example.invalid/me/git-pack.git")  # never contacted
    (nodes / "folder-pack").mkdir()
    (nodes / "folder-pack" / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (nodes / ".disabled" / "sleeping-pack").mkdir(parents=True)
    (nodes / ".disabled" / "sleeping-pack" / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    for sub in ("models/checkpoints", "user/__manager"):
        (root / sub).mkdir(parents=True)
    (root / "user" / "__manager" / "config.ini").write_text("[default]\nnetwork_mode = offline\n", encoding="utf-8")
    return root


@pytest.fixture
async def fresh(tmp_path: Path, aiohttp_client):
    root = fresh_tree(tmp_path)
    api = prepare(Manager.standalone(root))
    client = await aiohttp_client(build_app(api))
    yield client, api, root
    api.manager.queue.stop(timeout=10)


def _shape(path: str, body: Any) -> None:
    """The answer's shape for the routes whose shape says something about this tree."""
    if path == "/customnode/installed":
        assert set(body) == {"git-pack", "folder-pack", "sleeping-pack"}, body
        assert body["git-pack"]["enabled"] is True and body["sleeping-pack"]["enabled"] is False
        assert set(body["git-pack"]) == {"ver", "cnr_id", "aux_id", "enabled"}
    elif path == PREFIX + "/installed":
        assert {p["name"] for p in body["data"]["packs"]} == {"git-pack", "folder-pack", "sleeping-pack"}
    elif path == PREFIX + "/status":
        assert body["data"]["network_mode"] == "offline" and body["data"]["catalog"] is None
    elif path == "/manager/queue/status":
        assert {"total_count", "done_count", "in_progress_count", "is_processing"} <= set(body)
    elif path == "/snapshot/getlist":
        assert body == {"items": []}
    elif path == "/snapshot/get_current":
        assert list(body["git_custom_nodes"]) == ["https://example.invalid/me/git-pack.git"], body
    elif path == PREFIX + "/config":
        assert any(r["key"] == "network_mode" and r["value"] == "offline" for r in body["data"]["settings"])
    elif path == "/manager/channel_url_list":
        assert body["selected"] and isinstance(body["list"], list)


async def test_every_route_about_this_box_answers_without_a_catalog(fresh):
    client, api, _root = fresh
    checked = []
    for r in ROUTES:
        if r.method != "GET" or "{" in r.path or r.path in CATALOG_GETS or r.path.startswith("/v2/"):
            continue  # (the /v2 family has its own tests)
        resp = await client.get(r.path)
        want = OTHER_GETS.get(r.path, 200)
        text = await resp.text()
        assert resp.status == want, (r.path, resp.status, text[:300])
        if want == 200 and r.response in ("json", "envelope"):
            _shape(r.path, json.loads(text))
        checked.append(r.path)
    assert {
        "/customnode/installed",
        PREFIX + "/installed",
        PREFIX + "/snapshots",
        PREFIX + "/config",
        PREFIX + "/queue",
        "/manager/queue/status",
        PREFIX + "/status",
    } <= set(checked)
    resp = await client.get("/customnode/disabled_versions/sleeping-pack")
    versions = await resp.json()
    assert resp.status == 200 and len(versions) == 1 and versions[0]["version"], versions
    assert api.loaded_view is None  # nothing pretended to have a catalog


async def test_pack_operations_and_snapshots_work_without_a_catalog(fresh):
    client, api, root = fresh
    resp = await client.post("/snapshot/save")
    assert resp.status == 200, await resp.text()
    resp = await client.post(PREFIX + "/queue", json={"kind": "disable", "target": "folder-pack"})
    assert resp.status == 202, await resp.text()
    # the classic panel's disable of an unknown (git) pack: the name comes from files[0]
    resp = await client.post(
        "/manager/queue/disable",
        json={
            "id": "git-pack",
            "version": "unknown",
            "ui_id": "d1",
            "files": ["https://example.invalid/me/git-pack.git"],
        },
    )
    assert resp.status == 200, await resp.text()
    resp = await client.post(PREFIX + "/queue", json={"kind": "enable", "target": "sleeping-pack"})
    assert resp.status == 202, await resp.text()
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)
    nodes = root / "custom_nodes"
    assert (nodes / ".disabled" / "folder-pack").is_dir() and not (nodes / "folder-pack").exists()
    assert not (nodes / "git-pack").exists() and api.manager.queue.get("d1").state.value == "done"
    assert (nodes / "sleeping-pack").is_dir()
    listed = await (await client.get("/snapshot/getlist")).json()
    assert len(listed["items"]) == 1


async def test_catalog_routes_answer_a_coded_error_naming_a_real_command(fresh):
    client, api, _root = fresh
    answers = [await client.get(path) for path in sorted(CATALOG_GETS)]
    answers.append(await client.get(PREFIX + "/node-types/KSampler"))
    answers.append(await client.get(PREFIX + "/packs/some-pack"))
    answers.append(await client.post(PREFIX + "/workflow/missing", json={"nodes": [{"type": "X"}]}))
    answers.append(await client.post("/manager/queue/install_model", json={"filename": "x.safetensors"}))
    commands = set()
    for resp in answers:
        body = await resp.json()
        assert resp.status == 503 and body["error"]["code"] == "cache_missing", (resp.url, body)
        hint = body["error"]["hint"]
        assert "offline" in hint and "file://" in hint, hint
        commands.update(re.findall(r"`(cm-cli\.py [a-z-]+)`", hint))
        assert body["error"]["details"]["command"] in hint
    assert commands == {"cm-cli.py update-cache"}
    assert api.manager.queue.status()["total_count"] == 0

    # the command exists: its --help runs through the real cm-cli.py
    (command,) = commands
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(REPO / "cm-cli.py"), *command.split()[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"usage: {command}" in out.stdout, out.stdout


async def test_the_catalog_appears_once_the_cache_is_copied_in(fresh, tmp_path: Path, http_server):
    """The hint's recipe works: what update-cache fills on a machine with network, copied into the
    manager folder of the offline box, is its catalog (same channel URL, no connection)."""
    client, api, root = fresh
    http_server.static(
        "/channel/custom-node-list.json",
        json.dumps(
            {
                "custom_nodes": [
                    {
                        "id": "copied-pack",
                        "title": "Copied Pack",
                        "author": "me",
                        "reference": "https://example.invalid/p",
                        "files": ["https://example.invalid/p"],
                        "install_type": "git-clone",
                        "description": "d",
                    }
                ]
            }
        ).encode(),
    )
    for name, body in (
        ("model-list.json", {"models": []}),
        ("extension-node-map.json", {}),
        ("alter-list.json", {"items": []}),
        ("github-stats.json", {}),
    ):
        http_server.static(f"/channel/{name}", json.dumps(body).encode())
    channel = http_server.url("/channel")
    settings = f"channel_url = {channel}\n[security]\nhttp_channel_enabled = true\nallowed_channels = {channel}\n"
    online = fresh_tree(tmp_path / "online")
    (online / "user" / "__manager" / "config.ini").write_text(
        f"[default]\nnetwork_mode = public\n{settings}", encoding="utf-8"
    )
    out = await asyncio.to_thread(
        subprocess.run,
        # the channel only: this box's registry is the public one, which a test never reaches
        [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(online), "update-cache", "--no-registry"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr

    import shutil

    config = root / "user" / "__manager" / "config.ini"
    config.write_text(f"[default]\nnetwork_mode = offline\n{settings}", encoding="utf-8")
    api.manager.apply_config(type(api.manager.config).load(config, env={}))
    api.forget_view()
    resp = await client.get("/customnode/getlist")
    assert resp.status == 503 and (await resp.json())["error"]["code"] == "cache_missing"
    shutil.copytree(online / "user" / "__manager" / "cache", root / "user" / "__manager" / "cache", dirs_exist_ok=True)
    served = http_server.count("/channel/custom-node-list.json")
    resp = await client.get("/customnode/getlist")
    assert resp.status == 200, await resp.text()
    assert "copied-pack" in (await resp.json())["node_packs"]
    assert http_server.count("/channel/custom-node-list.json") == served  # offline: read from the copy
