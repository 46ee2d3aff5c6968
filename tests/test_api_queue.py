"""The queue over HTTP: a classic script flow, v1 tasks, events on /ws, load while a task runs."""

from __future__ import annotations

import asyncio
import threading

from manager.api.event_forwarder import CLASSIC_EVENT, EVENT_NAME, EventForwarder
from manager.api.routes import PREFIX
from manager.events import Event
from support.api_tree import ws_messages


async def test_classic_script_flow(aiohttp_client, api_app):
    """status -> reset -> queue/install -> start -> poll status until done, exactly as a classic script."""
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/ws")
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "status" and hello["data"]["sid"]

    status = await (await client.get("/manager/queue/status")).json()
    assert status["is_processing"] is False
    assert (await client.post("/manager/queue/reset")).status == 200
    row = {
        "id": "demo-prompt-kit",
        "version": "nightly",
        "selected_version": "nightly",
        "channel": "default",
        "mode": "cache",
        "ui_id": "row-7",
        "skip_post_install": False,
        "files": ["https://attacker.example/evil.git"],
    }  # client lists are never trusted
    resp = await client.post("/manager/queue/install", json=row)
    assert resp.status == 200, await resp.text()
    assert (await client.post("/manager/queue/start")).status == 200
    for _ in range(300):
        status = await (await client.get("/api/manager/queue/status")).json()
        if not status["is_processing"] and status["done_count"] == status["total_count"] == 1:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(status)
    msgs = await ws_messages(ws, lambda m: m["type"] == CLASSIC_EVENT and m["data"]["status"] == "done")
    classic = [m["data"] for m in msgs if m["type"] == CLASSIC_EVENT]
    assert classic[0] == {
        "status": "in_progress",
        "target": "row-7",
        "ui_target": "nodepack_manager",
        "total_count": 1,
        "done_count": 1,
    }
    assert classic[-1]["nodepack_result"] == {"row-7": "success"} and classic[-1]["model_result"] == {}
    ours = [m["data"]["event"] for m in msgs if m["type"] == EVENT_NAME]
    assert ours[:2] == ["queued", "started"] and "done" in ours
    installed = await (await client.get("/customnode/installed")).json()
    assert installed["demo-prompt-kit"]["enabled"] is True
    assert (await client.post("/manager/queue/start")).status in (200, 201)
    await ws.close()


async def test_classic_failure_and_disable_enable_flow(aiohttp_client, api_app):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    for body in ({"id": "demo-mask-utils", "version": "nightly", "selected_version": "nightly", "ui_id": "a"},):
        assert (await client.post("/manager/queue/install", json=body)).status == 200
    assert (await client.post("/manager/queue/start")).status == 200
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 30)
    # disable, then the classic "install with skip_post_install" on a disabled pack enables it again
    assert (
        await client.post("/manager/queue/disable", json={"id": "demo-mask-utils", "version": "nightly", "ui_id": "b"})
    ).status == 200
    await client.post("/manager/queue/start")
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 30)
    assert (await (await client.get("/customnode/installed")).json())["demo-mask-utils"]["enabled"] is False
    resp = await client.post(
        "/manager/queue/install",
        json={
            "id": "demo-mask-utils",
            "version": "nightly",
            "selected_version": "nightly",
            "ui_id": "c",
            "skip_post_install": True,
        },
    )
    assert (await resp.json())["data"]["task"]["kind"] == "enable"
    await client.post("/manager/queue/start")
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 30)
    assert (await (await client.get("/customnode/installed")).json())["demo-mask-utils"]["enabled"] is True
    # a failing task: uninstalling what is not there ends failed, with its message in the history
    await client.post("/manager/queue/uninstall", json={"id": "demo-video-helper", "version": "1.0.0", "ui_id": "d"})
    await client.post("/manager/queue/start")
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 30)
    task = (await (await client.get(PREFIX + "/tasks/d")).json())["data"]
    assert task["state"] == "failed" and task["error"]["code"] and task["error"]["hint"] is not None


