"""Disable and enable: one rename between ``custom_nodes/`` and ``custom_nodes/.disabled/``.

Disabled names follow the classic convention (``names.disabled_name``): ``<id>@<version with _>``
for registry packs, ``<id>@nightly`` for git packs with a registry identity, the folder name
otherwise. The folder name a pack had before it was disabled is remembered in
``.disabled/.cm-origins.json`` so enabling gives it back (some packs rely on their folder
name). A destination that exists is never overwritten: ``pack_conflict`` says what to do.

``.disabled/`` is one of our working folders: it holds real folders and files only. A pack the
user linked into ``custom_nodes/`` (a dev checkout) is not moved into it (``working_folder_link``:
remove the link to disable it), and a link found inside it is never enabled (``prepare_tree``
refuses every operation until it is removed; the inventory reports it instead of listing it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import PackConflict, WorkingFolderLink
from ..fsops import atomic_write_json
from ..inventory import InstalledPack
from ..layout import Layout
from .installed import find_pack
from .names import disabled_name, enabled_name, validate_pack_name
from .ops import Ops
from .reporting import OpResult, Reporter, Step
from .staging import RenameTxn

__all__ = ["disable", "enable", "move_to_disabled", "refuse_linked_pack", "ORIGINS_FILE", "read_origins"]

ORIGINS_FILE = ".cm-origins.json"


def read_origins(layout: Layout) -> dict[str, str]:
    """``{disabled entry name: folder name it had when enabled}`` (empty when unreadable)."""
    try:
        data = json.loads((layout.disabled_dir / ORIGINS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_origins(layout: Layout, origins: dict[str, str]) -> None:
    # keep only entries that still exist: the file never grows without bound
    live = {k: v for k, v in origins.items() if os.path.lexists(layout.disabled_dir / k)}
    atomic_write_json(layout.disabled_dir / ORIGINS_FILE, live)


def refuse_linked_pack(layout: Layout, pack: InstalledPack) -> None:
    """``WorkingFolderLink`` for a pack that is a symbolic link: it never goes into ``.disabled/``."""
    path = Path(pack.path)
    if not (pack.is_link or path.is_symlink()):
        return
    try:
        target = os.readlink(path)
    except OSError:
        target = ""
    raise WorkingFolderLink(
        f"cannot disable {pack.name}: it is a symbolic link (to {target or '?'}), and links are never moved "
        f"into {layout.disabled_dir}; nothing was moved",
        hint=f"To disable a pack you linked in, remove the link (rm {path}: only the link goes, its target "
        "stays); link it again to enable it.",
        details={"path": str(path), "target": target, "pack": pack.name},
    )


def move_to_disabled(txn: RenameTxn, pack: InstalledPack) -> Path:
    """Inside ``txn``: move an enabled pack to ``.disabled/<classic name>``; refuses to overwrite."""
    layout = txn.layout
    refuse_linked_pack(layout, pack)
    dest = layout.disabled_dir / disabled_name(pack)
    if os.path.lexists(dest):
        raise PackConflict(
            f"cannot disable {pack.name}: {dest.name} already exists in {layout.disabled_dir} "
            "(the same pack and version is present both enabled and disabled)",
            hint=f"Uninstall one copy first: the disabled one (uninstall {dest.name} with enabled=false) or the "
            f"enabled one (uninstall {pack.name}); nothing was overwritten.",
            details={"pack": pack.name, "destination": str(dest)},
        )
    txn.move(Path(pack.path), dest)
    origins = read_origins(layout)
    origins[dest.name] = pack.name
    _write_origins(layout, origins)
    return dest


def disable(ops: Ops, key: str, rep: Reporter) -> OpResult:
    """Move an enabled pack into ``.disabled/`` (ComfyUI skips it from the next start)."""
    layout = ops.layout
    with Step(rep, "resolve", key):
        ops.prepare_tree()
        pack = find_pack(ops.inventory(), key, enabled=True)
        refuse_linked_pack(layout, pack)
    with Step(rep, "move", pack.name):
        with RenameTxn(layout, label=f"disable {pack.name}") as txn:
            dest = move_to_disabled(txn, pack)
    rep.stage("done", 100.0)
    rep.require_restart(f"{pack.name} was disabled")
    return OpResult(
        "disable",
        dest.name,
        path=str(dest),
        source=pack.kind,
        version=pack.version,
        commit=pack.commit,
        restart_required=True,
        extra={"from": pack.name},
    )


def enabled_target(layout: Layout, pack: InstalledPack) -> Path:
    """Where a disabled entry goes when enabled."""
    if pack.disabled_style == "suffix":
        return layout.custom_nodes / validate_pack_name(pack.name[: -len(".disabled")])
    return layout.custom_nodes / enabled_name(pack.name, read_origins(layout))


def enable(ops: Ops, key: str, rep: Reporter, *, version: str | None = None) -> OpResult:
    """Move a disabled pack back into ``custom_nodes/``; ``version`` picks among several."""
    layout = ops.layout
    with Step(rep, "resolve", key):
        ops.prepare_tree()
        pack = find_pack(ops.inventory(), key, enabled=False, version=version)
        dest = enabled_target(layout, pack)
        if os.path.lexists(dest):
            raise PackConflict(
                f"cannot enable {pack.name}: {dest.name} is already enabled in custom_nodes/ "
                "(another copy or version of the pack)",
                hint=f"Disable or uninstall the enabled {dest.name} first, or use switch_version to swap the two; "
                "nothing was overwritten.",
                details={"pack": pack.name, "destination": str(dest)},
            )
    with Step(rep, "move", pack.name):
        with RenameTxn(layout, label=f"enable {pack.name}") as txn:
            txn.move(Path(pack.path), dest)
        if pack.disabled_style == "dir":
            _write_origins(layout, read_origins(layout))
    rep.stage("done", 100.0)
    rep.require_restart(f"{dest.name} was enabled")
    return OpResult(
        "enable",
        dest.name,
        path=str(dest),
        source=pack.kind,
        version=pack.version,
        commit=pack.commit,
        restart_required=True,
        extra={"from": pack.name},
    )
