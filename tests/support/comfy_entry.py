"""ComfyUI as the extension meets it, stood in: a PromptServer and folder_paths module, the way
ComfyUI loads a custom node folder, and an app with the routes mounted as PromptServer does.

The fixtures (``comfy_modules``, ``loaded``) reach every test through ``pytest_plugins`` in
tests/conftest.py.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
from aiohttp import web

REPO = Path(__file__).resolve().parents[2]


class StandInPromptServer:
    instance: StandInPromptServer

    def __init__(self) -> None:
        self.routes = web.RouteTableDef()
        self.sent: list[tuple[str, dict]] = []

    def send_sync(self, event: str, data: dict, sid: str | None = None) -> None:
        self.sent.append((event, data))


@pytest.fixture
def comfy_modules(comfy_tree: Path, monkeypatch: pytest.MonkeyPatch):
    server = types.ModuleType("server")
    server.PromptServer = StandInPromptServer
    StandInPromptServer.instance = StandInPromptServer()
    fp = types.ModuleType("folder_paths")
    fp.base_path = str(comfy_tree)
    fp.models_dir = str(comfy_tree / "models")
    fp.folder_names_and_paths = {
        "checkpoints": ([str(comfy_tree / "models" / "checkpoints")], {".safetensors"}),
        "custom_nodes": ([str(comfy_tree / "custom_nodes")], set()),
    }
    fp.get_folder_paths = lambda name: list(fp.folder_names_and_paths[name][0])
    fp.get_user_directory = lambda: str(comfy_tree / "user")
    fp.get_system_user_directory = lambda name="system": str(comfy_tree / "user" / f"__{name}")
    monkeypatch.setitem(sys.modules, "server", server)
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    yield StandInPromptServer.instance
    started = getattr(StandInPromptServer.instance, "_offline_manager_started", None)
    if isinstance(started, dict):
        started["import_failures"].uninstall()  # the log handler the glue added to the root logger
    api = started.get("api") if isinstance(started, dict) else None  # absent when the mount failed
    manager = api._manager if api is not None else None
    if manager is not None and manager._queue is not None:
        started["forwarder"].detach()  # the glue started a worker thread: end it with the test
        manager.queue.stop(timeout=10)


def _forget(name: str) -> None:
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def load_like_comfyui(folder: Path, *, keep: bool = False):
    """nodes.load_custom_node: path-mangled module name, sys.modules entry before exec.

    ``keep=True`` leaves the modules loaded (as ComfyUI does: the worker imports lazily); the
    ``loaded`` fixture removes them after the test.
    """
    name = str(folder).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        if not keep:
            _forget(name)
    return module


@pytest.fixture
def loaded(comfy_modules):
    """Load the extension like ComfyUI and keep it loaded for the test."""
    name = str(REPO).replace(".", "_x_")
    yield lambda: load_like_comfyui(REPO, keep=True)
    _forget(name)


# --- the whole route table inside the stand-in host ---------------------------------------------
def offline_demo(comfy_tree: Path, tmp_path: Path) -> None:
    """An offline config and a local file:// channel for the stand-in tree (no network at all)."""
    from support.api_tree import demo_root

    demo = demo_root(tmp_path)
    channel = demo.parent / "demo-channel"
    manager_dir = comfy_tree / "user" / "__manager"
    manager_dir.mkdir(parents=True, exist_ok=True)
    (manager_dir / "config.ini").write_text(
        f"[default]\nnetwork_mode = offline\nchannel_url = {channel.as_uri()}\n", encoding="utf-8"
    )
    (manager_dir / "channels.list").write_text(f"demo::{channel.as_uri()}\n", encoding="utf-8")


def comfy_app(instance: StandInPromptServer) -> web.Application:
    """What PromptServer.add_routes does: every RouteDef under /api first, then the table itself."""
    app = web.Application()
    mirror = web.RouteTableDef()
    for route in instance.routes:
        if isinstance(route, web.RouteDef):
            mirror.route(route.method, "/api" + route.path)(route.handler)
    app.add_routes(mirror)
    app.add_routes(instance.routes)
    return app
