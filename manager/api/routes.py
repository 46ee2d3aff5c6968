"""THE route table: every route once, from which aiohttp RouteDefs and the OpenAPI file are made.

A ``Route`` names its method, path, handler (``async def h(api, request)``), the security
operation checked before the handler runs (``gate=False``: the handler decides, because the
risk depends on the request), and what the OpenAPI document says about it. Our own routes
live under ``/offline-manager/`` (the health probe, then ``v1``) and always mount; the classic
paths mount where free.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from aiohttp import web

from .. import security as sec
from . import v2_routes as v2r
from .door import HttpDoor
from .envelope import Observer, guarded
from .origin import RequestGuard, changes_state
from .route_model import (
    CLASSIC_MODE,
    CLASSIC_ROW,
    HEALTH,
    MODE,
    PREFIX,
    TASK,
    TASK_PROPERTIES,
    TASK_RESULT,
    VALUE,
    ApiHandler,
    Param,
    Route,
    _c,
)
from .routes_classic import CLASSIC_ROUTES
from .routes_v1 import V1_ROUTES

__all__ = [
    "CLASSIC_MODE",
    "CLASSIC_ROUTES",
    "CLASSIC_ROW",
    "HEALTH",
    "MODE",
    "PREFIX",
    "ROUTES",
    "TASK",
    "TASK_PROPERTIES",
    "TASK_RESULT",
    "V1_ROUTES",
    "VALUE",
    "ApiHandler",
    "Param",
    "Route",
    "audited",
    "route_defs",
    "with_api_mirror",
]

ROUTES: tuple[Route, ...] = (
    # --- our own prefix, always mounted; the panel uses only these (routes_v1.py) ------------------
    *V1_ROUTES,
    # --- classic ComfyUI-Manager paths (routes_classic.py), mounted where no other extension owns them
    *CLASSIC_ROUTES,
    # --- the ComfyUI-Manager 4.x family under /v2 (v2_routes.py), mounted where free like classic --
    *v2r.v2_routes(_c, Param),
)


def _gate(api: HttpDoor, operation: str) -> Callable[[web.Request], None]:
    def before(_request: web.Request) -> None:
        api.require(operation)

    return before


def audited(route: Route) -> bool:
    """Routes that may change state: every one whose operation is not a read (POSTs, and the GETs
    the classic UI uses as writes); each such request is recorded in the audit log."""
    return route.operation != sec.READ


def _changes(route: Route, request: web.Request) -> bool:
    return changes_state(request.method, route.operation, sec.READ, setter=route.setter, request=request)


def _screen(guard: RequestGuard, route: Route) -> Callable[[web.Request], None]:
    """The door's request guard for one route: Host always, cross-site checks when it writes."""

    def screen(request: web.Request) -> None:
        guard.check(request, changes=_changes(route, request))

    return screen


def _observer(api: HttpDoor, route: Route) -> Observer:
    """The audit hook of one route: opens the request's note, writes its line at the end."""

    def observe(request: web.Request) -> Callable[[int, str], None]:
        if not _changes(route, request):
            return lambda _status, _code: None  # a plain read of a route that can also write
        started = time.perf_counter()
        api.begin_request(request.remote, request.headers.get("User-Agent"))

        def finish(status: int, code: str) -> None:
            note = api.end_request()
            if not note.get("targets") and request.match_info:
                note["targets"] = [str(v) for v in request.match_info.values()]
            api.audit_request(
                method=request.method,
                route=route.path,
                operation=route.operation,
                status=status,
                code=code,
                seconds=time.perf_counter() - started,
                remote=request.remote,
                user_agent=request.headers.get("User-Agent"),
                note=note,
            )

        return finish

    return observe


def route_defs(api: HttpDoor, routes: tuple[Route, ...] = ROUTES, *, legacy: bool = True) -> list[web.RouteDef]:
    """aiohttp RouteDefs of ``routes`` bound to ``api`` (bare paths; hosts add the ``/api`` mirror)."""
    out: list[web.RouteDef] = []
    guard = RequestGuard(api.listen, lambda: api.manager.config["allowed_hosts"])
    for r in routes:
        if r.legacy and not legacy:
            continue
        before = _gate(api, r.operation) if r.gate and r.operation != sec.READ else None
        handler = guarded(
            functools.partial(r.handler, api),
            label=r.name,
            before=before,
            observe=_observer(api, r) if audited(r) else None,
            screen=_screen(guard, r),
        )
        out.append(web.route(r.method, r.path, handler))
    return out


def with_api_mirror(defs: list[web.RouteDef]) -> list[web.RouteDef]:
    """Each route twice, under ``/api`` first and bare, the way ComfyUI mounts extension routes."""
    return [web.route(d.method, "/api" + d.path, d.handler) for d in defs] + list(defs)
