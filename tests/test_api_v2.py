"""The 4.x route family under /v2 through a real aiohttp server on 127.0.0.1, over the demo tree
(real git packs, a file:// channel, offline): every route's shape and statuses, the eight task
kinds of POST /v2/manager/queue/task, policy refusals, and the worker going on after a failure."""

from __future__ import annotations

import asyncio
import json

import pytest

from manager.api.routes import ROUTES
from manager.api.v2_routes import V2

V2_ROUTES = [r for r in ROUTES if r.path.startswith(V2 + "/")]


def task(kind: str, ui_id: str, params: dict, client_id: str = "c1") -> dict:
    return {"kind": kind, "ui_id": ui_id, "client_id": client_id, "params": params}


INSTALL = {
    "id": "demo-mask-utils",
    "version": "nightly",
    "selected_version": "nightly",
    "mode": "cache",
    "channel": "default",
    "repository": "",
    "skip_post_install": False,
}


async def run_all(api) -> None:
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)


async def coded(resp, status: int, code: str) -> dict:
    body = await resp.json()
    assert resp.status == status, body
    assert body["ok"] is False and body["error"]["code"] == code and body["error"]["hint"], body
    return body


def test_every_4x_route_is_in_the_table_once():
    """v4-api.md section 1.1 plus the legacy server's routes, each once, all mounted with web.route."""
    want = {
        ("POST", "/manager/queue/task"),
        ("GET", "/manager/queue/history_list"),
        ("GET", "/manager/queue/history"),
        ("GET", "/customnode/getmappings"),
        ("GET", "/customnode/fetch_updates"),
        ("POST", "/manager/queue/update_all"),
        ("GET", "/manager/is_legacy_manager_ui"),
        ("GET", "/customnode/installed"),
        ("GET", "/snapshot/getlist"),
        ("POST", "/snapshot/remove"),
        ("POST", "/snapshot/restore"),
        ("GET", "/snapshot/get_current"),
        ("POST", "/snapshot/save"),
        ("POST", "/customnode/import_fail_info"),
        ("POST", "/customnode/import_fail_info_bulk"),
        ("POST", "/manager/queue/reset"),
        ("GET", "/manager/queue/status"),
        ("POST", "/manager/queue/start"),
        ("POST", "/manager/queue/update_comfyui"),
        ("GET", "/comfyui_manager/comfyui_versions"),
        ("POST", "/comfyui_manager/comfyui_switch_version"),
        ("POST", "/manager/queue/install_model"),
        ("GET", "/manager/db_mode"),
        ("POST", "/manager/db_mode"),
        ("GET", "/manager/policy/update"),
        ("POST", "/manager/policy/update"),
        ("GET", "/manager/channel_url_list"),
        ("POST", "/manager/channel_url_list"),
        ("POST", "/manager/reboot"),
        ("GET", "/manager/version"),
        # only in 4.x's legacy server
        ("GET", "/customnode/getlist"),
        ("POST", "/manager/queue/batch"),
        ("GET", "/externalmodel/getlist"),
        ("GET", "/customnode/versions/{node_name}"),
        ("GET", "/customnode/disabled_versions/{node_name}"),
        ("POST", "/customnode/install/git_url"),
        ("POST", "/customnode/install/pip"),
        ("GET", "/manager/notice"),
        ("GET", "/customnode/alternatives"),
    }
    have = [(r.method, r.path[len(V2) :]) for r in V2_ROUTES]
    assert sorted(have) == sorted(want) and len(have) == len(set(have))
    assert all(r.legacy for r in V2_ROUTES)  # mounted only where free, like classic
    assert any(r.method == "GET" and r.path == "/customnode/alternatives" for r in ROUTES)  # unprefixed one


