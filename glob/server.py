"""Mount our routes on ComfyUI's route table without ever breaking its start.

ComfyUI mounts one shared ``RouteTableDef``; a duplicate (method, path) from another
extension (the classic manager, or the packaged one under --enable-manager) would shadow
or abort. We mount only the free pairs and log who owns the rest.
"""

from __future__ import annotations

import logging
from typing import Iterable

from aiohttp import web

log = logging.getLogger("offline_manager")


def taken_routes(table: web.RouteTableDef) -> set[tuple[str, str]]:
    """(METHOD, path) pairs already registered in ``table``."""
    taken: set[tuple[str, str]] = set()
    for item in table:
        if isinstance(item, web.RouteDef):
            taken.add((item.method.upper(), item.path))
    return taken


def mount(table: web.RouteTableDef, routes: Iterable[web.RouteDef]) -> tuple[list[str], list[str]]:
    """Add each free route to ``table``; returns (mounted, skipped) as 'METHOD path' strings."""
    taken = taken_routes(table)
    mounted: list[str] = []
    skipped: list[str] = []
    for route in routes:
        key = (route.method.upper(), route.path)
        label = f"{key[0]} {key[1]}"
        if key in taken:
            skipped.append(label)
            continue
        table._items.append(route)  # RouteTableDef has no public "add a RouteDef" method
        taken.add(key)
        mounted.append(label)
    if skipped:
        log.info("[offline-manager] %d route(s) already owned by another extension, left to it: %s",
                 len(skipped), ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else ""))
    return mounted, skipped
