"""One owner per route family beside another manager; the frontend's manager flags (fast tests).

The same behaviour is proven in the real ComfyUI by tests/realhost/test_coexist.py and
test_frontend_manager.py; these pin the rules on small tables.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
PKG = "om_coexist_under_test"


def _load_package() -> Any:
    """Our folder as a package (``glob`` would be the stdlib's otherwise); outside ComfyUI its
    ``__init__`` only finds no server and returns."""
    spec = importlib.util.spec_from_file_location(PKG, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PKG] = module
    spec.loader.exec_module(module)
    return module


_load_package()
fm = importlib.import_module(f"{PKG}.glob.frontend_manager")
mount_mod = importlib.import_module(f"{PKG}.glob.server")


@pytest.fixture(scope="module", autouse=True)
def _forget_package() -> Iterator[None]:
    yield
    for name in [n for n in sys.modules if n == PKG or n.startswith(PKG + ".")]:
        del sys.modules[name]


async def _h(_request: web.Request) -> web.Response:
    return web.Response(text="ours")


async def _theirs(_request: web.Request) -> web.Response:
    return web.Response(text="theirs")


def test_a_family_another_extension_answers_is_left_to_it_whole() -> None:
    table = web.RouteTableDef()
    table.get("/manager/version")(_theirs)
    ours = [
        web.route("GET", "/manager/version", _h),
        web.route("GET", "/manager/queue/start", _h),
        web.route("GET", "/v2/manager/version", _h),
        web.route("GET", "/offline-manager/v1/status", _h),
    ]
    report = mount_mod.mount(table, mount_mod.mark_ours(ours))
    assert report.skipped == ["GET /manager/version"]
    assert report.yielded == ["GET /manager/queue/start"]  # free pair, but the family is theirs
    assert report.mounted == ["GET /v2/manager/version", "GET /offline-manager/v1/status"]
    owners = mount_mod.family_owners(table)
    assert owners["v2"] == owners["offline-manager"] == "offline-manager"
    assert "offline-manager" not in owners["classic"]  # one owner: theirs


def test_our_own_family_always_mounts_what_is_free() -> None:
    table = web.RouteTableDef()
    table.get("/offline-manager/x")(_theirs)
    report = mount_mod.mount(
        table,
        mount_mod.mark_ours([web.route("GET", "/offline-manager/x", _h), web.route("GET", "/offline-manager/y", _h)]),
    )
    assert report.skipped == ["GET /offline-manager/x"] and report.mounted == ["GET /offline-manager/y"]


def test_mounting_twice_does_not_yield_to_ourselves() -> None:
    table = web.RouteTableDef()
    mount_mod.mount(table, mount_mod.mark_ours([web.route("GET", "/manager/a", _h)]))
    again = mount_mod.mount(table, mount_mod.mark_ours([web.route("GET", "/manager/b", _h)]))
    assert again.mounted == ["GET /manager/b"] and again.yielded == []


def _flags(flags: object) -> types.SimpleNamespace:
    return types.SimpleNamespace(SERVER_FEATURE_FLAGS=flags)


def test_the_csrf_flag_is_set_only_in_the_shape_comfyui_080_has() -> None:
    known = _flags({"supports_preview_metadata": True, "extension": {"manager": {"supports_v4": True}}})
    assert fm.set_csrf_flag(known)
    assert known.SERVER_FEATURE_FLAGS["extension"]["manager"] == {"supports_v4": True, "supports_csrf_post": True}
    older = _flags({"supports_preview_metadata": True})  # ComfyUI 0.3.64
    assert not fm.set_csrf_flag(older) and older.SERVER_FEATURE_FLAGS == {"supports_preview_metadata": True}
    for odd in (None, _flags(None), _flags({"extension": []}), _flags({"extension": {"manager": {"supports_v4": 1}}})):
        assert not fm.set_csrf_flag(odd)


def test_a_value_someone_else_set_is_kept() -> None:
    flags = _flags({"extension": {"manager": {"supports_v4": True, "supports_csrf_post": False}}})
    assert not fm.set_csrf_flag(flags)
    assert flags.SERVER_FEATURE_FLAGS["extension"]["manager"]["supports_csrf_post"] is False


def test_only_the_new_manager_ui_asks_for_our_routes() -> None:
    assert fm.wanted(["main.py", "--enable-manager"])
    assert not fm.wanted(["main.py"])
    assert not fm.wanted(["main.py", "--enable-manager", "--enable-manager-legacy-ui"])
    assert not fm.wanted(["main.py", "--enable-manager", "--disable-manager-ui"])


def test_the_get_variants_reuse_the_post_handlers_and_yield_to_the_table() -> None:
    ROUTES = importlib.import_module(f"{PKG}.manager.api").ROUTES
    posts = {r.path: r for r in ROUTES if r.method == "POST"}
    rows = fm.get_variant_routes(set())
    assert {r.path for r in rows} == {"/v2/manager/queue/start", "/v2/manager/queue/update_all", "/v2/manager/reboot"}
    for row in rows:
        assert row.method == "GET"
        assert (row.handler, row.operation) == (posts[row.path].handler, posts[row.path].operation)
    assert fm.get_variant_routes({("GET", "/v2/manager/reboot")}) == tuple(
        r for r in rows if r.path != "/v2/manager/reboot"
    )
