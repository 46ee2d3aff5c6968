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
    return Layout.from_root(
        base,
        user_dir=user_dir,
        custom_nodes=custom_nodes,
        models_dir=Path(folder_paths.models_dir),
        manager_dir=manager_dir,
    )


class ComfyHost:
    """Paths from ``folder_paths``; queue events reach the browser through ``prompt_server_sink``."""

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

    def model_folders(self) -> dict[str, list[Path]]:
        table = getattr(self._folder_paths, "folder_names_and_paths", {})
        return {name: [Path(p) for p in entry[0]] for name, entry in table.items() if name != "custom_nodes"}

    # --- the latent preview method (classic /manager/preview_method) -----------------------
    @staticmethod
    def _preview_modules() -> tuple[Any, Any] | None:
        try:
            import importlib

            return importlib.import_module("latent_preview"), importlib.import_module("comfy.cli_args")
        except Exception:  # not inside ComfyUI, or an unexpected layout: no live preview control
            return None

    def native_preview(self) -> bool:
        """True when ComfyUI has its own per-queue preview setting (newer releases): the Manager's
        setting then does nothing, as with the classic manager."""
        mods = self._preview_modules()
        return bool(mods and hasattr(mods[0], "set_preview_method"))

    def preview_method(self) -> str | None:
        """The method ComfyUI uses now (auto, latent2rgb, taesd, none), or None if unknown."""
        mods = self._preview_modules()
        if mods is None:
            return None
        value = getattr(getattr(mods[1].args, "preview_method", None), "value", None)
        return {"auto": "auto", "latent2rgb": "latent2rgb", "taesd": "taesd"}.get(str(value), "none")

    def set_preview_method(self, method: str) -> bool:
        """Apply ``method`` now; False when ComfyUI owns the setting or cannot be reached."""
        mods = self._preview_modules()
        if mods is None or self.native_preview():
            return False
        kinds = getattr(mods[0], "LatentPreviewMethod", None) or getattr(mods[1], "LatentPreviewMethod", None)
        if kinds is None:
            return False
        member = {"auto": "Auto", "latent2rgb": "Latent2RGB", "taesd": "TAESD"}.get(method, "NoPreviews")
        mods[1].args.preview_method = getattr(kinds, member)
        return True

    def adopt_config(self, config: Any) -> None:
        """Apply config.ini's preview_method when ComfyUI was started without --preview-method
        (classic behaviour; ComfyUI's own per-queue setting wins where it exists)."""
        try:
            if self.preview_method() == "none" and config["preview_method"] != "none":
                self.set_preview_method(str(config["preview_method"]))
        except Exception:  # never fail the Manager's build over a display preference
            import logging

            logging.getLogger("offline_manager").debug("preview_method not applied", exc_info=True)


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
