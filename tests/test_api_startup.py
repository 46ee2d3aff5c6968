"""Next-start operations and import failures through the standalone server (real server, demo tree)."""

from __future__ import annotations

import asyncio
import json

from manager.api.routes import PREFIX
from manager.import_failures import ImportFailure, ImportFailureReport, save_report


async def _install(client, api, *ids: str) -> None:
    resp = await client.post(PREFIX + "/queue", json={"tasks": [{"kind": "install", "target": i} for i in ids]})
    assert resp.status == 202, await resp.text()
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)


async def test_schedule_list_replace_and_cancel(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    await _install(client, api, "demo-image-tools", "demo-prompt-kit")
    first = await client.post(PREFIX + "/startup", json={"action": "disable", "target": "demo-image-tools"})
    assert first.status == 200, await first.text()
    op1 = (await first.json())["data"]["scheduled"]
    assert op1["policy"]["allowed"] is True and op1["origin"] == "api:standalone"
    # a newer operation on the same pack replaces the older one
    op2 = (
        await (
            await client.post(PREFIX + "/startup", json={"action": "uninstall", "target": "demo-image-tools"})
        ).json()
    )["data"]["scheduled"]
    op3 = (
        await (await client.post(PREFIX + "/startup", json={"action": "disable", "target": "demo-prompt-kit"})).json()
    )["data"]["scheduled"]
    data = (await (await client.get(PREFIX + "/startup")).json())["data"]
    assert [(p["action"], p["target"]) for p in data["pending"]] == [
        ("uninstall", "demo-image-tools"),
        ("disable", "demo-prompt-kit"),
    ]
    assert data["applies_at_restart"] is False and data["last"] is None
    cancelled = await client.post(f"{PREFIX}/startup/{op2['id']}/cancel")
    assert (await cancelled.json())["data"]["cancelled"]["id"] == op2["id"]
    again = await client.post(f"{PREFIX}/startup/{op1['id']}/cancel")
    assert again.status == 404 and (await again.json())["error"]["code"] == "not_found"
    doc = json.loads((root / "user" / "__manager" / "startup" / "pending.json").read_text())
    assert [p["id"] for p in doc["pending"]] == [op3["id"]]
    await client.post(f"{PREFIX}/startup/{op3['id']}/cancel")
    assert not (root / "user" / "__manager" / "startup" / "pending.json").exists()  # empty: removed


async def test_schedule_refusals(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    cases = [
        ({"action": "explode", "target": "x"}, 400, "request_invalid"),
        ({"action": "uninstall", "target": "../../etc"}, 400, "invalid_name"),
        ({"action": "disable", "target": ".cm-trash.disabled"}, 400, "invalid_name"),
        ({"action": "snapshot_restore", "target": "../x"}, 400, "invalid_name"),
        ({"action": "uninstall", "target": "demo-video-helper"}, 404, "not_found"),  # not installed
        ({"action": "snapshot_restore", "target": "nope"}, 404, "not_found"),
        ({"action": "snapshot_restore", "target": "nope", "params": {"bogus": 1}}, 400, "request_invalid"),
        ({"action": "uninstall"}, 400, "request_invalid"),
    ]
    for body, status, code in cases:
        resp = await client.post(PREFIX + "/startup", json=body)
        doc = await resp.json()
        assert resp.status == status and doc["error"]["code"] == code, (body, doc)
    assert not (root / "user" / "__manager" / "startup" / "pending.json").exists()


async def test_schedule_needs_the_policy(aiohttp_client, api_app):
    app, api, root = api_app(default="security_level = strong")
    client = await aiohttp_client(app)
    resp = await client.post(PREFIX + "/startup", json={"action": "uninstall", "target": "demo-image-tools"})
    doc = await resp.json()
    assert resp.status == 403 and doc["error"]["code"] == "security_denied"


async def test_import_failures_of_the_last_start(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    empty = (await (await client.get(PREFIX + "/import-failures")).json())["data"]
    assert empty["available"] is False and empty["failures"] == [] and empty["notes"]
    await _install(client, api, "demo-image-tools", "demo-prompt-kit")
    tb = "Traceback (most recent call last):\n  File \"x\", line 1\nModuleNotFoundError: No module named 'cv3'"
    save_report(
        api.manager.layout,
        ImportFailureReport(
            (
                ImportFailure(
                    "demo-image-tools",
                    str(root / "custom_nodes" / "demo-image-tools"),
                    "No module named 'cv3'",
                    tb,
                    "import_error",
                    "log",
                ),
            ),
            "2025-01-01T00:00:00Z",
            True,
        ),
    )
    data = (await (await client.get(PREFIX + "/import-failures")).json())["data"]
    assert data["available"] is True and data["live"] is False
    (row,) = data["failures"]
    assert row["name"] == "demo-image-tools" and row["pack_id"] == "demo-image-tools" and row["installed"] is True
    listing = await (await client.get("/customnode/getlist?mode=cache&skip_update=true")).json()
    assert listing["node_packs"]["demo-image-tools"]["import-fail"] is True
    assert listing["node_packs"]["demo-prompt-kit"]["import-fail"] is False
    v1 = (await (await client.get(PREFIX + "/packs")).json())["data"]
    rows = {p["id"]: p for p in v1["packs"]}
    assert rows["demo-image-tools"]["installed"]["import_failed"] is True and v1["import_failed_count"] == 1
    assert rows["demo-prompt-kit"]["installed"]["import_failed"] is False
    info = await client.post("/customnode/import_fail_info", json={"cnr_id": "demo-image-tools"})
    assert await info.json() == {"name": "demo-image-tools", "path": row["path"], "msg": tb}
    url = (root.parent / "sources" / "demo-image-tools").as_uri()
    by_url = await client.post("/customnode/import_fail_info", json={"url": url + ".git"})
    assert (await by_url.json())["name"] == "demo-image-tools"
    none = await client.post("/customnode/import_fail_info", json={"cnr_id": "demo-prompt-kit"})
    assert none.status == 404 and (await none.json())["error"]["code"] == "not_found"
    bad = await client.post("/customnode/import_fail_info", json={})
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "request_invalid"
