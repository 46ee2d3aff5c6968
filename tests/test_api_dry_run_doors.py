"""``?dry_run=true`` on the classic and /v2 queue routes (issue 19, item 1): the same shared plan
record ``POST /v1/queue`` answers for ``dry_run: true``, with the door's own names added (the
classic ``ui_id``; the 4.x ``ui_id``, ``client_id`` and kind), and nothing queued, moved or run.

A real aiohttp server on 127.0.0.1 over the demo tree (real git packs, a file:// channel, offline).
"""

from __future__ import annotations

from typing import Any

from manager.api.v2_routes import V2
from support.treesum import listing

V1 = "/offline-manager/v1"
ROW = {"id": "demo-mask-utils", "version": "nightly", "selected_version": "nightly", "ui_id": "c-1"}


def _comparable(plan: dict[str, Any]) -> dict[str, Any]:
    return {k: plan[k] for k in ("kind", "target", "ok", "packs", "python", "moves", "blockers", "skip_deps")}


async def _data(resp: Any, status: int = 200) -> Any:
    body = await resp.json()
    assert resp.status == status, body
    return body["data"] if isinstance(body, dict) and "data" in body else body


async def test_classic_and_v2_dry_runs_answer_the_v1_plan_and_change_nothing(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    tree = listing(root / "custom_nodes")

    v1 = await _data(
        await client.post(
            V1 + "/queue",
            json={"kind": "install", "target": "demo-mask-utils", "params": {"version": "nightly"}, "dry_run": True},
        )
    )
    (reference,) = v1["plans"]
    assert reference["packs"]["added"][0]["name"] == "demo-mask-utils", reference

    classic = await _data(await client.post("/manager/queue/install?dry_run=true", json=ROW))
    assert classic["dry_run"] is True
    (plan,) = classic["plans"]
    assert plan["ui_id"] == "c-1"
    assert _comparable(plan) == _comparable(reference)

    v2 = await _data(
        await client.post(
            V2 + "/manager/queue/task?dry_run=true",
            json={
                "kind": "install",
                "ui_id": "u-1",
                "client_id": "c1",
                "params": {"id": "demo-mask-utils", "selected_version": "nightly"},
            },
        )
    )
    (plan2,) = v2["plans"]
    assert (plan2["ui_id"], plan2["client_id"], plan2["v2_kind"]) == ("u-1", "c1", "install")
    assert _comparable(plan2) == _comparable(reference)

    # update-all on both doors, and the legacy batch (a bad row still lands in failed)
    ua = await _data(await client.post("/manager/queue/update_all?dry_run=true", json={"mode": "cache"}))
    assert ua["plans"][0]["kind"] == "update_all"
    ua2 = await _data(await client.post(V2 + "/manager/queue/update_all?client_id=c1&ui_id=ua&dry_run=true"))
    assert ua2["plans"][0]["kind"] == "update_all" and ua2["plans"][0]["ui_id"] == "ua"
    batch = await _data(
        await client.post(
            V2 + "/manager/queue/batch?dry_run=true",
            json={"install": [{**ROW, "ui_id": "b-1"}], "uninstall": [{"ui_id": "b-2"}]},
        )
    )
    assert batch["dry_run"] is True and batch["failed"] == ["b-2"]
    assert [(p["ui_id"], p["kind"]) for p in batch["plans"]] == [("b-1", "install")]
    assert _comparable(batch["plans"][0]) == _comparable(reference)

    # nothing was queued, run or moved
    assert api.manager.queue.status()["total_count"] == 0
    assert await (await client.get(V2 + "/manager/queue/history")).json() == {"history": {}}
    assert listing(root / "custom_nodes") == tree

    # without the flag the same classic request queues the task
    queued = await _data(await client.post("/manager/queue/install", json=ROW))
    assert queued["task"]["id"] == "c-1"


async def test_a_dry_run_is_answered_at_any_level_with_the_denial_as_blocker(aiohttp_client, api_app):
    app, api, _root = api_app(default="security_level = strong")
    client = await aiohttp_client(app)
    v2 = await _data(
        await client.post(
            V2 + "/manager/queue/task?dry_run=true",
            json={"kind": "install", "ui_id": "u-2", "client_id": "c1", "params": {"id": "demo-mask-utils"}},
        )
    )
    (plan,) = v2["plans"]
    assert plan["ok"] is False and plan["blockers"][0]["code"] == "security_denied", plan
    assert api.manager.queue.status()["total_count"] == 0


async def test_a_bad_dry_run_value_is_request_invalid_naming_it(aiohttp_client, api_app):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    for path, body in (
        ("/manager/queue/install?dry_run=maybe", ROW),
        (
            V2 + "/manager/queue/task?dry_run=yes please",
            {"kind": "install", "ui_id": "x", "client_id": "c", "params": {}},
        ),
    ):
        resp = await client.post(path, json=body)
        data = await resp.json()
        assert resp.status == 400 and data["error"]["code"] == "request_invalid", data
        assert data["error"]["details"]["parameter"] == "dry_run" and "dry_run=true" in data["error"]["hint"]
    assert api.manager.queue.status()["total_count"] == 0
