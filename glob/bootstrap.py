"""Build the Manager inside a running ComfyUI and mount its routes. Idempotent, never raises.

ComfyUI's start must stay fast and must never break because of us. Importing our package only
records the moment and installs two light hooks (the import-failure tracker and a call made
right before ComfyUI's ``add_routes``); the route table, the API and their modules are imported
in that call, when every other extension has registered its routes, so owners are known:
our own routes (``/offline-manager/...``) always mount, the classic and ``/v2`` families only
where no other extension owns a route of them (``server.mount``). The task queue is built, its events
forwarded through ``send_sync`` and its worker thread started by the first request that uses
it. Nothing here touches the network.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from . import server as route_mount
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


def failure_hint(package_file: str) -> str:
    here = os.path.dirname(os.path.abspath(package_file))
    return (
        f"ComfyUI continues without it. The same operations work from the shell meanwhile: "
        f"python {os.path.join(here, 'cm-cli.py')} --comfyui {os.path.dirname(os.path.dirname(here))} serve"
    )


def start(package_name: str, package_file: str, imported_at: float | None = None, cpu_at: float | None = None) -> bool:
    """Prepare our routes for ComfyUI's server; True when they will be (or were) mounted."""
    t0 = imported_at if imported_at is not None else time.perf_counter()
    c0 = cpu_at if cpu_at is not None else time.thread_time()
    try:
        found = _comfy_modules()
        if found is None:
            log.debug("[offline-manager] no ComfyUI server in this process; routes not mounted")
            return False
        instance, folder_paths = found
        if getattr(instance, _MARK, None):
            return True
        state: dict[str, Any] = {}
        state["import_failures"] = import_failure_tracker(
            folder_paths, package_file, lambda report: _keep_report(state, report)
        )
        setattr(instance, _MARK, state)
        spent = time.perf_counter() - t0
        cpu_spent = time.thread_time() - c0

        def mount_now() -> None:
            t1 = time.perf_counter()
            c1 = time.thread_time()
            try:
                mount(instance, folder_paths, state)
            except Exception:  # ComfyUI goes on whatever happens here
                log.exception("[offline-manager] failed to mount its routes; %s", failure_hint(package_file))
                return
            report = state["report"]
            report.seconds = spent + (time.perf_counter() - t1)
            report.cpu_seconds = cpu_spent + (time.thread_time() - c1)
            log_ready(state["version"], report)

        if not route_mount.before_add_routes(instance, mount_now):
            mount_now()  # a host without add_routes on the instance: mount at once
        return True
    except Exception:  # ComfyUI goes on whatever happens here
        log.exception("[offline-manager] failed to start inside ComfyUI; %s", failure_hint(package_file))
        return False


def mount(instance: Any, folder_paths: Any, state: dict[str, Any]) -> None:
    """Build the API and put our free routes on ComfyUI's table (runs before add_routes)."""
    from ..manager import __version__
    from ..manager.api import EventForwarder, HttpDoor, route_defs
    from . import prompt_server_sink
    from .comfy_host import ComfyHost, restart_comfyui

    host = ComfyHost(instance, folder_paths, version=_comfyui_version())

    def build_manager() -> Any:
        # Built by the first request: config.ini, channels.list and the core modules are read
        # then, so ComfyUI's start pays for mounting routes only.
        from ..manager.context import Manager

        return Manager.create(host)

    api = HttpDoor(
        build_manager,
        listen=listen_address(),
        restart=restart_comfyui,
        door="comfyui",
        comfyui_root=host.layout.comfyui_root,
    )
    tracker: ImportFailureTracker = state["import_failures"]
    api.import_failure_source = tracker.collect
    report = route_mount.mount(instance.routes, route_mount.mark_ours(route_defs(api)))
    report.owners = route_mount.family_owners(instance.routes)
    api.route_owners = dict(report.owners)
    report.frontend = frontend_manager_ui(instance, api, report)
    forwarder = EventForwarder(prompt_server_sink.comfy_sink(instance))
    # The queue (and the operation modules behind it) is built by the first request that needs
    # it; then events start flowing to send_sync and the worker thread starts.
    api.on_queue(forwarder.attach)
    api.on_queue(lambda queue: queue.start())
    prewarm_after_start(instance, api)
    state.update(api=api, forwarder=forwarder, report=report, version=__version__, host=host)


def prewarm_after_start(instance: Any, api: Any) -> None:
    """Once ComfyUI's server runs, ready the pack lists in the background (``HttpDoor.prewarm``:
    from the persisted lists, off the loop); nothing of it runs during ComfyUI's start."""
    app = getattr(instance, "app", None)
    hooks = getattr(app, "on_startup", None)
    if hooks is None:
        return
    tasks: list[Any] = []

    async def start_prewarm(_app: Any) -> None:
        import asyncio

        tasks.append(asyncio.ensure_future(api.prewarm()))

    try:
        hooks.append(start_prewarm)
    except RuntimeError:  # the app already started: the first request loads the lists
        log.debug("[offline-manager] server already started; pack lists load on first use")


def log_ready(version: str, report: Any) -> None:
    """Our one ready line: what mounted, who owns each route family, what we cost the start."""
    left = ""
    if report.skipped:
        more = " ..." if len(report.skipped) > 4 else ""
        left = f", {len(report.skipped)} already owned by another extension ({', '.join(report.skipped[:4])}{more})"
    if getattr(report, "yielded", None):
        left += f", {len(report.yielded)} more left unmounted because their family belongs to another extension"
    owners = ", ".join(f"{family}={owner}" for family, owner in sorted(report.owners.items())) or "-"
    if getattr(report, "frontend", ""):
        owners += f"; {report.frontend}"
    log.info(
        "[offline-manager] %s ready: %d route(s) mounted%s; route owners: %s; %.1f ms of ComfyUI's start (%.1f ms CPU)",
        version,
        len(report.mounted),
        left,
        owners,
        report.seconds * 1000,
        getattr(report, "cpu_seconds", 0.0) * 1000,
    )


def frontend_manager_ui(instance: Any, api: Any, report: Any) -> str:
    """Let the frontend's built-in manager UI use our /v2 routes where ComfyUI allows it."""
    try:
        from . import frontend_manager

        return frontend_manager.attach(instance, api, report, route_mount)
    except Exception:  # a convenience for the frontend; never a reason to stop ComfyUI's start
        log.exception("[offline-manager] could not prepare the frontend's manager UI; ComfyUI continues")
        return ""


def _keep_report(state: dict[str, Any], report: Any) -> None:
    if "host" in state:
        from ..manager.import_failures import save_report

        save_report(state["host"].layout, report)


def import_failure_tracker(folder_paths: Any, package_file: str, on_report: Any = None) -> ImportFailureTracker:
    """Listen for import failures of the packs ComfyUI imports after us; the report is read on
    first use (loading is over by then) and kept in the manager folder for the other doors."""

    def folders() -> list[str]:
        return list(folder_paths.get_folder_paths("custom_nodes"))

    tracker = ImportFailureTracker(
        folders, own_folder=os.path.dirname(os.path.abspath(package_file)), on_report=on_report
    )
    tracker.install()
    return tracker


def _comfyui_version() -> str | None:
    mod = sys.modules.get("comfyui_version")
    return getattr(mod, "__version__", None) if mod else None
