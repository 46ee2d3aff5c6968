"""glob/server.py: every route we hand to ComfyUI survives its /api copying; late owners win.

The copy below is ComfyUI's own (server.py add_routes, 0.8.0 and 0.3.64):
``api_routes.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)``.
The real-host tier (tests/realhost/) proves the same against the real ComfyUI.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]


def _load_mount_module():
    spec = importlib.util.spec_from_file_location("om_glob_server_under_test", REPO / "glob" / "server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


mount_mod = _load_mount_module()


def comfyui_api_copy(table: web.RouteTableDef) -> web.RouteTableDef:
    api_routes = web.RouteTableDef()
    for route in table:
        if isinstance(route, web.RouteDef):
            api_routes.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
    return api_routes


async def _h(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def test_a_web_get_route_breaks_comfyuis_copy_as_given():
    table = web.RouteTableDef()
    table._items.append(web.get("/x", _h))
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        comfyui_api_copy(table)
    assert not mount_mod.survives_api_copy(web.get("/x", _h))


def test_mount_hands_comfyui_only_routes_that_survive_its_copy():
    table = web.RouteTableDef()
    routes = mount_mod.mark_ours(
        [web.get("/offline-manager/a", _h), web.post("/customnode/b", _h), web.route("GET", "/v2/c", _h)]
    )
    report = mount_mod.mount(table, routes)
    assert report.mounted == ["GET /offline-manager/a", "POST /customnode/b", "GET /v2/c"]
    assert all(not r.kwargs for r in table)
    mirrored = comfyui_api_copy(table)
    assert [(r.method, r.path) for r in mirrored] == [
        ("GET", "/api/offline-manager/a"),
        ("POST", "/api/customnode/b"),
        ("GET", "/api/v2/c"),
    ]


async def test_mounted_routes_answer_under_both_paths(aiohttp_client):
    table = web.RouteTableDef()
    mount_mod.mount(table, mount_mod.mark_ours([web.get("/offline-manager/a", _h)]))
    app = web.Application()
    app.add_routes(comfyui_api_copy(table))
    app.add_routes(table)
    client = await aiohttp_client(app)
    for path in ("/offline-manager/a", "/api/offline-manager/a"):
        resp = await client.get(path)
        assert resp.status == 200 and await resp.text() == "ok"


def test_a_pair_another_extension_registered_stays_its_and_owners_are_named():
    async def classic(_request: web.Request) -> web.Response:
        return web.Response(text="classic")

    table = web.RouteTableDef()
    table.get("/customnode/installed")(classic)
    report = mount_mod.mount(
        table,
        mount_mod.mark_ours(
            [web.route("GET", "/customnode/installed", _h), web.route("GET", "/offline-manager/v1/status", _h)]
        ),
    )
    assert [r.handler for r in table if r.path == "/customnode/installed"] == [classic]
    assert report.skipped == ["GET /customnode/installed"]
    assert report.mounted == ["GET /offline-manager/v1/status"]
    owners = mount_mod.family_owners(table)
    assert owners["offline-manager"] == "offline-manager"
    assert "test_glob_mount" in owners["classic"]


def test_the_mount_hook_runs_before_add_routes_and_never_stops_it():
    calls: list[str] = []

    class Server:
        def add_routes(self) -> None:
            calls.append("add_routes")

    server = Server()

    def hook() -> None:
        calls.append("hook")
        raise RuntimeError("injected")

    assert mount_mod.before_add_routes(server, hook)
    assert not mount_mod.before_add_routes(server, hook)  # once only
    server.add_routes()
    assert calls == ["hook", "add_routes"]
