"""Mount our routes on ComfyUI's route table without ever breaking its start.

Two host facts shape this module (both proven in the real-host tier, tests/realhost/):

- ComfyUI's ``add_routes`` copies every ``RouteDef`` of its table under ``/api`` with
  ``table.route(method, "/api" + path)(handler, **route.kwargs)``; that decorator accepts no
  keyword, so a route carrying kwargs (``web.get`` adds ``name`` and ``allow_head``) raises a
  TypeError there and ComfyUI dies before it listens. We hand ComfyUI only kwargs-free copies,
  and each one is first put through the same copy on a scratch table.
- ComfyUI imports ``custom_nodes/*`` in directory order, so another manager (the classic
  ComfyUI-Manager) may register the same (method, path) after us, and aiohttp would answer
  with whichever came first, silently. We mount right before ``add_routes`` (glob/bootstrap.py),
  when every extension has registered its routes: a pair another extension owns stays its, and
  so does the rest of that family (a client of the other manager must never reach our queue
  through a path its manager lacks), except our own ``/offline-manager/`` family.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger("offline_manager")
OURS = "offline-manager"

# Route families by path prefix, in match order; what the log and the panel's status bar report.
FAMILIES: tuple[tuple[str, str], ...] = (
    ("offline-manager", "/offline-manager/"),
    ("v2", "/v2/"),
    ("classic", "/customnode/"),
    ("classic", "/manager/"),
    ("classic", "/snapshot/"),
    ("classic", "/externalmodel/"),
)


def family_of(path: str) -> str | None:
    for family, prefix in FAMILIES:
        if path.startswith(prefix):
            return family
    return None


@dataclass
class MountReport:
    """What happened to our routes: mounted, left to another owner, refused as unsafe."""

    mounted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    yielded: list[str] = field(default_factory=list)  # free pairs of a family another extension owns
    refused: list[str] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)  # family -> owner (or "a, b" when split)
    frontend: str = ""  # who serves the frontend's manager UI, if asked
    seconds: float = 0.0  # our share of ComfyUI's start
    cpu_seconds: float = 0.0  # the CPU time of it (this thread's), which a loaded machine stretches less


def _label(route: web.RouteDef) -> str:
    return f"{route.method.upper()} {route.path}"


def host_safe(route: web.RouteDef) -> web.RouteDef:
    """A copy of ``route`` that survives ComfyUI's ``/api`` copying: no kwargs at all."""
    return web.RouteDef(route.method.upper(), route.path, route.handler, {})


def survives_api_copy(route: web.RouteDef) -> bool:
    """Run the copy ComfyUI's ``add_routes`` does, on a scratch table."""
    try:
        web.RouteTableDef().route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
    except Exception:  # any failure here would have been ComfyUI's failure at start
        return False
    return True


def taken_routes(table: web.RouteTableDef) -> set[tuple[str, str]]:
    """(METHOD, path) pairs already registered in ``table``."""
    return {(item.method.upper(), item.path) for item in table if isinstance(item, web.RouteDef)}


def owner_name(handler: Any) -> str:
    """Who registered ``handler``: a custom_nodes folder, an installed package, or us."""
    func = inspect.unwrap(handler.func if isinstance(handler, functools.partial) else handler)
    try:
        source = inspect.getsourcefile(func) or ""
    except TypeError:
        source = ""
    module = getattr(func, "__module__", "") or ""
    parts = source.replace("\\", "/").split("/")
    if "custom_nodes" in parts:
        folder = parts[parts.index("custom_nodes") + 1] if parts.index("custom_nodes") + 1 < len(parts) else ""
        return f"custom_nodes/{folder}"
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1] + " (installed package)"
    return module or "unknown"


def mount(table: web.RouteTableDef, routes: Iterable[web.RouteDef]) -> MountReport:
    """Add each free, host-safe route to ``table``."""
    report = MountReport()
    taken = taken_routes(table)
    foreign = foreign_families(table)
    for route in routes:
        safe = host_safe(route)
        key = (safe.method, safe.path)
        if not survives_api_copy(safe):
            report.refused.append(_label(safe))
            continue
        if key in taken:
            report.skipped.append(_label(safe))
            continue
        if family_of(safe.path) in foreign:
            report.yielded.append(_label(safe))
            continue
        table._items.append(safe)  # RouteTableDef has no public "add a RouteDef" method
        taken.add(key)
        report.mounted.append(_label(safe))
    if report.refused:
        log.error(
            "[offline-manager] %d route(s) would break ComfyUI's /api copying and were not mounted: %s",
            len(report.refused),
            ", ".join(report.refused[:8]),
        )
    return report


def foreign_families(table: web.RouteTableDef) -> set[str]:
    """Families (except our own) in which another extension registered a route."""
    return {
        family
        for item in table
        if isinstance(item, web.RouteDef) and not _is_ours(item.handler)
        for family in (family_of(item.path),)
        if family not in (None, OURS)
    }


def _is_ours(handler: Any) -> bool:
    return bool(getattr(handler, "__offline_manager__", False))


def family_owners(table: web.RouteTableDef) -> dict[str, str]:
    """family -> the owner(s) of its routes in ``table``."""
    seen: dict[str, set[str]] = {}
    for item in table:
        if isinstance(item, web.RouteDef):
            family = family_of(item.path)
            if family is not None:
                owner = OURS if _is_ours(item.handler) else owner_name(item.handler)
                seen.setdefault(family, set()).add(owner)
    return {family: ", ".join(sorted(owners)) for family, owners in seen.items()}


def mark_ours(routes: Iterable[web.RouteDef]) -> list[web.RouteDef]:
    """Tag each handler so ownership can be told apart from another extension's handler.

    The tag sits on the handler itself (our route table builds plain functions), so a request
    pays for no extra layer; an object that takes no attribute is wrapped once instead.
    """
    out = []
    for route in routes:
        handler = route.handler
        try:
            handler.__offline_manager__ = True  # type: ignore[union-attr]
        except (AttributeError, TypeError):

            async def ours(request: web.Request, _inner: Callable[..., Any] = handler) -> web.StreamResponse:
                return await _inner(request)

            ours.__offline_manager__ = True  # type: ignore[attr-defined]
            route = web.RouteDef(route.method, route.path, ours, dict(route.kwargs))
        out.append(route)
    return out


def before_add_routes(instance: Any, hook: Callable[[], None]) -> bool:
    """Run ``hook`` right before ComfyUI's ``add_routes`` mounts the table (once).

    The hook's failures are logged and swallowed; ComfyUI's own ``add_routes`` always runs.
    """
    original = getattr(instance, "add_routes", None)
    if not callable(original) or getattr(original, "__offline_manager__", False):
        return False

    @functools.wraps(original)
    def add_routes(*args: Any, **kwargs: Any) -> Any:
        try:
            hook()
        except Exception:  # our mount must never stop ComfyUI's start
            log.exception("[offline-manager] could not mount before ComfyUI's add_routes; ComfyUI continues")
        return original(*args, **kwargs)

    add_routes.__offline_manager__ = True  # type: ignore[attr-defined]
    instance.add_routes = add_routes
    return True