@pytest.mark.parametrize("mirror", ["", "/api"])
async def test_read_routes_answer_the_4x_shapes(aiohttp_client, api_app, mirror):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    get = lambda path: client.get(mirror + V2 + path)  # noqa: E731

    assert await (await get("/manager/queue/history_list")).json() == {"ids": []}
    assert await (await get("/manager/queue/history")).json() == {"history": {}}
    maps = await (await get("/customnode/getmappings?mode=cache")).json()
    assert any(names == ["DemoResize", "DemoCrop"] for names, _meta in maps.values())
    await coded(await get("/customnode/getmappings"), 400, "request_invalid")  # 4.x: 500 (KeyError)
    gone = await coded(await get("/customnode/fetch_updates"), 410, "route_gone")
    assert gone["deprecated"] is True
    assert await (await get("/manager/is_legacy_manager_ui")).json() == {"is_legacy_manager_ui": False}
    assert await (await get("/customnode/installed")).json() == {}
    assert await (await get("/customnode/installed?mode=imported")).json() == {}
    assert await (await get("/snapshot/getlist")).json() == {"items": []}
    current = await (await get("/snapshot/get_current")).json()
    assert set(current) == {"comfyui", "git_custom_nodes", "cnr_custom_nodes", "file_custom_nodes", "pips"}
    status = await (await get("/manager/queue/status")).json()
    assert {"total_count", "done_count", "in_progress_count", "pending_count", "is_processing"} <= set(status)
    assert (await (await get("/manager/queue/status?client_id=c9")).json())["client_id"] == "c9"
    versions = await (await get("/comfyui_manager/comfyui_versions")).json()
    assert versions["versions"][0] == "nightly" and len(versions["versions"]) <= 6 and "current" in versions
    assert await (await get("/manager/db_mode")).text() == "cache"
    assert await (await get("/manager/policy/update")).text() == "stable-comfyui"
    chans = await (await get("/manager/channel_url_list")).json()
    assert chans["selected"] == "demo" and chans["list"][0].startswith("demo::file://")
    assert (await (await get("/manager/version")).text()).startswith("V")
    listing = await (await get("/customnode/getlist?mode=cache&skip_update=true")).json()
    assert listing["channel"] == "demo" and len(listing["node_packs"]) == 5
    models = await (await get("/externalmodel/getlist?mode=cache")).json()
    assert models["models"][0]["installed"] == "False"
    await coded(await get("/customnode/versions/demo-image-tools"), 503, "cache_missing")  # offline, no cache
    await coded(await get("/customnode/disabled_versions/demo-image-tools"), 404, "not_found")
    assert await (await get("/customnode/alternatives?mode=cache")).json() == {}
    notice = await get("/manager/notice")
    assert notice.content_type == "text/html" and "offline" in await notice.text()


async def test_settings_snapshots_import_failures_and_comfyui_routes(aiohttp_client, api_app):
    app, api, root = api_app(restart=lambda: None)
    client = await aiohttp_client(app)
    post = lambda path, **kw: client.post(V2 + path, **kw)  # noqa: E731

    assert (await post("/manager/db_mode", json={"value": "local"})).status == 200
    assert await (await client.get(V2 + "/manager/db_mode")).text() == "local"
    await coded(await post("/manager/db_mode", json={"value": "sideways"}), 400, "config_invalid")
    assert (await post("/manager/policy/update", json={"value": "nightly"})).status == 200
    assert await (await client.get(V2 + "/manager/policy/update")).text() == "nightly-comfyui"
    assert (await post("/manager/channel_url_list", json={"value": "demo"})).status == 200
    await coded(await post("/manager/channel_url_list", json={"value": "nope"}), 400, "channel_invalid")

    assert (await post("/snapshot/save")).status == 200
    (name,) = (await (await client.get(V2 + "/snapshot/getlist")).json())["items"]
    assert (await post(f"/snapshot/restore?target={name}")).status == 200  # 4.x sends target as a query
    assert (root / "user" / "__manager" / "startup" / "pending.json").is_file()  # applied at the next start
    await coded(await post("/snapshot/restore?target=../../etc"), 400, "invalid_name")
    assert (await post(f"/snapshot/remove?target={name}")).status == 200
    assert (await (await client.get(V2 + "/snapshot/getlist")).json())["items"] == []

    from manager.import_failures import ImportFailure, ImportFailureReport, save_report

    save_report(
        api.manager.layout,
        ImportFailureReport(
            failures=(
                ImportFailure(
                    "demo-mask-utils",
                    str(root / "custom_nodes" / "demo-mask-utils"),
                    "boom",
                    "Traceback ...\nImportError: boom",
                ),
            ),
            available=True,
        ),
    )
    bulk = await post(
        "/customnode/import_fail_info_bulk",
        json={"cnr_ids": ["demo-mask-utils", "demo-prompt-kit"], "urls": ["file:///nowhere"]},
    )
    assert await bulk.json() == {
        "demo-mask-utils": {"error": "boom", "traceback": "Traceback ...\nImportError: boom"},
        "demo-prompt-kit": None,
        "file:///nowhere": None,
    }
    await coded(await post("/customnode/import_fail_info_bulk", json={}), 400, "request_invalid")
    one = await post("/customnode/import_fail_info", json={"cnr_id": "demo-mask-utils"})
    assert (await one.json())["msg"].endswith("ImportError: boom")
    await coded(await post("/customnode/import_fail_info", json={"cnr_id": "demo-prompt-kit"}), 404, "not_found")

    await coded(await post("/manager/queue/update_comfyui?client_id=c1&ui_id=u1"), 501, "not_implemented")
    await coded(await post("/manager/queue/update_comfyui"), 400, "request_invalid")
    await coded(
        await post(
            "/comfyui_manager/comfyui_switch_version", json={"ver": "v0.3.64", "client_id": "c1", "ui_id": "u1"}
        ),
        501,
        "not_implemented",
    )
    await coded(await post("/comfyui_manager/comfyui_switch_version", json={"ver": "v1"}), 400, "request_invalid")
    assert (await (await post("/manager/reboot")).json())["data"]["restarting"] is True
    assert api.manager.queue.status()["total_count"] == 0  # nothing of this was queued


