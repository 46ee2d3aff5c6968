"""Build the Manager inside a running ComfyUI and mount its routes. Idempotent, never raises.

Nothing here touches the network or does heavy work: ComfyUI's start must stay fast.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from aiohttp import web

from ..manager import __version__
from . import server as route_mount
from .comfy_host import ComfyHost

log = logging.getLogger("offline_manager")
_MARK = "_offline_manager_started"


def _comfy_modules() -> tuple[Any, Any] | None:
    """ComfyUI's ``server.PromptServer.instance`` and ``folder_paths``, or None outside ComfyUI."""
    server_mod = sys.modules.get("server")
    folder_paths = sys.modules.get("folder_paths")
    if server_mod is None or folder_paths is None:
        return None
    instance = getattr(getattr(server_mod, "PromptServer", None), "instance", None)
    if instance is None:
        return None
    return instance, folder_paths


def base_routes(host: ComfyHost) -> list[web.RouteDef]:
    """Routes that exist from the first line of glue; the full API mounts through the same path."""

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "data": {"version": __version__,
                                                        "comfyui_root": str(host.layout.comfyui_root)}})

    return [web.get("/offline-manager/health", health)]


def start(package_name: str, package_file: str) -> bool:
    """Mount our routes on ComfyUI's server; returns True when mounted (or already mounted)."""
    t0 = time.perf_counter()
    try:
        found = _comfy_modules()
        if found is None:
            log.debug("[offline-manager] no ComfyUI server in this process; routes not mounted")
            return False
        instance, folder_paths = found
        if getattr(instance, _MARK, False):
            return True
        host = ComfyHost(instance, folder_paths, version=_comfyui_version())
        mounted, _skipped = route_mount.mount(instance.routes, base_routes(host))
        setattr(instance, _MARK, True)
        log.info("[offline-manager] %s ready: %d route(s) in %.1f ms", __version__, len(mounted),
                 (time.perf_counter() - t0) * 1000)
        return True
    except Exception:  # ComfyUI goes on whatever happens here
        log.exception("[offline-manager] failed to start inside ComfyUI; ComfyUI continues without it")
        return False


def _comfyui_version() -> str | None:
    mod = sys.modules.get("comfyui_version")
    return getattr(mod, "__version__", None) if mod else None
