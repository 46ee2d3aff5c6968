"""The Host implementation backed by a running ComfyUI (folder_paths + PromptServer).

This folder is the only code that touches ComfyUI modules, and it receives them as
arguments so a stand-in host can drive it in tests.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..manager.layout import Layout


def layout_from_folder_paths(folder_paths: Any) -> Layout:
    """Every path of the tree as ComfyUI's ``folder_paths`` sees it (the prestartup script and
    the glue use the same rule, so both find the same manager folder)."""
    base = Path(folder_paths.base_path)
    custom_nodes = Path(folder_paths.get_folder_paths("custom_nodes")[0])
    user_dir = Path(folder_paths.get_user_directory())
    manager_dir = None
    getter = getattr(folder_paths, "get_system_user_directory", None)
    if callable(getter):  # ComfyUI >= 0.3.76 keeps __manager out of the /userdata web API
        manager_dir = Path(getter("manager"))
    return Layout.from_root(base, user_dir=user_dir, custom_nodes=custom_nodes,
                            models_dir=Path(folder_paths.models_dir), manager_dir=manager_dir)


class ComfyHost:
    """Paths from ``folder_paths``, events through ``PromptServer.send_sync``."""

    def __init__(self, prompt_server: Any, folder_paths: Any, *, version: str | None = None):
        self._server = prompt_server
        self._folder_paths = folder_paths
        self._version = version
        self.layout = layout_from_folder_paths(folder_paths)

    @property
    def python_executable(self) -> str:
        return sys.executable

    def comfyui_version(self) -> str | None:
        return self._version

    def send_event(self, event: str, data: dict[str, Any]) -> None:
        self._server.send_sync(event, data)

    def model_folders(self) -> dict[str, list[Path]]:
        table = getattr(self._folder_paths, "folder_names_and_paths", {})
        return {name: [Path(p) for p in entry[0]] for name, entry in table.items() if name != "custom_nodes"}


def restart_comfyui() -> None:
    """Restart the ComfyUI process the way ComfyUI is commonly launched.

    Under comfy-cli (``__COMFY_CLI_SESSION__`` set) touch ``<session>.reboot`` and exit, so the
    launcher starts it again; otherwise re-execute the same interpreter with the same argv.
    """
    import os

    session = os.environ.get("__COMFY_CLI_SESSION__")
    if session:
        Path(session + ".reboot").touch()
        os._exit(0)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.argv])
