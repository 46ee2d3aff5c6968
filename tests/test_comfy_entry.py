"""Load the extension the way ComfyUI does, against a stand-in server and folder_paths."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

from aiohttp import web

from support.comfy_entry import REPO, comfy_app, load_like_comfyui, offline_demo


def test_entry_exports_and_mounts_routes(comfy_modules):
    module = load_like_comfyui(REPO)
    assert module.NODE_CLASS_MAPPINGS == {} and module.WEB_DIRECTORY == "./js"
    assert (REPO / "js").is_dir()
    paths = {(r.method, r.path) for r in comfy_modules.routes}
    assert ("GET", "/offline-manager/health") in paths
    import glob

    assert callable(glob.glob) and not glob.__file__.startswith(str(REPO))


def test_entry_is_idempotent_and_skips_taken_routes(comfy_modules, caplog):
    async def other(_):  # another extension already owns our path
        return web.Response(text="theirs")

    comfy_modules.routes.get("/offline-manager/health")(other)
    with caplog.at_level(logging.INFO, logger="offline_manager"):
        load_like_comfyui(REPO)
        load_like_comfyui(REPO)
    owners = [r for r in comfy_modules.routes if r.path == "/offline-manager/health"]
    assert len(owners) == 1 and owners[0].handler is other
    assert "already owned" in caplog.text


def test_entry_outside_comfyui_does_nothing(monkeypatch):
    monkeypatch.delitem(sys.modules, "server", raising=False)
    module = load_like_comfyui(REPO)
    assert module.NODE_CLASS_MAPPINGS == {}


def test_broken_host_never_raises(comfy_modules, monkeypatch, caplog):
    monkeypatch.setattr(sys.modules["folder_paths"], "get_folder_paths", None)
    with caplog.at_level(logging.ERROR, logger="offline_manager"):
        module = load_like_comfyui(REPO)
    assert module.NODE_CLASS_MAPPINGS == {}
    assert "ComfyUI continues" in caplog.text


def test_entry_mounts_the_whole_table_without_network(comfy_modules, comfy_tree, tmp_path, socket_audit_log, loaded):
    offline_demo(comfy_tree, tmp_path)
    before = len(socket_audit_log.inet_connects())
    loaded()
    assert len(socket_audit_log.inet_connects()) == before  # no connection at all while loading
    paths = {(r.method, r.path) for r in comfy_modules.routes}
    from manager.api.routes import ROUTES

    assert {(r.method, r.path) for r in ROUTES} <= paths
    started = comfy_modules._offline_manager_started
    api = started["api"]
    assert api.door == "comfyui" and api._manager is None  # built on first use, not at start
    assert api.manager._queue is None
    assert api.queue.worker_alive  # first use: worker started
    assert "install" in api.kinds and "install_model" in api.kinds


def test_entry_leaves_classic_paths_to_their_owner(comfy_modules, comfy_tree, tmp_path, caplog):
    offline_demo(comfy_tree, tmp_path)

    async def classic(_):  # the classic manager in custom_nodes/ registered first
        return web.Response(text="classic")

    comfy_modules.routes.get("/customnode/getlist")(classic)
    comfy_modules.routes.post("/manager/queue/start")(classic)
    with caplog.at_level(logging.INFO, logger="offline_manager"):
        load_like_comfyui(REPO)
    owners = [r for r in comfy_modules.routes if r.path == "/customnode/getlist"]
    assert len(owners) == 1 and owners[0].handler is classic
    assert ("GET", "/offline-manager/v1/packs") in {(r.method, r.path) for r in comfy_modules.routes}
    skipped = comfy_modules._offline_manager_started["report"].skipped
    assert skipped == ["GET /customnode/getlist", "POST /manager/queue/start"]


async def test_routes_answer_and_events_reach_send_sync(comfy_modules, comfy_tree, tmp_path, aiohttp_client, loaded):
    import asyncio

    offline_demo(comfy_tree, tmp_path)
    loaded()
    client = await aiohttp_client(comfy_app(comfy_modules))
    status = await (await client.get("/api/offline-manager/v1/status")).json()
    assert status["ok"] and status["data"]["door"] == "comfyui" and status["data"]["network_mode"] == "offline"
    listing = await (await client.get("/customnode/getlist?mode=cache&skip_update=true")).json()
    assert "demo-image-tools" in listing["node_packs"]
    resp = await client.post(
        "/api/manager/queue/install",
        json={"id": "demo-image-tools", "version": "nightly", "selected_version": "nightly", "ui_id": "row-1"},
    )
    assert resp.status == 200, await resp.text()
    assert (await client.post("/api/manager/queue/start")).status in (200, 201)
    queue = comfy_modules._offline_manager_started["api"].queue
    assert await asyncio.to_thread(queue.run_until_idle, 30)
    names = [name for name, _data in comfy_modules.sent]
    assert "offline-manager.event" in names
    classic = [data for name, data in comfy_modules.sent if name == "cm-queue-status"]
    assert classic[-1]["status"] == "done" and classic[-1]["nodepack_result"] == {"row-1": "success"}
    assert (comfy_tree / "custom_nodes" / "demo-image-tools" / "__init__.py").is_file()


def test_listen_address_comes_from_comfy_args(comfy_modules, comfy_tree, tmp_path, monkeypatch, loaded):
    offline_demo(comfy_tree, tmp_path)
    cli_args = types.ModuleType("comfy.cli_args")
    cli_args.args = types.SimpleNamespace(listen="0.0.0.0,::")
    monkeypatch.setitem(sys.modules, "comfy.cli_args", cli_args)
    loaded()
    api = comfy_modules._offline_manager_started["api"]
    assert api.listen == "0.0.0.0,::" and not api.settings.loopback
    assert not api.decide("install_git_url").allowed


# --- import failures and the classic restore inside ComfyUI --------------------------------------
def _pack(folder: Path, body: str = "NODE_CLASS_MAPPINGS = {}\n") -> str:
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(body, encoding="utf-8")
    return str(folder)


async def test_import_failures_are_recorded_once_loading_is_over(
    comfy_modules, comfy_tree, tmp_path, aiohttp_client, loaded, monkeypatch
):
    offline_demo(comfy_tree, tmp_path)
    cn = comfy_tree / "custom_nodes"
    good, nodeless = _pack(cn / "good_pack"), _pack(cn / "nodeless", "X = 1\n")
    early, late = _pack(cn / "early_bad", "import cv3\n"), _pack(cn / "late_bad", "raise RuntimeError('boom')\n")
    _pack(cn / "off.disabled")
    (cn / "single_ok.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (cn / "single_bad.py").write_text("import nope\n")
    (cn / "readme.txt").write_text("not a pack")
    (cn / "__pycache__").mkdir()
    # ComfyUI's in-memory log already holds the failure of a pack imported before us
    early_tb = f'Traceback (most recent call last):\n  File "{early}/__init__.py", line 1\nModuleNotFoundError: cv3\n'
    app_logger = types.ModuleType("app.logger")
    app_logger.get_logs = lambda: [
        {"t": 1.0, "m": early_tb},
        {"t": 1.1, "m": f"Cannot import {early} module for custom nodes: No module named 'cv3'\n"},
    ]
    monkeypatch.setitem(sys.modules, "app.logger", app_logger)
    nodes = types.ModuleType("nodes")
    nodes.LOADED_MODULE_DIRS = {"good_pack": good, "nodeless": nodeless, str(cn / "single_ok"): str(cn)}
    monkeypatch.setitem(sys.modules, "nodes", nodes)
    loaded()
    # packs imported after us fail the way nodes.load_custom_node logs it
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import traceback

        logging.warning(traceback.format_exc())
        logging.warning(f"Cannot import {late} module for custom nodes: boom")
    logging.warning(
        f"Skip {nodeless} module for custom nodes due to the lack of NODE_CLASS_MAPPINGS or NODES_LIST (need one)."
    )
    client = await aiohttp_client(comfy_app(comfy_modules))
    data = (await (await client.get("/api/offline-manager/v1/import-failures")).json())["data"]
    assert data["available"] is True and data["live"] is True, data
    rows = {f["name"]: f for f in data["failures"]}
    assert set(rows) == {"early_bad", "late_bad", "single_bad.py", "nodeless"}, rows
    assert rows["late_bad"]["message"] == "boom" and "RuntimeError: boom" in rows["late_bad"]["traceback"]
    assert rows["late_bad"]["source"] == "log" and rows["late_bad"]["installed"] is True
    assert rows["early_bad"]["message"] == "No module named 'cv3'" and "cv3" in rows["early_bad"]["traceback"]
    assert rows["single_bad.py"]["source"] == "not_loaded" and rows["nodeless"]["kind"] == "no_nodes"
    tracker = comfy_modules._offline_manager_started["import_failures"]
    assert all(h is not tracker._capture for h in logging.getLogger().handlers)  # detached after reading
    stored = json.loads((comfy_tree / "user" / "__manager" / "startup" / "import-failures.json").read_text())
    assert {f["name"] for f in stored["failures"]} == set(rows)
    info = await (await client.post("/customnode/import_fail_info", json={"cnr_id": "late_bad"})).json()
    assert info["name"] == "late_bad" and info["path"] == late and "RuntimeError: boom" in info["msg"]
    listing = await (await client.get("/customnode/getlist?mode=cache&skip_update=true")).json()
    assert listing["node_packs"]["late_bad"]["import-fail"] is True
    assert listing["node_packs"]["good_pack"]["import-fail"] is False


async def test_classic_restore_waits_for_the_next_start_inside_comfyui(
    comfy_modules, comfy_tree, tmp_path, aiohttp_client, loaded
):
    offline_demo(comfy_tree, tmp_path)
    loaded()
    client = await aiohttp_client(comfy_app(comfy_modules))
    name = (await (await client.post("/api/snapshot/save")).json())["data"]["name"]
    resp = await client.post("/api/snapshot/restore", json={"target": name})
    assert resp.status == 200, await resp.text()
    scheduled = (await resp.json())["data"]["scheduled"]
    assert scheduled["action"] == "snapshot_restore" and scheduled["origin"] == "api:comfyui"
    pending = json.loads((comfy_tree / "user" / "__manager" / "startup" / "pending.json").read_text())
    assert [p["target"] for p in pending["pending"]] == [name]
    api = comfy_modules._offline_manager_started["api"]
    assert not api.queue_built or api.queue.status()["total_count"] == 0
    startup = (await (await client.get("/api/offline-manager/v1/startup")).json())["data"]
    assert startup["applies_at_restart"] is True and startup["pending"][0]["policy"]["allowed"] is True
