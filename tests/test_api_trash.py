"""The trash through the HTTP door, on a real server over the demo tree: GET /v1/trash lists what
an uninstall left (pack, version, when, size), restore_trash and empty_trash are queued kinds
(``/v1/status`` lists them among the task kinds), and the list follows each change."""

from __future__ import annotations

import asyncio

from manager.api.routes import PREFIX


async def _data(resp, status: int = 200):
    body = await resp.json()
    assert resp.status == status, body
    return body["data"]


async def _queue(client, api, *tasks) -> list[dict]:
    data = await _data(await client.post(PREFIX + "/queue", json={"tasks": [dict(t) for t in tasks]}), 202)
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)
    out = []
    for t in data["tasks"]:
        got = api.manager.queue.get(t["id"]).to_dict()
        assert got["state"] == "done", got
        out.append(got)
    return out


async def test_trash_list_restore_empty_through_the_api(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    assert await _data(await client.get(PREFIX + "/trash")) == {
        "entries": [],
        "count": 0,
        "total_bytes": 0,
        "path": str(root / "custom_nodes" / ".cm-trash.disabled"),
    }
    await _queue(
        client, api, {"kind": "install", "target": "demo-image-tools"}, {"kind": "install", "target": "demo-prompt-kit"}
    )
    await _queue(
        client,
        api,
        {"kind": "uninstall", "target": "demo-image-tools"},
        {"kind": "uninstall", "target": "demo-prompt-kit"},
    )
    listed = await _data(await client.get(PREFIX + "/trash"))
    assert listed["count"] == 2 and {e["name"] for e in listed["entries"]} == {"demo-image-tools", "demo-prompt-kit"}
    for e in listed["entries"]:
        assert e["reason"] == "uninstall" and e["size_bytes"] > 0 and e["commit"] and e["trashed_at"] > 0
    assert listed["total_bytes"] == sum(e["size_bytes"] for e in listed["entries"])

    status = await _data(await client.get(PREFIX + "/status"))
    assert {"restore_trash", "empty_trash"} <= set(status["task_kinds"])

    entry = next(e for e in listed["entries"] if e["name"] == "demo-prompt-kit")
    (task,) = await _queue(client, api, {"kind": "restore_trash", "target": entry["id"]})
    assert task["result"]["path"].endswith("demo-prompt-kit")
    assert (root / "custom_nodes" / "demo-prompt-kit").is_dir()
    left = await _data(await client.get(PREFIX + "/trash"))
    assert [e["name"] for e in left["entries"]] == ["demo-image-tools"]

    (task,) = await _queue(client, api, {"kind": "empty_trash", "target": "trash"})
    assert task["result"]["count"] == 1
    assert (await _data(await client.get(PREFIX + "/trash")))["count"] == 0
