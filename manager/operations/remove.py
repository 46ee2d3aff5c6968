"""Uninstall to the trash, restore from it, empty it.

Trash layout (``custom_nodes/.cm-trash.disabled/``, ignored by ComfyUI and the inventory)::

    <YYYYmmddTHHMMSS>-<name>-<random>/
        manifest.json        {"format", "id", "name", "original", "trashed_at", "reason", pack facts}
        <name>               the pack folder or file, moved here by one rename

The manifest is written before the move, so an interrupted uninstall leaves an entry without a
payload, which the next operation deletes (``staging.prepare_tree``).

The trash is one of our working folders: it and its entries are real folders, never links
(``working_folder_link`` before anything is written); only a payload may be a link, when the
pack trashed was one the user had linked into ``custom_nodes/``.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NotFound, PackConflict, TrashEntryInvalid
from ..fsops import atomic_write_json, refuse_link_file, refuse_links
from ..inventory import InstalledPack
from ..layout import Layout, ensure_inside
from ..records import _Record
from .installed import find_pack
from .ops import Ops
from .reporting import OpResult, Reporter, Step
from .staging import TRASH_MANIFEST, RenameTxn, prepare_tree, remove_tree, tidy_staging

__all__ = ["TrashEntry", "list_trash", "trash_into", "uninstall", "restore_trash", "empty_trash"]


@dataclass(frozen=True)
class TrashEntry(_Record):
    """One trashed pack, as its manifest describes it."""

    id: str
    name: str
    original: str  # path relative to custom_nodes/ (".disabled/x@1_0_0", "x", "x.py")
    trashed_at: float
    reason: str  # uninstall | reinstall | update
    path: str  # the entry folder
    kind: str = ""
    pack_id: str = ""
    version: str = ""
    commit: str = ""
    remote_url: str = ""
    size_bytes: int = 0


def _manifest(pack: InstalledPack | None, path: Path, layout: Layout, reason: str, entry_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format": 1,
        "id": entry_id,
        "name": path.name,
        "original": os.path.relpath(path, layout.custom_nodes).replace(os.sep, "/"),
        "trashed_at": time.time(),
        "reason": reason,
    }
    if pack is not None:
        data.update(
            kind=pack.kind,
            pack_id=pack.cnr_id or pack.pack_id,
            version=pack.version,
            commit=pack.commit,
            remote_url=pack.remote_url,
        )
    return data


def trash_into(txn: RenameTxn, path: Path, *, reason: str, pack: InstalledPack | None = None) -> Path:
    """Create a trash entry (manifest first) and move ``path`` into it inside ``txn``; returns the entry."""
    layout = txn.layout
    refuse_links(layout.trash_dir, layout.custom_nodes, what="trash folder")
    layout.trash_dir.mkdir(parents=True, exist_ok=True)
    entry_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{path.name}-{secrets.token_hex(3)}"
    entry = layout.trash_dir / entry_id
    entry.mkdir()
    atomic_write_json(entry / TRASH_MANIFEST, _manifest(pack, path, layout, reason, entry_id))
    try:
        txn.move(path, entry / path.name)
    except BaseException:
        remove_tree(entry)
        raise
    return entry


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                continue
    return total


def _read_entry(entry: Path, *, with_size: bool = False) -> TrashEntry:
    try:
        data = json.loads((entry / TRASH_MANIFEST).read_text(encoding="utf-8"))
        name = str(data["name"])
        original = str(data["original"])
        if not isinstance(data, dict) or "/" in name or not name:
            raise ValueError("bad name")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrashEntryInvalid(
            f"trash entry {entry.name} has no readable manifest: {exc}",
            hint="Delete it with empty-trash; its content cannot be restored automatically.",
            details={"entry": entry.name},
        ) from None
    payload = entry / name
    return TrashEntry(
        id=entry.name,
        name=name,
        original=original,
        trashed_at=float(data.get("trashed_at") or 0),
        reason=str(data.get("reason") or ""),
        path=str(entry),
        kind=str(data.get("kind") or ""),
        pack_id=str(data.get("pack_id") or ""),
        version=str(data.get("version") or ""),
        commit=str(data.get("commit") or ""),
        remote_url=str(data.get("remote_url") or ""),
        size_bytes=_size(payload) if with_size and os.path.lexists(payload) else 0,
    )


def list_trash(layout: Layout, *, with_size: bool = False) -> list[TrashEntry]:
    """Restorable entries, newest first (entries without a manifest are skipped)."""
    out = []
    try:
        entries = [e for e in layout.trash_dir.iterdir() if e.is_dir() and not e.is_symlink()]
    except FileNotFoundError:
        return []
    for entry in entries:
        try:
            item = _read_entry(entry, with_size=with_size)
        except TrashEntryInvalid:
            continue
        if os.path.lexists(entry / item.name):
            out.append(item)
    return sorted(out, key=lambda e: e.trashed_at, reverse=True)


def uninstall(
    ops: Ops, key: str, rep: Reporter, *, version: str | None = None, enabled: bool | None = None
) -> OpResult:
    """Move the pack ``key`` names (enabled or disabled) into the trash."""
    layout = ops.layout
    with Step(rep, "resolve", key):
        ops.prepare_tree()
        pack = find_pack(ops.inventory(), key, enabled=enabled, version=version)
        path = Path(pack.path)
        ensure_inside(path.parent, layout.custom_nodes)
    with Step(rep, "move", pack.name):
        with RenameTxn(layout, label=f"uninstall {pack.name}") as txn:
            entry = trash_into(txn, path, reason="uninstall", pack=pack)
    rep.stage("done", 100.0)
    if pack.enabled:
        rep.require_restart(f"{pack.name} was uninstalled")
    return OpResult(
        "uninstall",
        pack.name,
        path=str(path),
        source=pack.kind,
        version=pack.version,
        commit=pack.commit,
        restart_required=pack.enabled,
        notes=(f"moved to the trash as {entry.name}; restore_trash {entry.name} undoes it",),
        extra={"trash_entry": entry.name},
    )


def _find_entry(layout: Layout, entry_id: str) -> Path:
    if not entry_id or "/" in entry_id or "\\" in entry_id or entry_id.startswith("."):
        raise NotFound(
            f"no trash entry {entry_id!r}",
            hint="List the trash and use an entry id shown there.",
            details={"entry": entry_id},
        )
    entry = layout.trash_dir / entry_id
    refuse_links(entry, layout.custom_nodes, what="trash entry")
    refuse_link_file(entry / TRASH_MANIFEST, what="trash manifest")
    if not entry.is_dir():
        raise NotFound(
            f"no trash entry {entry_id!r}",
            hint="List the trash and use an entry id shown there; emptying the trash deletes entries for good.",
            details={"entry": entry_id},
        )
    return entry


def restore_trash(ops: Ops, entry_id: str, rep: Reporter) -> OpResult:
    """Move a trashed pack back where it was; refuses (``pack_conflict``) if that place is taken."""
    layout = ops.layout
    with Step(rep, "resolve", entry_id):
        ops.prepare_tree()
        entry = _find_entry(layout, entry_id)
        item = _read_entry(entry)
        payload = entry / item.name
        if not os.path.lexists(payload):
            raise TrashEntryInvalid(f"trash entry {entry_id} lost its content", details={"entry": entry_id})
        dest = layout.custom_nodes.joinpath(*item.original.split("/"))
        ensure_inside(dest.parent, layout.custom_nodes)
        if dest.parent not in (layout.custom_nodes, layout.disabled_dir) or dest.name != item.name:
            raise TrashEntryInvalid(
                f"trash entry {entry_id} names an unexpected place {item.original!r}",
                details={"entry": entry_id, "original": item.original},
            )
        if os.path.lexists(dest):
            raise PackConflict(
                f"cannot restore {item.name}: {dest} exists (another copy was installed since)",
                hint="Uninstall or disable the current copy first, then restore; nothing was overwritten.",
                details={"entry": entry_id, "destination": str(dest)},
            )
    with Step(rep, "move", item.name):
        with RenameTxn(layout, label=f"restore {entry_id}") as txn:
            txn.move(payload, dest)
        remove_tree(entry)
    enabled = dest.parent == layout.custom_nodes
    rep.stage("done", 100.0)
    if enabled:
        rep.require_restart(f"{item.name} was restored")
    return OpResult(
        "restore_trash",
        item.name,
        path=str(dest),
        source=item.kind,
        version=item.version,
        commit=item.commit,
        restart_required=enabled,
        extra={"trash_entry": entry_id},
    )


def empty_trash(
    ops: Ops, rep: Reporter, *, older_than_days: float | None = None, entries: Iterable[str] | None = None
) -> dict[str, Any]:
    """Delete trash entries for good (all, those older than N days, or the ids given)."""
    layout = ops.layout
    prepare_tree(layout)
    wanted = set(entries) if entries is not None else None
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    removed: list[str] = []
    try:
        all_entries = sorted(layout.trash_dir.iterdir())
    except FileNotFoundError:
        all_entries = []
    staging_existed = layout.staging_dir.exists()
    layout.staging_dir.mkdir(parents=True, exist_ok=True)
    for i, entry in enumerate(all_entries):
        if wanted is not None and entry.name not in wanted:
            continue
        if cutoff is not None:
            try:
                if _read_entry(entry).trashed_at > cutoff:
                    continue
            except TrashEntryInvalid:
                pass  # unreadable entries go regardless of age
        rep.stage("delete", 100.0 * i / max(1, len(all_entries)), entry.name)
        # rename out first: a kill half-way through the delete leaves only staging debris
        doomed = layout.staging_dir / f"{entry.name}-deleting-{secrets.token_hex(3)}"
        os.rename(entry, doomed)
        remove_tree(doomed)
        removed.append(entry.name)
    if not staging_existed:
        tidy_staging(layout)
    rep.stage("done", 100.0)
    return {"action": "empty_trash", "removed": removed, "count": len(removed)}