async def test_queue_task_runs_each_kind(aiohttp_client, api_app, tmp_path):
    app, api, root = api_app(default=f"model_store = {tmp_path / 'demo' / 'model-store'}")
    client = await aiohttp_client(app)

    async def run(kind: str, ui_id: str, params: dict) -> dict:
        resp = await client.post(V2 + "/manager/queue/task", json=task(kind, ui_id, params))
        body = await resp.json()
        assert resp.status == 200, body
        assert body["data"]["task"]["id"] == ui_id
        start = await client.post(V2 + "/manager/queue/start")
        assert start.status in (200, 201)
        await run_all(api)
        return api.manager.queue.get(ui_id).to_dict()

    async def installed() -> dict:
        return await (await client.get("/api" + V2 + "/customnode/installed")).json()

    done = await run("install", "t-install", INSTALL)
    assert done["state"] == "done" and (root / "custom_nodes" / "demo-mask-utils" / "__init__.py").is_file()
    assert (await installed())["demo-mask-utils"]["enabled"] is True
    assert (await run("disable", "t-disable", {"node_name": "demo-mask-utils", "is_unknown": False}))["state"] == "done"
    assert (await installed())["demo-mask-utils"]["enabled"] is False
    assert (await run("enable", "t-enable", {"cnr_id": "demo-mask-utils"}))["state"] == "done"
    assert (await installed())["demo-mask-utils"]["enabled"] is True
    assert (await run("update", "t-update", {"node_name": "demo-mask-utils", "node_ver": "nightly"}))["state"] == "done"
    assert (await run("fix", "t-fix", {"node_name": "demo-mask-utils", "node_ver": "nightly"}))["state"] == "done"
    assert (await run("uninstall", "t-uninstall", {"node_name": "demo-mask-utils"}))["state"] == "done"
    assert "demo-mask-utils" not in await installed()
    model = {
        "name": "Demo tiny checkpoint",
        "type": "checkpoint",
        "base": "SD1.5",
        "save_path": "default",
        "filename": "demo-tiny.safetensors",
        "url": "https://attacker.example/other.safetensors",
    }
    done = await run("install-model", "t-model", model)
    assert done["state"] == "done" and done["params"]["url"].startswith("file://")  # the catalog's URL
    models = await (await client.get(V2 + "/externalmodel/getlist")).json()
    assert models["models"][0]["installed"] == "True"
    await coded(
        await client.post(V2 + "/manager/queue/task", json=task("update-comfyui", "t-comfy", {})),
        501,
        "not_implemented",
    )
    # every task is in the session history, in 4.x terms
    history = (await (await client.get(V2 + "/manager/queue/history?client_id=c1")).json())["history"]
    assert [h["kind"] for h in history.values()] == [
        "install",
        "disable",
        "enable",
        "update",
        "fix",
        "uninstall",
        "install-model",
    ]
    assert all(
        h["status"] == {"status_str": "success", "completed": True, "messages": []} and h["result"] == "success"
        for h in history.values()
    )
    # the legacy install_model route queues the same operation
    resp = await client.post(V2 + "/manager/queue/install_model", json={**model, "client_id": "c1", "ui_id": "m2"})
    assert resp.status == 200 and (await resp.json())["data"]["task"]["kind"] == "install_model"


async def test_refusals_are_403_with_the_hint_and_queue_nothing(aiohttp_client, api_app):
    app, api, _root = api_app(default="security_level = strong")
    client = await aiohttp_client(app)
    for kind, params in (
        ("install", INSTALL),
        ("disable", {"node_name": "demo-mask-utils"}),
        ("uninstall", {"node_name": "demo-mask-utils"}),
    ):
        body = await coded(
            await client.post(V2 + "/manager/queue/task", json=task(kind, f"r-{kind}", params)), 403, "security_denied"
        )  # 4.x: 200, then a "failed" history entry
        assert "security_level" in body["error"]["hint"]
    await coded(await client.post(V2 + "/manager/queue/update_all?client_id=c1&ui_id=ua"), 403, "security_denied")
    assert api.manager.queue.status()["total_count"] == 0
    assert await (await client.get(V2 + "/manager/queue/history")).json() == {"history": {}}


