"""The /v2 family's history, batch records and events, and a script written for 4.x run unchanged.

Real parts: the demo tree (git packs in file:// repositories, offline), the standalone app on a
real aiohttp server on 127.0.0.1, its /ws socket; the script talks plain ``urllib`` to it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from test_api_v2 import INSTALL, coded, run_all, task

from manager.api.v2_history import QUEUE_STATUS, TASK_COMPLETED, TASK_STARTED, journal_of
from manager.api.v2_records import prune_batches
from manager.api.v2_routes import V2
from support.api_tree import ws_messages
from support.comfy_entry import comfy_app, offline_demo


async def _settled(api) -> None:
    assert await asyncio.to_thread(journal_of(api).settle, 10)


async def test_history_history_list_and_the_batch_record(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    for item in (
        task("install", "h1", INSTALL, "c1"),
        task("uninstall", "h2", {"node_name": "demo-video-helper"}, "c2"),
        task("disable", "h3", {"node_name": "demo-mask-utils"}, "c1"),
    ):
        assert (await client.post(V2 + "/manager/queue/task", json=item)).status == 200
    await client.post(V2 + "/manager/queue/start")
    await run_all(api)
    await _settled(api)

    everyone = (await (await client.get(V2 + "/manager/queue/history")).json())["history"]
    assert list(everyone) == ["h1", "h2", "h3"]
    h1 = everyone["h1"]
    assert set(h1) == {"ui_id", "client_id", "kind", "timestamp", "result", "status", "batch_id", "end_time", "params"}
    assert h1["client_id"] == "c1" and h1["params"] == INSTALL and h1["batch_id"].startswith("batch_")
    assert everyone["h2"]["status"]["status_str"] == "error"
    mine = (await (await client.get(V2 + "/manager/queue/history?client_id=c1")).json())["history"]
    assert list(mine) == ["h1", "h3"]
    assert (await (await client.get(V2 + "/manager/queue/history?ui_id=h2")).json())["history"]["kind"] == "uninstall"
    assert await (await client.get(V2 + "/manager/queue/history?ui_id=nope")).json() == {"history": {}}
    newest = (await (await client.get(V2 + "/manager/queue/history?max_items=1")).json())["history"]
    oldest = (await (await client.get(V2 + "/manager/queue/history?max_items=1&offset=0")).json())["history"]
    assert list(newest) == ["h3"] and list(oldest) == ["h1"]
    await coded(await client.get(V2 + "/manager/queue/history?max_items=many"), 400, "request_invalid")

    ids = (await (await client.get(V2 + "/manager/queue/history_list")).json())["ids"]
    assert ids == [h1["batch_id"]]
    path = root / "user" / "__manager" / "batch_history" / f"{ids[0]}.json"
    assert path.is_file() and not list(path.parent.glob("*.tmp*"))  # written whole (atomic)
    record = await (await client.get(V2 + f"/manager/queue/history?id={ids[0]}")).json()
    assert record == json.loads(path.read_text(encoding="utf-8"))
    assert record["batch_id"] == ids[0] and record["start_time"] <= record["end_time"]
    assert (
        record["total_operations"],
        record["successful_operations"],
        record["failed_operations"],
        record["skipped_operations"],
    ) == (3, 2, 1, 0)
    ops = {op["operation_id"]: op for op in record["operations"]}
    assert ops["h1"]["operation_type"] == "install" and ops["h1"]["target"] == "demo-mask-utils"
    assert ops["h1"]["result"] == "success" and ops["h2"]["result"] == "failed" and ops["h1"]["client_id"] == "c1"
    assert "demo-mask-utils" not in record["state_before"]["installed_nodes"]
    assert record["state_after"]["installed_nodes"]["demo-mask-utils"]["enabled"] is False  # installed, disabled
    for key in (
        "snapshot_time",
        "comfyui_version",
        "python_version",
        "platform_info",
        "manager_version",
        "security_level",
        "network_mode",
        "custom_nodes_count",
        "comfyui_root_path",
    ):
        assert key in record["state_before"], key
    await coded(await client.get(V2 + "/manager/queue/history?id=../../config"), 400, "invalid_name")
    await coded(await client.get(V2 + "/manager/queue/history?id=batch_nope"), 404, "not_found")

    # a second batch is a second record, listed first; a reused ui_id replaces its history entry
    await client.post(V2 + "/manager/queue/task", json=task("enable", "h1", {"cnr_id": "demo-mask-utils"}, "c1"))
    await client.post(V2 + "/manager/queue/start")
    await run_all(api)
    await _settled(api)
    ids2 = (await (await client.get(V2 + "/manager/queue/history_list")).json())["ids"]
    assert len(ids2) == 2 and ids2[1] == ids[0]
    second = await (await client.get(V2 + f"/manager/queue/history?id={ids2[0]}")).json()
    assert [op["operation_id"] for op in second["operations"]] == ["h1"]  # only this batch's task
    everyone = (await (await client.get(V2 + "/manager/queue/history")).json())["history"]
    assert list(everyone) == ["h2", "h3", "h1"] and everyone["h1"]["kind"] == "enable"


def test_old_batch_records_are_pruned(tmp_path):
    from manager.layout import Layout

    layout = Layout.from_root(tmp_path)
    folder = layout.manager_dir / "batch_history"
    folder.mkdir(parents=True)
    old, new = folder / "batch_old.json", folder / "batch_new.json"
    for path in (old, new):
        path.write_text("{}", encoding="utf-8")
    stamp = time.time() - 17 * 86400
    import os

    os.utime(old, (stamp, stamp))
    assert prune_batches(layout) == 1 and not old.exists() and new.exists()


async def test_events_reach_the_client_that_queued(aiohttp_client, api_app):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    mine = await client.ws_connect("/ws?clientId=c1")
    other = await client.ws_connect("/ws?clientId=c2")
    for ws in (mine, other):
        assert (await ws.receive_json(timeout=5))["type"] == "status"
    assert (await client.post(V2 + "/manager/queue/task", json=task("install", "e1", INSTALL, "c1"))).status == 200
    await client.post(V2 + "/manager/queue/start")
    seen = await ws_messages(mine, lambda m: m["type"] == QUEUE_STATUS and m["data"].get("status") == "all-done")
    by_type = {m["type"]: m["data"] for m in seen if m["type"] in (TASK_STARTED, TASK_COMPLETED)}
    started, completed = by_type[TASK_STARTED], by_type[TASK_COMPLETED]
    assert set(started) == {"ui_id", "kind", "timestamp", "state"} and started["ui_id"] == "e1"
    assert set(started["state"]) == {"history", "running_queue", "pending_queue", "installed_packs"}
    assert set(completed) == {"ui_id", "result", "kind", "status", "timestamp", "state"}
    assert completed["result"] == "success" and completed["kind"] == "install"
    assert completed["status"] == {"status_str": "success", "completed": True, "messages": []}
    state = completed["state"]
    assert state["installed_packs"]["demo-mask-utils"]["enabled"] is True  # the frontend's installed map
    assert state["history"]["e1"]["status"]["status_str"] == "success" and state["pending_queue"] == []
    types = [m["type"] for m in seen]
    assert types.index(TASK_STARTED) < types.index(TASK_COMPLETED) < len(types) - 1
    # the other client gets the broadcast, never another client's task events or history
    theirs = await ws_messages(other, lambda m: m["type"] == QUEUE_STATUS and m["data"].get("status") == "all-done")
    assert not any(m["type"] in (TASK_STARTED, TASK_COMPLETED) for m in theirs)
    # a failed task: status error, the message, and the worker's next task still runs
    await client.post(V2 + "/manager/queue/task", json=task("uninstall", "e2", {"node_name": "demo-video-helper"}))
    await client.post(V2 + "/manager/queue/start")
    seen = await ws_messages(mine, lambda m: m["type"] == TASK_COMPLETED)
    failed = seen[-1]["data"]
    assert failed["ui_id"] == "e2" and failed["status"]["status_str"] == "error"
    assert failed["result"] == failed["status"]["messages"][0] and failed["result"] != "failed"
    await mine.close()
    await other.close()


def _script_written_for_4x(base: str, source_id: str) -> dict:
    """What a ComfyUI-Manager 4.x user writes: queue a task, start, poll the status, read history."""

    def call(method: str, path: str, body: dict | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            base + path, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.read()

    call(
        "POST",
        "/api/v2/manager/queue/task",
        {
            "ui_id": "script-1",
            "client_id": "my-script",
            "kind": "install",
            "params": {
                "id": source_id,
                "version": "nightly",
                "selected_version": "nightly",
                "mode": "cache",
                "channel": "default",
            },
        },
    )
    try:
        call("POST", "/api/v2/manager/queue/start")
    except urllib.error.HTTPError as err:  # 201: the worker was already running
        assert err.code == 201
    for _ in range(600):
        status = json.loads(call("GET", "/api/v2/manager/queue/status?client_id=my-script"))
        if not status["is_processing"] and status["done_count"] >= status["total_count"] > 0:
            break
        time.sleep(0.1)
    history = json.loads(call("GET", "/api/v2/manager/queue/history?client_id=my-script"))["history"]
    for _ in range(100):  # 4.x writes the batch file a few seconds after idle
        ids = json.loads(call("GET", "/api/v2/manager/queue/history_list"))["ids"]
        if ids:
            break
        time.sleep(0.1)
    record = json.loads(call("GET", f"/api/v2/manager/queue/history?id={ids[0]}"))
    return {"status": status, "history": history, "record": record}


async def test_a_script_written_for_4x_works_unchanged(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    base = str(client.make_url("")).rstrip("/")
    out = await asyncio.to_thread(_script_written_for_4x, base, "demo-upscale-pack")
    assert out["status"]["done_count"] == 1
    item = out["history"]["script-1"]
    assert item["status"]["status_str"] == "success" and item["kind"] == "install"
    pack = root / "custom_nodes" / "demo-upscale-pack"
    assert (pack / "__init__.py").is_file() and (pack / ".git").exists()  # cloned from the local repository
    record = out["record"]
    assert [op["operation_id"] for op in record["operations"]] == ["script-1"]
    assert record["successful_operations"] == 1 and item["batch_id"] == record["batch_id"]
    assert (Path(api.manager.layout.manager_dir) / "batch_history" / f"{record['batch_id']}.json").is_file()


async def test_inside_comfyui_the_events_leave_through_send_sync(
    comfy_modules, comfy_tree, tmp_path, aiohttp_client, loaded
):
    """The glue's forwarder carries the /v2 events to PromptServer.send_sync, addressed to the sid."""
    offline_demo(comfy_tree, tmp_path)
    sent: list[tuple[str, dict, str | None]] = []
    comfy_modules.send_sync = lambda event, data, sid=None: sent.append((event, data, sid))
    loaded()
    client = await aiohttp_client(comfy_app(comfy_modules))
    item = task("install", "cu1", {**INSTALL, "id": "demo-image-tools"}, "sid-1")
    resp = await client.post("/api/v2/manager/queue/task", json=item)  # as the frontend calls it
    assert resp.status == 200, await resp.text()
    assert (await client.post("/api/v2/manager/queue/start")).status in (200, 201)
    api = comfy_modules._offline_manager_started["api"]
    assert await asyncio.to_thread(api.queue.run_until_idle, 30)
    glue = sys.modules[type(api).__module__.rsplit(".", 1)[0] + ".v2_history"]  # the copy ComfyUI imported
    assert await asyncio.to_thread(glue.journal_of(api).settle, 10)
    v2 = [
        (event, sid)
        for event, data, sid in sent
        if event in (TASK_STARTED, TASK_COMPLETED) or (event == QUEUE_STATUS and data.get("status") == "all-done")
    ]
    assert v2 == [(TASK_STARTED, "sid-1"), (TASK_COMPLETED, "sid-1"), (QUEUE_STATUS, None)]
    done = next(data for event, data, _sid in sent if event == TASK_COMPLETED)
    assert done["state"]["installed_packs"]["demo-image-tools"]["enabled"] is True
    assert (comfy_tree / "custom_nodes" / "demo-image-tools" / "__init__.py").is_file()