async def test_v1_enqueue_batch_and_task_routes(aiohttp_client, api_app, tmp_path):
    # offline, models come from the local model store (the demo's model-store folder)
    app, api, _root = api_app(default=f"model_store = {tmp_path / 'demo' / 'model-store'}")
    client = await aiohttp_client(app)
    resp = await client.post(
        PREFIX + "/queue",
        json={
            "tasks": [
                {"kind": "install", "target": "demo-upscale-pack", "params": {"version": "nightly"}, "task_id": "u1"},
                {"kind": "install_model", "target": "default/demo-tiny.safetensors", "task_id": "m1"},
            ],
            "client_id": "panel-1",
        },
    )
    assert resp.status == 202
    data = (await resp.json())["data"]
    assert [t["id"] for t in data["tasks"]] == ["u1", "m1"] and data["started"] is True
    model_params = data["tasks"][1]["params"]
    assert model_params["url"].startswith("file://") and model_params["policy"]["allowed"] is True
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 30)
    queue = (await (await client.get(PREFIX + "/queue?client_id=panel-1")).json())["data"]
    states = {t["id"]: t["state"] for t in queue["history"]}
    assert states == {"u1": "done", "m1": "done"}, queue["history"]
    models = (await (await client.get(PREFIX + "/models")).json())["data"]["models"]
    assert models[0]["installed"] is True
    classic = await (await client.get("/externalmodel/getlist")).json()
    assert classic["models"][0]["installed"] == "True"
    # with the worker stopped, queued tasks wait: cancel one through its route, reset drops the other
    assert await asyncio.to_thread(api.manager.queue.stop, 10)
    await client.post(
        PREFIX + "/queue", json={"kind": "fix", "target": "demo-upscale-pack", "task_id": "f1", "start": False}
    )
    await client.post(
        PREFIX + "/queue", json={"kind": "fix", "target": "demo-upscale-pack", "task_id": "f2", "start": False}
    )
    cancelled = (await (await client.post(PREFIX + "/tasks/f2/cancel")).json())["data"]
    assert cancelled["state"] == "cancelled"
    reset = (await (await client.post(PREFIX + "/queue/reset")).json())["data"]
    assert reset["cancelled"] == 1
    assert (await (await client.get(PREFIX + "/tasks/f1")).json())["ok"] is False  # reset clears the history


async def test_fifty_parallel_lists_while_a_task_runs(aiohttp_client, api_app):
    gate = threading.Event()
    running = threading.Event()

    def slow_fix(ctx):  # a real runner of the test: holds the worker
        running.set()
        ctx.progress("waiting", 10.0)
        gate.wait(30)
        return {"fixed": ctx.target}

    app, api, _root = api_app(extra={"fix": slow_fix})
    client = await aiohttp_client(app)
    await client.post(PREFIX + "/queue", json={"kind": "fix", "target": "demo-image-tools", "task_id": "slow"})
    assert await asyncio.to_thread(running.wait, 10)
    paths = [
        "/customnode/getlist?mode=cache&skip_update=true",
        PREFIX + "/packs",
        "/manager/queue/status",
        PREFIX + "/queue",
        "/api/customnode/getlist?mode=cache",
    ]

    async def one(i: int) -> int:
        resp = await client.get(paths[i % len(paths)])
        await resp.read()
        return resp.status

    statuses = await asyncio.gather(*(one(i) for i in range(50)))
    assert statuses == [200] * 50
    assert api.manager.queue.get("slow").state.value == "running"
    busy = await client.post("/manager/queue/update_all", json={"mode": "cache"})
    assert busy.status == 401 and (await busy.json())["error"]["code"] == "queue_busy"  # classic status
    gate.set()
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 30)
    assert api.manager.queue.get("slow").result == {"fixed": "demo-image-tools"}


def test_forwarder_maps_events_to_classic_messages():
    sent: list[tuple[str, dict, object]] = []
    fwd = EventForwarder(lambda name, data, sid: sent.append((name, data, sid)))
    task = {"kind": "install_model", "id": "m"}
    for name, data in (
        ("queued", {"task": task}),
        ("started", {"task": task}),
        ("failed", {"task": task, "error": {"message": "disk full"}}),
        ("queue-idle", {"total_count": 1, "done_count": 1, "failed_count": 1}),
    ):
        fwd(Event(name=name, task_id="m", data=data))
    classic = [d for n, d, _ in sent if n == CLASSIC_EVENT]
    assert classic == [
        {"status": "in_progress", "target": "m", "ui_target": "model_manager", "total_count": 1, "done_count": 1},
        {
            "status": "done",
            "nodepack_result": {},
            "model_result": {"m": "disk full"},
            "total_count": 1,
            "done_count": 1,
        },
    ]
    assert [n for n, _, _ in sent].count(EVENT_NAME) == 4