async def test_unlisted_git_source_needs_its_flag(aiohttp_client, api_app, tmp_path):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    source = (tmp_path / "demo" / "sources" / "demo-mask-utils").as_uri() + "-copy"
    item = task(
        "install",
        "g1",
        {
            "id": "someone/mask-copy",
            "selected_version": "unknown",
            "repository": source,
            "version": "unknown",
            "mode": "cache",
            "channel": "default",
        },
    )
    body = await coded(await client.post(V2 + "/manager/queue/task", json=item), 403, "security_denied")
    assert "allow_git_url_install" in body["error"]["hint"]
    # the catalog's own file:// URL is a listed source: allowed at the default level
    listed = (tmp_path / "demo" / "sources" / "demo-prompt-kit").as_uri()
    item = task(
        "install",
        "g2",
        {
            "id": "studio/demo-prompt-kit",
            "selected_version": "unknown",
            "repository": listed,
            "version": "unknown",
            "mode": "cache",
            "channel": "default",
        },
    )
    resp = await client.post(V2 + "/manager/queue/task", json=item)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["data"]["task"]["target"] == "demo-prompt-kit"


async def test_bad_items_are_400_naming_the_field(aiohttp_client, api_app):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    url = V2 + "/manager/queue/task"
    cases = [
        ({"kind": "install", "client_id": "c", "params": INSTALL}, "ui_id"),
        ({"kind": "install", "ui_id": "u", "params": INSTALL}, "client_id"),
        (task("update-all", "u", {}), "kind"),  # the OpenAPI example 4.x itself refuses
        (task("install", "u", []), "params"),  # type: ignore[arg-type]
        (task("disable", "u", {}), "params.node_name"),
        (task("enable", "u", {"node_name": "x"}), "params.cnr_id"),
        (task("install", "u", {"version": "1"}), "params.id"),
    ]
    for body, name in cases:
        err = await coded(await client.post(url, json=body), 400, "request_invalid")
        assert err["error"]["details"]["field"] == name, err
    await coded(
        await client.post(url, data=b"{not json", headers={"Content-Type": "application/json"}), 400, "request_invalid"
    )  # 4.x: 500 "Internal server error"
    assert api.manager.queue.status()["total_count"] == 0


async def test_worker_goes_on_after_a_failed_task(aiohttp_client, api_app):
    """4.x's worker exits on the first task that raises; ours records the failure and runs the rest."""
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    for item in (task("uninstall", "f1", {"node_name": "demo-video-helper"}), task("install", "f2", INSTALL)):
        assert (await client.post(V2 + "/manager/queue/task", json=item)).status == 200
    assert (await client.post(V2 + "/manager/queue/start")).status == 200
    await run_all(api)
    history = (await (await client.get(V2 + "/manager/queue/history")).json())["history"]
    assert history["f1"]["status"]["status_str"] == "error" and history["f1"]["result"]
    assert history["f1"]["status"]["messages"][0] == history["f1"]["result"]
    assert history["f2"]["status"]["status_str"] == "success"
    status = await (await client.get(V2 + "/manager/queue/status")).json()
    assert status["done_count"] == status["total_count"] == 2 and status["is_processing"] is False


async def test_update_all_and_the_legacy_batch(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    batch = {
        "install": [
            {"id": "demo-image-tools", "version": "nightly", "selected_version": "nightly", "ui_id": "b1"},
            {"id": "no-such-pack-anywhere", "version": "nightly", "ui_id": "b2", "selected_version": "nightly"},
        ],
        "disable": [{"version": "nightly", "ui_id": "b3"}],
        "update_comfyui": True,
    }
    resp = await client.post(V2 + "/manager/queue/batch", json=batch)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["started"] is True and [t["id"] for t in body["tasks"]] == ["b1", "b2"]
    assert body["failed"] == ["b3", "comfyui"] and body["errors"]["comfyui"]["code"] == "not_implemented"
    await run_all(api)
    assert api.manager.queue.get("b1").state.value == "done" and api.manager.queue.get("b2").state.value == "failed"
    resp = await client.post(V2 + "/manager/queue/update_all?client_id=c1&ui_id=ua&mode=cache")
    queued = (await resp.json())["data"]["task"]
    assert resp.status == 200 and queued["id"] == "ua" and queued["kind"] == "update_all"
    await coded(
        await client.post(V2 + "/manager/queue/update_all?client_id=c1&ui_id=ub&mode=sideways"), 400, "request_invalid"
    )
    await client.post(V2 + "/manager/queue/start")
    await run_all(api)
    item = (await (await client.get(V2 + "/manager/queue/history?ui_id=ua")).json())["history"]
    assert item["kind"] == "update" and item["params"] == {"mode": "cache", "ui_id": "ua"}
    assert item["status"]["status_str"] == "success"
    json.dumps(item)
