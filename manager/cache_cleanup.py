"""Cache cleanup: orphaned or corrupt channel/registry cache files, expired entries no channel uses
any more, archives, staging and trash entries older than N days (``cleanup_caches``).

``dry_run`` reports the same without deleting. Deletions hold the operations lock (staging and
trash belong to running operations). Re-exported by ``manager/cache_upkeep.py``, which also uses
the small helpers here (``_walk_files``, ``_active_or_none``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .channel_cache import SIDECAR_SUFFIX, ChannelCache, cache_file_name
from .context import CHANNEL_FILES, Manager
from .errors import ManagerError, RequestInvalid
from .fsops import file_lock
from .operations.staging import JOURNAL_PREFIX, TRASH_MANIFEST, remove_tree
from .records import Channel

__all__ = ["AREAS", "DEFAULT_OLDER_THAN_DAYS", "CleanupReport", "cleanup_caches"]

DEFAULT_OLDER_THAN_DAYS = 30.0
AREAS = ("channels", "registry", "archives", "staging", "trash")


def _active_or_none(manager: Manager) -> Channel | None:
    try:
        return manager.active_channel()
    except ManagerError:
        return None


def _walk_files(root: Path, keep: Callable[[Path], bool] = lambda _p: True) -> Iterable[tuple[Path, os.stat_result]]:
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if not keep(path):
                continue
            try:
                st = path.lstat()
            except OSError:
                continue
            yield path, st


# --- cleanup ------------------------------------------------------------------------------------
@dataclass
class CleanupReport:
    older_than_days: float
    dry_run: bool
    removed: list[dict[str, Any]] = field(default_factory=list)  # area, name, bytes, why
    kept: list[dict[str, Any]] = field(default_factory=list)  # area, name, why (notable only)
    errors: list[str] = field(default_factory=list)

    def freed(self) -> dict[str, int]:
        out = dict.fromkeys(AREAS, 0)
        for r in self.removed:
            out[r["area"]] = out.get(r["area"], 0) + int(r["bytes"])
        return out

    def to_dict(self) -> dict[str, Any]:
        freed = self.freed()
        return {
            "older_than_days": self.older_than_days,
            "dry_run": self.dry_run,
            "freed_bytes": freed,
            "freed_total": sum(freed.values()),
            "removed": self.removed,
            "kept": self.kept,
            "errors": self.errors,
        }


def _size_of(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    return sum(st.st_size for _p, st in _walk_files(path))


def _used_urls(manager: Manager) -> set[str]:
    """Cache keys some channel of this box (or the registry listing) still reads."""
    used = {manager.registry.listing_key()}
    channels = list(manager.channels)
    active = _active_or_none(manager)
    if active is not None:
        channels.append(active)
    for channel in channels:
        for name in CHANNEL_FILES:
            try:
                used.add(manager.channels.file_url(channel, name))
            except ManagerError:
                continue
    return used


def _cache_candidates(
    area: str, cache: ChannelCache, used: set[str], now: float, older: float, report: CleanupReport
) -> list[tuple[Path, str]]:
    folder = cache.cache_dir
    if not folder.is_dir():
        return []
    cache.check_folder()
    out: list[tuple[Path, str]] = []
    names = {p.name for p in folder.iterdir()}
    for row in cache.health():
        body = folder / str(row["file"])
        sidecar = body.with_name(body.name + SIDECAR_SUFFIX)
        pair = [p for p in (body, sidecar) if p.name in names]
        url = str(row.get("url") or "")
        if row["state"] == "corrupt":
            why = str(row.get("problem") or "corrupt")
            out += [(p, f"orphaned or corrupt: {why}") for p in pair]
        elif row["state"] == "stale" and (row.get("age_seconds") or 0) > older:
            if url in used and cache_file_name(url) == body.name:
                report.kept.append({"area": area, "name": body.name, "why": "expired, but a channel still uses it"})
            else:
                out += [(p, "expired, and no channel of this box uses it") for p in pair]
    for name in sorted(names):  # a sidecar whose body is gone (health() lists bodies by sidecar)
        path = folder / name
        if name.endswith(SIDECAR_SUFFIX):
            if not (folder / name[: -len(SIDECAR_SUFFIX)]).exists() and all(path != p for p, _w in out):
                out.append((path, "orphaned: metadata sidecar without its body"))
        elif name.startswith(".") and name.endswith(".new"):  # a write killed before its commit
            try:
                age = now - path.lstat().st_mtime
            except OSError:
                continue
            if age > older:
                out.append((path, "leftover of an interrupted write"))
    return out


def _aged(paths: Iterable[Path], now: float, older: float, stamp: Callable[[Path], float]) -> list[Path]:
    out = []
    for path in paths:
        try:
            if now - stamp(path) > older:
                out.append(path)
        except OSError:
            continue
    return out


def _mtime(path: Path) -> float:
    return path.lstat().st_mtime


def _trashed_at(entry: Path) -> float:
    try:
        data = json.loads((entry / TRASH_MANIFEST).read_text(encoding="utf-8"))
        return float(data["trashed_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return entry.lstat().st_mtime


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def cleanup_caches(
    manager: Manager,
    *,
    older_than_days: float = DEFAULT_OLDER_THAN_DAYS,
    dry_run: bool = False,
    lock_timeout: float = 10.0,
) -> CleanupReport:
    """Remove orphaned and expired cache files, old archives, and staging and trash entries older
    than ``older_than_days``. ``dry_run`` lists them and changes nothing.

    Channel and registry cache entries that a channel of this box still reads are kept at any
    age (an offline box serves them stale rather than nothing); journals in the staging folder
    are left for the next operation to roll back.
    """
    if not (older_than_days >= 0) or older_than_days == float("inf"):
        raise RequestInvalid(
            f"--older-than must be a number of days, 0 or more, not {older_than_days!r}",
            hint="cm-cli.py cleanup-cache --older-than 30 --dry-run",
            details={"field": "older_than_days"},
        )
    now = time.time()
    older = older_than_days * 86400
    layout = manager.layout
    report = CleanupReport(older_than_days, dry_run)
    used = _used_urls(manager)
    candidates: list[tuple[str, Path, str]] = []
    for area, cache in (("channels", manager.cache), ("registry", manager.registry.cache)):
        if cache is not None:
            candidates += [(area, p, why) for p, why in _cache_candidates(area, cache, used, now, older, report)]
    archives = layout.cache_dir / "archives"
    for path, _st in _walk_files(archives):
        if now - _st.st_mtime > older:
            candidates.append(("archives", path, f"archive older than {older_than_days:g} days"))
    staging = [p for p in _children(layout.staging_dir) if not p.name.startswith(JOURNAL_PREFIX)]
    for p in _children(layout.staging_dir):
        if p.name.startswith(JOURNAL_PREFIX):
            report.kept.append({"area": "staging", "name": p.name, "why": "journal: the next operation rolls it back"})
    for path in _aged(staging, now, older, _mtime):
        candidates.append(("staging", path, f"staging entry older than {older_than_days:g} days"))
    for path in _aged((p for p in _children(layout.trash_dir) if p.is_dir()), now, older, _trashed_at):
        candidates.append(("trash", path, f"trashed more than {older_than_days:g} days ago"))

    def remove_all() -> None:
        for area, path, why in candidates:
            size = _size_of(path)
            if not dry_run:
                try:
                    remove_tree(path)
                except OSError as exc:
                    report.errors.append(f"{path}: {exc}")
                    continue
                if os.path.lexists(path):
                    report.errors.append(f"{path}: could not be removed")
                    continue
            report.removed.append({"area": area, "name": str(path), "bytes": size, "why": why})
        if not dry_run:
            _prune_empty(archives)

    if dry_run or not candidates:
        remove_all()
        return report
    layout.check_working_folders()  # never delete through a planted link
    with file_lock(layout.locks_dir / "operations.lock", timeout=lock_timeout, anchor=layout.manager_dir.parent):
        remove_all()
    return report


def _prune_empty(root: Path) -> None:
    """Empty sub-folders of ``root`` (the archive cache's per-pack folders) go; ``root`` stays."""
    if not root.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda t: -len(t[0])):
        if Path(dirpath) != root:
            try:
                os.rmdir(dirpath)
            except OSError:
                continue
