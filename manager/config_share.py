"""config.ini when another manager reads it too: we read it, and write our own file on top.

The classic ComfyUI-Manager (3.38 and later, on ComfyUI with ``get_system_user_directory``) and
the packaged ComfyUI-Manager 4.x keep their settings in the same ``<user>/__manager/config.ini``
we use, with the same keys for the same things (``network_mode``, ``security_level``,
``channel_url``...). Writing one of those keys there would change the other manager's
behaviour, so while another manager is installed every change we save goes to
``<user>/__manager/offline-manager.ini``, read on top of config.ini. Once that file exists it
stays the one we write (a key saved there would otherwise shadow a later change in config.ini),
whether or not the other manager is still there. Without another manager and without that
file, config.ini is read and written as before. An explicit ``--config``/``CM_CONFIG`` file is
used alone, as asked.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import Config
from .layout import Layout

log = logging.getLogger("offline_manager")
OWN_FILE = "offline-manager.ini"
PACKAGED = "comfyui_manager"


def classic_folders(layout: Layout) -> list[str]:
    """Enabled folders in custom_nodes/ that hold a classic ComfyUI-Manager (its server module)."""
    try:
        entries = sorted(os.scandir(layout.custom_nodes), key=lambda e: e.name)
    except OSError:
        return []
    found = []
    for entry in entries:
        if entry.name.startswith(".") or entry.name.endswith(".disabled") or not entry.is_dir():
            continue
        glob_dir = Path(entry.path) / "glob"
        if (glob_dir / "manager_server.py").is_file() and (glob_dir / "manager_core.py").is_file():
            found.append(entry.name)
    return found


def packaged_manager() -> bool:
    """The pip package ``comfyui_manager`` (4.x) is installed in this interpreter."""
    try:
        return importlib.util.find_spec(PACKAGED) is not None
    except (ImportError, ValueError):
        return False


def other_managers(layout: Layout) -> list[str]:
    """What else reads ``<user>/__manager/config.ini``: classic folders and the 4.x package."""
    found = [f"custom_nodes/{name}" for name in classic_folders(layout)]
    if packaged_manager():
        found.append(f"{PACKAGED} (installed package)")
    return found


def own_file(layout: Layout) -> Path:
    return layout.manager_dir / OWN_FILE


def load_config(layout: Layout, path: Path, *, env: Mapping[str, str], cli: Mapping[str, Any] | None = None) -> Config:
    """The Manager's settings from ``path``; with our own file on top where config.ini is shared."""
    if Path(path).absolute() != layout.config_file.absolute():
        return Config.load(path, env=env, cli=cli)
    own = own_file(layout)
    others = [] if own.exists() else other_managers(layout)
    if not own.exists() and not others:
        return Config.load(path, env=env, cli=cli)
    if others:
        log.info("[offline-manager] %s also read %s: changes are saved to %s", ", ".join(others), path, own)
    return Config.load(own, env=env, cli=cli, under=path)
