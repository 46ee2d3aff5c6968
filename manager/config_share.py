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
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config, ConfigConflict, is_looser, read_old_file
from .config_schema import format_value, redact_text
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
    """The Manager's settings from ``path``; with our own file on top where config.ini is shared.

    At the default location, config files at the classic's old locations are compared with it
    (``old_config_files``; a stricter network_mode or security_level there wins, every difference
    is reported). An explicit ``--config``/``CM_CONFIG`` file is used alone, as asked."""
    if Path(path).absolute() != layout.config_file.absolute():
        return Config.load(path, env=env, cli=cli)
    old = old_config_files(layout)
    own = own_file(layout)
    others = [] if own.exists() else other_managers(layout)
    if not own.exists() and not others:
        return Config.load(path, env=env, cli=cli, old=old)
    if others:
        log.info("[offline-manager] %s also read %s: changes are saved to %s", ", ".join(others), path, own)
    return Config.load(own, env=env, cli=cli, under=path, old=old)


# --- the classic's old config locations ---------------------------------------------------------
#: this checkout's own folder (custom_nodes/<us>/ when installed): a config.ini edited here is read
#: by nobody; it ships as the annotated template
CHECKOUT_DIR = Path(__file__).resolve().parent.parent


def old_config_locations(layout: Layout, own_dir: Path | None = None) -> list[tuple[Path, str]]:
    """Where older classic managers (and a hand-edited copy of ours) kept config.ini, with what
    each place is: ``<user>/default/ComfyUI-Manager/config.ini`` (ComfyUI before 0.3.76), the
    classic manager folder's own ``config.ini`` (classic 2.x), and this checkout's own file when it
    is installed in ``custom_nodes/``. Existing or not."""
    own_dir = CHECKOUT_DIR if own_dir is None else own_dir
    places: list[tuple[Path, str]] = [
        (layout.user_dir / "default" / "ComfyUI-Manager" / "config.ini", "classic manager, ComfyUI before 0.3.76")
    ]
    names = set(classic_folders(layout))
    try:
        names |= {
            e.name
            for e in os.scandir(layout.custom_nodes)
            if e.is_dir() and e.name.lower().startswith("comfyui-manager") and not e.name.endswith(".disabled")
        }
    except OSError:
        pass
    for name in sorted(names):
        places.append((layout.custom_nodes / name / "config.ini", "classic manager folder's own (classic 2.x)"))
    own_real = Path(os.path.realpath(own_dir))
    if Path(os.path.realpath(layout.custom_nodes)) in own_real.parents:
        places.append((own_dir / "config.ini", "this Manager's folder (the shipped template; not read)"))
    return places


def old_config_files(layout: Layout, own_dir: Path | None = None) -> list[Path]:
    """The old-location config files that exist and set at least one line (a template with every
    key commented out sets nothing and is not compared)."""
    found = []
    for path, _what in old_config_locations(layout, own_dir):
        try:
            text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        except OSError:
            found.append(path)  # unreadable: reported by Config as such
            continue
        if any(line.strip() and not line.lstrip().startswith(("#", ";", "[")) for line in text.splitlines()):
            found.append(path)
    return found


# --- cm-cli.py migrate ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MigrateResult:
    """What ``migrate`` did: the file copied from and into, the backup, the keys copied, refused
    (they would lower security) and already equal."""

    source: Path
    target: Path
    backup: Path | None
    copied: dict[str, str]
    refused: dict[str, str]  # key -> why
    unchanged: tuple[str, ...]
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "target": str(self.target),
            "backup": str(self.backup) if self.backup else None,
            "copied": dict(self.copied),
            "refused": dict(self.refused),
            "unchanged": list(self.unchanged),
            "dry_run": self.dry_run,
        }


def migrate(
    layout: Layout,
    config: Config,
    *,
    source: str | os.PathLike[str] | None = None,
    allow_lower: bool = False,
    dry_run: bool = False,
    clock: Any = time.time,
) -> MigrateResult:
    """Copy the settings of an old config file into the file ``config`` writes.

    ``source``: the old file (default: the one old file found that differs). A value that would
    lower security (``config.is_looser``: a looser network_mode or security_level, a ``[security]``
    flag turned on, a wider allow-list) is refused unless ``allow_lower``. The file written is
    copied to ``<name>.bak-<time>`` first; only the copied keys change in it (``Config.save``)."""
    from .errors import ConfigError

    target = config.path
    if target is None:
        raise ConfigError(
            "this configuration has no file to write", hint="Run cm-cli.py config to see the file in effect."
        )
    if source is None:
        candidates = [f for f in config.old_files if f.differs] or list(config.old_files)
        if not candidates:
            places = ", ".join(str(p) for p, _ in old_config_locations(layout))
            raise ConfigConflict(
                f"no old config file to migrate: none found at {places}",
                hint="Nothing to do; cm-cli.py config shows the file in effect. Name another file with "
                "cm-cli.py migrate --from FILE.",
                details={"looked_in": [p for p, _ in old_config_locations(layout)]},
            )
        if len(candidates) > 1:
            raise ConfigConflict(
                "several old config files differ: " + ", ".join(str(f.path) for f in candidates),
                hint="Choose one: cm-cli.py migrate --from FILE.",
                details={"candidates": [str(f.path) for f in candidates]},
            )
        src = candidates[0].path
    else:
        src = Path(source).expanduser().absolute()
    if src.absolute() == target.absolute():
        raise ConfigConflict(
            f"{src} is the file in effect; nothing to copy",
            hint="Name an old config file: cm-cli.py migrate --from FILE.",
            details={"path": str(src)},
        )
    found, error = read_old_file(src)
    if error:
        raise ConfigConflict(
            f"cannot migrate from {src}: {error}",
            hint=f"Fix {src} or copy its settings into {target} by hand.",
            details={"path": str(src)},
        )
    # compare with what the file in effect gives alone (no environment, command line or old files)
    base = Config.load(target, env={}, cli={}, strict=False, under=config.under)
    copied: dict[str, str] = {}
    refused: dict[str, str] = {}
    unchanged: list[str] = []
    changes: dict[str, Any] = {}
    for setting, value, line in found:
        current = base[setting.key]
        if value == current:
            unchanged.append(setting.key)
            continue
        shown = redact_text(setting, format_value(setting, value))
        if is_looser(setting.key, value, current) and not allow_lower:
            refused[setting.key] = (
                f"{src}:{line} sets {setting.key} = {shown!r}, which would lower security from "
                f"{redact_text(setting, format_value(setting, current))!r}; rerun with --allow-lower to copy it"
            )
            continue
        copied[setting.key] = shown
        changes[setting.key] = value
    backup = None
    if changes and not dry_run:
        if target.is_file():
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(clock()))
            backup = target.with_name(f"{target.name}.bak-{stamp}")
            shutil.copy2(target, backup)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
        base.save(changes)
    return MigrateResult(src, target, backup, copied, refused, tuple(unchanged), dry_run)
