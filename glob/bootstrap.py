"""Build the Manager inside a running ComfyUI and mount its routes. Idempotent, never raises.

Nothing here touches the network or does heavy work: ComfyUI's start must stay fast. Our own
routes (``/offline-manager/...``) always mount; the classic ComfyUI-Manager paths mount only
where no other extension owns them (``server.mount``). The task queue is built, its events
forwarded through ``send_sync`` and its worker thread started by the first request that uses
it (so the operation modules are not imported during ComfyUI's start).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from aiohttp import web

from ..manager import __version__
from ..manager.api import Api, EventForwarder, register_runners, route_defs
from . import events as comfy_events
from . import server as route_mount
from .comfy_host import ComfyHost, restart_comfyui
from .import_failures import ImportFailureTracker

log = logging.getLogger("offline_manager")
_MARK = "_offline_manager_started"
DEFAULT_LISTEN = "127.0.0.1"


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


def listen_address() -> str:
    """ComfyUI's ``--listen`` value (its default is 127.0.0.1; a bare --listen is 0.0.0.0,::)."""
    cli_args = sys.modules.get("comfy.cli_args")
    value = getattr(getattr(cli_args, "args", None), "listen", None)
    return str(value) if value else DEFAULT_LISTEN


def base_routes(host: ComfyHost) -> list[web.RouteDef]:
    """Routes that exist from the first line of glue (a liveness probe)."""

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "version": 1,
                                  "data": {"version": __version__, "comfyui_root": str(host.layout.comfyui_root)}})

    return [web.route("GET", "/offline-manager/health", health)]


def start(package_name: str, package_file: str) -> bool:
    """Mount our routes on ComfyUI's server; returns True when mounted (or already mounted)."""
    t0 = time.perf_counter()
    try:
        found = _comfy_modules()
        if found is None:
            log.debug("[offline-manager] no ComfyUI server in this process; routes not mounted")
            return False
        instance, folder_paths = found
        if getattr(instance, _MARK, None):
            return True
        host = ComfyHost(instance, folder_paths, version=_comfyui_version())

        def build_manager() -> Any:
            # Built by the first request: config.ini, channels.list and the core modules are
            # read then, so ComfyUI's start pays for mounting routes only.
            from ..manager.context import Manager
            manager = Manager.create(host)
            register_runners(manager)
            return manager

        api = Api(build_manager, listen=listen_address(), restart=restart_comfyui, door="comfyui")
        tracker = import_failure_tracker(host, folder_paths, package_file)
        api.import_failure_source = tracker.collect
        report = route_mount.mount(instance.routes, route_mount.mark_ours(base_routes(host) + route_defs(api)))
        forwarder = EventForwarder(comfy_events.comfy_sink(instance))
        # The queue (and the operation modules behind it) is built by the first request that
        # needs it; then events start flowing to send_sync and the worker thread starts.
        api.on_queue(forwarder.attach)
        api.on_queue(lambda queue: queue.start())
        state = {"api": api, "forwarder": forwarder, "report": report, "import_failures": tracker}
        setattr(instance, _MARK, state)

        def ready() -> None:
            # Extensions imported after us may own some of the same paths: settle, then say so once.
            route_mount.settle_owners(instance.routes, report)
            api.route_owners = dict(report.owners)
            left = f", {len(report.skipped)} already owned by another extension ({', '.join(report.skipped[:4])}" \
                   f"{' ...' if len(report.skipped) > 4 else ''})" if report.skipped else ""
            owners = ", ".join(f"{family}={owner}" for family, owner in sorted(report.owners.items())) or "-"
            log.info("[offline-manager] %s ready: %d route(s) mounted%s; route owners: %s; %.1f ms of ComfyUI's start",
                     __version__, len(report.mounted), left, owners, report.seconds * 1000)

        report.seconds = time.perf_counter() - t0
        if not route_mount.before_add_routes(instance, ready):
            ready()
        return True
    except Exception:  # ComfyUI goes on whatever happens here
        here = os.path.dirname(os.path.abspath(package_file))
        log.exception("[offline-manager] failed to start inside ComfyUI; ComfyUI continues without it. The same "
                      "operations work from the shell meanwhile: python %s --comfyui %s serve",
                      os.path.join(here, "cm-cli.py"), os.path.dirname(os.path.dirname(here)))
        return False


def import_failure_tracker(host: ComfyHost, folder_paths: Any, package_file: str) -> ImportFailureTracker:
    """Listen for import failures of the packs ComfyUI imports after us; the report is read on
    first use (loading is over by then) and kept in the manager folder for the other doors."""

    def folders() -> list[str]:
        return list(folder_paths.get_folder_paths("custom_nodes"))

    def keep(report: Any) -> None:
        from ..manager.import_failures import save_report
        save_report(host.layout, report)

    tracker = ImportFailureTracker(folders, own_folder=os.path.dirname(os.path.abspath(package_file)),
                                   on_report=keep)
    tracker.install()
    return tracker


def _comfyui_version() -> str | None:
    mod = sys.modules.get("comfyui_version")
    return getattr(mod, "__version__", None) if mod else None
