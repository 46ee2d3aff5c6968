"""Load the extension the way ComfyUI does, against a stand-in server and folder_paths."""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from pathlib import Path

import pytest
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]


class StandInPromptServer:
    instance: "StandInPromptServer"

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
    fp.folder_names_and_paths = {"checkpoints": ([str(comfy_tree / "models" / "checkpoints")], {".safetensors"}),
                                 "custom_nodes": ([str(comfy_tree / "custom_nodes")], set())}
    fp.get_folder_paths = lambda name: list(fp.folder_names_and_paths[name][0])
    fp.get_user_directory = lambda: str(comfy_tree / "user")
    fp.get_system_user_directory = lambda name="system": str(comfy_tree / "user" / f"__{name}")
    monkeypatch.setitem(sys.modules, "server", server)
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    return StandInPromptServer.instance


def load_like_comfyui(folder: Path):
    """nodes.load_custom_node: path-mangled module name, sys.modules entry before exec."""
    name = str(folder).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
    return module


def test_entry_exports_and_mounts_routes(comfy_modules):
    module = load_like_comfyui(REPO)
    assert module.NODE_CLASS_MAPPINGS == {} and module.WEB_DIRECTORY == "./js"
    assert (REPO / "js").is_dir()
    paths = {(r.method, r.path) for r in comfy_modules.routes}
    assert ("GET", "/offline-manager/health") in paths
    import glob
    assert callable(glob.glob) and not glob.__file__.startswith(str(REPO))


def test_entry_is_idempotent_and_skips_taken_routes(comfy_modules, caplog):
    async def other(_):  # another extension already owns our path
        return web.Response(text="theirs")
    comfy_modules.routes.get("/offline-manager/health")(other)
    with caplog.at_level(logging.INFO, logger="offline_manager"):
        load_like_comfyui(REPO)
        load_like_comfyui(REPO)
    owners = [r for r in comfy_modules.routes if r.path == "/offline-manager/health"]
    assert len(owners) == 1 and owners[0].handler is other
    assert "already owned" in caplog.text


def test_entry_outside_comfyui_does_nothing(monkeypatch):
    monkeypatch.delitem(sys.modules, "server", raising=False)
    module = load_like_comfyui(REPO)
    assert module.NODE_CLASS_MAPPINGS == {}


def test_broken_host_never_raises(comfy_modules, monkeypatch, caplog):
    monkeypatch.setattr(sys.modules["folder_paths"], "get_folder_paths", None)
    with caplog.at_level(logging.ERROR, logger="offline_manager"):
        module = load_like_comfyui(REPO)
    assert module.NODE_CLASS_MAPPINGS == {}
    assert "ComfyUI continues" in caplog.text
