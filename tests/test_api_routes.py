"""Every route through a real aiohttp server on 127.0.0.1, offline, bare and under /api.

Also: the envelope shape of every answer and error, the OpenAPI file and the JS client agree
with the route table, and nothing reaches beyond loopback.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from manager.api.openapi import build_document, openapi_path, render
from manager.api.routes import PREFIX, ROUTES
from manager.api.standalone import build_app
from manager.errors import error_codes
from support.api_tree import make_api

REPO = Path(__file__).resolve().parents[1]
PATH_VALUES = {"id": "demo-image-tools", "name": "DemoResize", "node_name": "demo-image-tools"}

# A valid-looking body per POST route: the route must answer a coded result, never a 500.
POST_BODIES = {
    "/workflow/missing": {"nodes": [{"id": 1, "type": "DemoResize"}, {"id": 2, "type": "KSampler"}]},
    "/queue": {"kind": "disable", "target": "demo-image-tools", "start": False},
    "/config": {"changes": {"db_mode": "local"}},
    "/network": {"mode": "offline"},
    "/channels": {"name": "demo"},
    "/customnode/install/git_url": {"url": "https://example.invalid/x.git"},
    "/customnode/install/pip": {"packages": "numpy"},
    "/manager/queue/install": {
        "id": "demo-image-tools",
        "version": "nightly",
        "selected_version": "nightly",
        "ui_id": "r-install",
    },
    "/manager/queue/reinstall": {"id": "demo-prompt-kit", "version": "nightly", "selected_version": "nightly"},
    "/manager/queue/uninstall": {"id": "demo-video-helper", "version": "nightly"},
    "/manager/queue/update": {"id": "demo-upscale-pack", "version": "nightly"},
    "/manager/queue/fix": {"id": "demo-mask-utils", "version": "nightly"},
    "/manager/queue/disable": {"id": "demo-mask-utils-x", "version": "nightly"},
    "/manager/queue/install_model": {"filename": "demo-tiny.safetensors", "save_path": "default"},
    "/manager/channel_url_list": {"value": "demo"},
    "/manager/db_mode": {"value": "cache"},
    "/manager/policy/update": {"value": "stable"},
    "/manager/policy/component": {"value": "workflow"},
    "/snapshot/restore": {"target": "x"},
    "/snapshot/remove": {"target": "x"},
}


def _fill(path: str) -> str:
    if path.startswith(PREFIX + "/tasks/"):
        return path.replace("{id}", "t-known")  # a task the test queued first
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "x"), path)


def _required_query(route) -> str:
    """Required query parameters, each with its first allowed value (4.x getmappings needs mode)."""
    pairs = [f"{p.name}={p.enum[0] if p.enum else 'x'}" for p in route.params if p.where == "query" and p.required]
    return "?" + "&".join(pairs) if pairs else ""


def _check_error(body: dict, status: int) -> None:
    assert body["ok"] is False and body["version"] == 1, body
    err = body["error"]
    assert set(err) >= {"code", "message", "hint"} and err["message"], body
    assert err["code"] in error_codes(), err["code"]
    assert error_codes()[err["code"]].http_status == status or status in (401, 405), (err, status)


async def _answer(client, method: str, path: str, body=None):
    resp = await client.request(method, path, json=body) if body is not None else await client.request(method, path)
    raw = await resp.read()
    return resp, raw


@pytest.mark.parametrize("mirror", ["", "/api"])
async def test_every_get_route_answers_offline(aiohttp_client, api_app, socket_audit_log, mirror):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    queued = await client.post(
        PREFIX + "/queue", json={"kind": "disable", "target": "demo-image-tools", "task_id": "t-known", "start": False}
    )
    assert queued.status == 202
    saved = await client.post(PREFIX + "/snapshots", json={"name": PATH_VALUES["name"]})  # for /snapshots/{name}
    assert saved.status == 200, await saved.text()
    for route in ROUTES:
        if route.method != "GET":
            continue
        resp, raw = await _answer(client, "GET", mirror + _fill(route.path) + _required_query(route))
        assert resp.status != 500, (route.path, raw[:300])
        if resp.status >= 400:
            _check_error(json.loads(raw), resp.status)
            expected = (
                ("cache_missing",)
                + (("not_found",) if "disabled_versions" in route.path else ())
                + (("route_gone",) if 410 in route.statuses else ())
                + (("not_implemented",) if 501 in route.statuses else ())
            )
            assert json.loads(raw)["error"]["code"] in expected, (route.path, raw)
            continue
        if resp.status == 204:
            continue
        if route.response == "envelope":
            body = json.loads(raw)
            assert body["ok"] is True and body["version"] == 1 and "data" in body, route.path
        elif route.response == "json":
            json.loads(raw)
        else:
            assert resp.content_type.startswith("text/"), route.path
    hosts = {addr[0] for addr in socket_audit_log.inet_connects() if isinstance(addr, tuple)}
    assert hosts <= {"127.0.0.1", "::1"}, hosts


async def test_every_post_route_answers_coded(aiohttp_client, api_app):
    app, api, _root = api_app(restart=lambda: None)
    client = await aiohttp_client(app)
    for route in ROUTES:
        if route.method != "POST":
            continue
        short = route.path[len(PREFIX) :] if route.path.startswith(PREFIX) else route.path
        path = _fill(route.path)
        resp, raw = await _answer(client, "POST", path, POST_BODIES.get(short))
        assert resp.status != 500, (route.path, raw[:300])
        if resp.status >= 400:
            _check_error(json.loads(raw), resp.status)
        elif route.response == "envelope":
            assert json.loads(raw)["ok"] is True, route.path
    api.manager.queue.reset()


async def test_unknown_route_and_method_answer_the_envelope(aiohttp_client, api_app):
    app, _api, _root = api_app()
    client = await aiohttp_client(app)
    resp, raw = await _answer(client, "GET", PREFIX + "/no-such-thing")
    assert resp.status == 404
    _check_error(json.loads(raw), 404)
    resp, raw = await _answer(client, "DELETE", PREFIX + "/packs")
    assert resp.status == 405
    _check_error(json.loads(raw), 405)


async def test_errors_are_coded_for_bad_input(aiohttp_client, api_app):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    cases = [
        ("GET", "/customnode/getlist?mode=sideways", None, 400, "request_invalid"),
        ("GET", PREFIX + "/packs/no-such-pack", None, 404, "not_found"),
        ("GET", PREFIX + "/tasks/nope", None, 404, "not_found"),
        ("POST", PREFIX + "/queue", {"kind": "explode", "target": "x"}, 400, "request_invalid"),
        ("POST", PREFIX + "/queue", {"target": "x"}, 400, "request_invalid"),
        ("POST", PREFIX + "/queue", {"tasks": []}, 400, "request_invalid"),
        (
            "POST",
            "/manager/queue/install",
            {"id": "demo-image-tools", "version": "1.0", "selected_version": "unknown"},
            400,
            "request_invalid",
        ),
        ("POST", "/manager/queue/install_model", {"filename": "nowhere.ckpt"}, 404, "not_found"),
        ("POST", PREFIX + "/config", {"changes": {"no_such_key": 1}}, 400, "config_unknown_key"),
        ("POST", "/manager/db_mode", {"value": "sideways"}, 400, "config_invalid"),
        ("POST", PREFIX + "/channels", {"name": "nope"}, 400, "channel_invalid"),
        ("POST", PREFIX + "/reboot", None, 501, "not_implemented"),
    ]
    for method, path, body, status, code in cases:
        resp, raw = await _answer(client, method, path, body)
        data = json.loads(raw)
        assert resp.status == status, (path, raw)
        _check_error(data, status)
        assert data["error"]["code"] == code, (path, data)
    assert api.manager.queue.status()["total_count"] == 0


async def test_getlist_shape_etag_and_installed_state(aiohttp_client, api_app):
    app, api, _root = api_app()
    client = await aiohttp_client(app)
    resp = await client.get("/customnode/getlist?mode=cache&skip_update=true")
    assert resp.status == 200
    data = await resp.json()
    assert data["channel"] == "demo" and len(data["node_packs"]) == 5
    row = data["node_packs"]["demo-image-tools"]
    for key in (
        "author",
        "title",
        "id",
        "reference",
        "files",
        "install_type",
        "description",
        "state",
        "version",
        "update-state",
        "stars",
        "trust",
        "is_favorite",
    ):
        assert key in row, key
    assert row["state"] == "not-installed"
    etag = resp.headers["ETag"]
    again = await client.get("/customnode/getlist?mode=cache", headers={"If-None-Match": etag})
    assert again.status == 304
    builds = api.listing.builds
    for _ in range(5):
        assert (await client.get("/customnode/getlist?mode=cache")).status == 200
    assert api.listing.builds == builds  # warm: served from the encoded bytes
    # install through the queue: the next list shows it enabled (the cache follows the tree)
    api.manager.queue.enqueue(
        __import__("manager.tasks", fromlist=["TaskSpec"]).TaskSpec(
            "install", "demo-image-tools", {"version": "nightly"}
        ),
        task_id="t1",
    )
    assert await _wait_idle(api)
    data = await (await client.get("/customnode/getlist?mode=cache")).json()
    assert data["node_packs"]["demo-image-tools"]["state"] == "enabled"
    v1 = await (await client.get(PREFIX + "/packs")).json()
    rows = {p["id"]: p for p in v1["data"]["packs"]}
    assert rows["demo-image-tools"]["installed"]["enabled"] is True and rows["demo-prompt-kit"]["installed"] is None
    installed = await (await client.get("/customnode/installed")).json()
    assert installed["demo-image-tools"]["enabled"] is True and len(installed["demo-image-tools"]["ver"]) == 40


async def _wait_idle(api, timeout: float = 30.0) -> bool:
    import asyncio

    return await asyncio.to_thread(api.manager.queue.run_until_idle, timeout)


async def test_classic_read_shapes(aiohttp_client, api_app):
    app, _api, _root = api_app()
    client = await aiohttp_client(app)
    maps = await (await client.get("/customnode/getmappings?mode=nickname")).json()
    assert any(names == ["DemoResize", "DemoCrop"] for names, _meta in maps.values())
    models = await (await client.get("/externalmodel/getlist?mode=cache")).json()
    assert models["models"][0]["installed"] == "False" and models["models"][0]["filename"] == "demo-tiny.safetensors"
    chans = await (await client.get("/manager/channel_url_list")).json()
    assert chans["selected"] == "demo" and chans["list"][0].startswith("demo::file://")
    assert await (await client.get("/manager/db_mode")).text() == "cache"
    assert (await (await client.get("/manager/version")).text()).startswith("V")
    status = await (await client.get("/manager/queue/status")).json()
    assert set(status) >= {"total_count", "done_count", "in_progress_count", "is_processing"}
    assert await (await client.get("/manager/is_legacy_manager_ui")).json() == {"is_legacy_manager_ui": False}
    missing = await (
        await client.post(
            PREFIX + "/workflow/missing", json={"nodes": [{"type": "DemoResize"}, {"type": "NoSuchNode"}]}
        )
    ).json()
    states = {r["type"]: r["state"] for r in missing["data"]["node_types"]}
    assert states == {"DemoResize": "missing", "NoSuchNode": "unknown"}
    assert missing["data"]["install"] == [{"id": "demo-image-tools", "title": "Demo Image Tools"}]


def test_openapi_file_is_current():
    assert (REPO / "docs" / "openapi.json").read_text(encoding="utf-8") == render(), (
        "docs/openapi.json is stale: run `python -m manager.api.openapi > docs/openapi.json`"
    )


def test_openapi_matches_route_table():
    doc = build_document()
    pairs = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert pairs == {(r.method, openapi_path(r.path)) for r in ROUTES}
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) == len(ROUTES)
    assert len({(r.method, r.path) for r in ROUTES}) == len(ROUTES)


_JS_METHOD = re.compile(r"^  (\w+)\(([^)]*)\)\s*\{\s*return this\._call\(\"(\w+)\", `([^`]*)`", re.M | re.S)


def test_js_client_agrees_with_routes_and_openapi():
    text = (REPO / "js" / "api-client.js").read_text(encoding="utf-8")
    found = {}
    for name, _args, method, path in _JS_METHOD.findall(text):
        found[name] = (method, PREFIX + re.sub(r"\$\{enc\((\w+)\)\}", r"{\1}", path))
    v1 = {r.name: (r.method, openapi_path(r.path)) for r in ROUTES if r.path.startswith(PREFIX)}
    assert found == v1
    doc = build_document()
    for name, (method, path) in found.items():
        assert doc["paths"][path][method.lower()]["operationId"] == name
    assert f'export const PREFIX = "{PREFIX}";' in text


def test_docs_list_every_route():
    doc = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [f"{r.method} {r.path}" for r in ROUTES if f"| {r.method} | `{r.path}` |" not in doc]
    assert missing == [], "routes missing from docs/api.md: " + ", ".join(missing)


def test_forwarder_event_names_match_the_queue():
    from manager import events as core
    from manager.api import event_forwarder as fwd

    assert (fwd.QUEUED, fwd.DONE, fwd.FAILED, fwd.CANCELLED, fwd.QUEUE_IDLE) == (
        core.QUEUED,
        core.DONE,
        core.FAILED,
        core.CANCELLED,
        core.QUEUE_IDLE,
    )


async def test_getlist_over_the_real_channel_db(aiohttp_client, comfy_tree, local_channel):
    manager_dir = comfy_tree / "user" / "__manager"
    manager_dir.mkdir(parents=True, exist_ok=True)
    (manager_dir / "config.ini").write_text(
        f"[default]\nnetwork_mode = offline\nchannel_url = {local_channel.as_uri()}\n", encoding="utf-8"
    )
    (manager_dir / "channels.list").write_text(f"default::{local_channel.as_uri()}\n", encoding="utf-8")
    api = make_api(comfy_tree)
    try:
        client = await aiohttp_client(build_app(api))
        first = await client.get("/customnode/getlist?mode=cache&skip_update=true")
        body = await first.read()
        data = json.loads(body)
        assert data["channel"] == "default" and len(data["node_packs"]) > 5800
        assert all(p["state"] == "not-installed" for p in data["node_packs"].values())
        builds = api.listing.builds
        again = await client.get("/api/customnode/getlist?mode=cache&skip_update=true")
        assert await again.read() == body and api.listing.builds == builds
        v1 = await (await client.get(PREFIX + "/packs")).json()
        assert len(v1["data"]["packs"]) == len(data["node_packs"])
        # compressed once per version for clients that accept gzip; the same JSON inside
        raw = await aiohttp_client(build_app(api), auto_decompress=False)
        packed = await raw.get("/customnode/getlist?mode=cache&skip_update=true", headers={"Accept-Encoding": "gzip"})
        assert packed.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in packed.headers["Vary"]
        wire = await packed.read()
        assert len(wire) * 4 < len(body) and gzip.decompress(wire) == body
        plain = await raw.get(
            "/customnode/getlist?mode=cache&skip_update=true", headers={"Accept-Encoding": "identity"}
        )
        assert "Content-Encoding" not in plain.headers and await plain.read() == body
    finally:
        api.manager.queue.stop(timeout=10)
