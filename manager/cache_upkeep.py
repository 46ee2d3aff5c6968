"""Cache upkeep: fill the caches an air-gapped box needs, report on them, clean them.

Three jobs, each a plain function of a ``Manager`` (the CLI only translates them):

- ``fill_caches``: every file asked for (the five files of each channel, the registry node
  list) through the channel cache ladder, one ``FileOutcome`` per file as it completes, and a
  verdict: ``ok`` when every file is in place (fetched, revalidated, fresh in the cache, or a
  readable ``file://`` file), ``partial`` when some are, ``failed`` when none is.
- ``cache_report``: per cache area (channels, registry, archives, the model store and partial
  model downloads, the wheelhouse) the files with their age, size, expired count and problems,
  plus the cache size and the node totals of the cached node lists. Never opens a socket.
- ``cleanup_caches``: orphaned or corrupt channel/registry cache files, expired entries no
  channel uses any more, archives, staging and trash entries older than N days; ``dry_run``
  reports the same without deleting. Deletions hold the operations lock (staging and trash
  belong to running operations).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .channel_cache import SIDECAR_SUFFIX, ChannelCache, cache_file_name
from .channels import check_allowed
from .context import CHANNEL_FILES, Manager
from .errors import ManagerError, RequestInvalid
from .fsops import file_lock
from .network import redact_url
from .operations.staging import JOURNAL_PREFIX, TRASH_MANIFEST, remove_tree
from .records import Channel

__all__ = [
    "AREAS",
    "CleanupReport",
    "FileOutcome",
    "FillReport",
    "cache_report",
    "cleanup_caches",
    "fill_caches",
    "select_channels",
]

IN_PLACE = ("fetched", "revalidated", "fresh", "local")
DEFAULT_OLDER_THAN_DAYS = 30.0
AREAS = ("channels", "registry", "archives", "staging", "trash")
DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")


# --- filling ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileOutcome:
    """One file asked for and what became of it."""

    area: str  # "channel" | "registry"
    channel: str  # channel name ("" for the registry)
    file: str  # custom-node-list.json ..., or "node list"
    url: str  # credentials hidden
    state: str  # fetched | revalidated | fresh | local | stale | failed
    bytes: int = 0
    age_seconds: float | None = None
    nodes: int | None = None  # node count of a node list
    error: dict[str, Any] | None = None  # code, message, hint of the failure (stale or failed)

    @property
    def ok(self) -> bool:
        return self.state in IN_PLACE

    def to_dict(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "channel": self.channel,
            "file": self.file,
            "url": self.url,
            "state": self.state,
            "ok": self.ok,
            "bytes": self.bytes,
            "age_seconds": self.age_seconds,
            "nodes": self.nodes,
            "error": self.error,
        }


@dataclass(frozen=True)
class FillReport:
    outcomes: tuple[FileOutcome, ...]
    refresh: str
    seconds: float

    @property
    def outcome(self) -> str:
        good = sum(1 for o in self.outcomes if o.ok)
        if self.outcomes and good == len(self.outcomes):
            return "ok"
        return "partial" if good else "failed"

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.state] = counts.get(o.state, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        good = sum(1 for o in self.outcomes if o.ok)
        return (
            f"{self.outcome}: {good} of {len(self.outcomes)} file(s) in place"
            + (f" ({parts})" if parts else "")
            + f" in {self.seconds:.1f}s"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "summary": self.summary(),
            "refresh": self.refresh,
            "files": [o.to_dict() for o in self.outcomes],
        }


def select_channels(manager: Manager, *, all_channels: bool) -> list[Channel]:
    """Every channel of channels.list (``all_channels``), else the active one only."""
    if all_channels:
        listed = list(manager.channels)
        active = _active_or_none(manager)
        if active is not None and all(active.url != c.url for c in listed):
            listed.append(active)  # a channel_url outside channels.list is still this box's channel
        return listed
    return [manager.active_channel()]


def _active_or_none(manager: Manager) -> Channel | None:
    try:
        return manager.active_channel()
    except ManagerError:
        return None


def _error_dict(err: ManagerError) -> dict[str, Any]:
    return {"code": err.code, "message": err.message, "hint": err.hint}


def _nodes_in(data: bytes) -> int | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    nodes = doc.get("custom_nodes") if isinstance(doc, dict) else None
    return len(nodes) if isinstance(nodes, list) else None


def _check_channel(manager: Manager, channel: Channel) -> None:
    """The same allow rules the catalog load applies (a remote channel off the lists is refused)."""
    check_allowed(
        channel,
        allow_remote_channel=bool(manager.config["allow_remote_channel"]) or channel.name in manager.channels.names(),
        allowed_channels=manager.config["allowed_channels"],
        http_channel_enabled=manager.config["http_channel_enabled"],
    )


async def _channel_file(manager: Manager, channel: Channel, name: str, refresh: str) -> FileOutcome:
    url = ""
    try:
        _check_channel(manager, channel)
        url = manager.channels.file_url(channel, name)
        got = await manager.cache.aget(url, refresh=refresh)
    except ManagerError as err:
        return FileOutcome(
            "channel", channel.name, name, redact_url(url or channel.url), "failed", error=_error_dict(err)
        )
    nodes = _nodes_in(got.data) if name == "custom-node-list.json" else None
    error = None
    if got.stale and got.notice is not None:
        error = {"code": got.notice.code, "message": got.notice.message, "hint": got.notice.hint}
    return FileOutcome(
        "channel", channel.name, name, redact_url(url), got.source, len(got.data), got.age_seconds, nodes, error
    )


async def _optional_file(manager: Manager, channel: Channel, refresh: str) -> None:
    """The channel's known-compromise list, when it publishes one: cached with the channel's data so
    installs check it without a request (most channels have none; its absence is not a failure)."""
    from .compromised import CHANNEL_FILE

    try:
        _check_channel(manager, channel)
        await manager.cache.aget(
            manager.channels.file_url(channel, CHANNEL_FILE), refresh=refresh, validate=lambda b: None, optional=True
        )
    except ManagerError:
        return


async def _registry_list(manager: Manager, refresh: str) -> FileOutcome:
    registry = manager.registry
    url = redact_url(registry.listing_key())
    try:
        listing = await registry.list_nodes(refresh=refresh)
    except ManagerError as err:
        return FileOutcome("registry", "", "node list", url, "failed", error=_error_dict(err))
    entry = registry.cache.peek(registry.listing_key()) if registry.cache is not None else None
    error = None
    if listing.source == "stale" and listing.notice is not None:
        n = listing.notice
        error = {"code": n.code, "message": n.message, "hint": n.hint}
    return FileOutcome(
        "registry",
        "",
        "node list",
        url,
        listing.source,
        entry.size if entry else 0,
        listing.age_seconds,
        len(listing.nodes),
        error,
    )


async def fill_caches(
    manager: Manager,
    *,
    channels: Sequence[Channel],
    registry: bool = True,
    refresh: str = "auto",
    progress: Callable[[FileOutcome], None] | None = None,
    concurrency: int = 4,
) -> FillReport:
    """Fetch every file of ``channels`` (and the registry node list) into the caches.

    ``refresh="auto"`` keeps copies younger than ``cache_ttl`` without a request; ``"force"``
    revalidates every file (``--force-refresh``); ``"never"`` only checks what is cached.
    ``progress`` is called once per file, as each completes.
    """
    started = time.monotonic()
    limiter = asyncio.Semaphore(max(1, concurrency))
    outcomes: list[FileOutcome] = []

    async def run(job: Any) -> None:
        async with limiter:
            outcome = await job
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome)

    jobs = [_channel_file(manager, ch, name, refresh) for ch in channels for name in CHANNEL_FILES]
    if registry:
        jobs.append(_registry_list(manager, refresh))
    await asyncio.gather(*(run(j) for j in jobs), *(_optional_file(manager, ch, refresh) for ch in channels))
    order = {(c.name, n): i for i, (c, n) in enumerate((c, n) for c in channels for n in CHANNEL_FILES)}
    outcomes.sort(key=lambda o: order.get((o.channel, o.file), len(order)))
    return FillReport(tuple(outcomes), refresh, time.monotonic() - started)


# --- the report ---------------------------------------------------------------------------------
def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Area:
    area: str
    path: str
    expiry: str  # what "expired" means here
    files: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    exists: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, size: int, age: float | None, *, expired: bool, **more: Any) -> None:
        self.files.append({"name": name, "bytes": size, "age_seconds": age, "expired": expired, **more})

    def to_dict(self) -> dict[str, Any]:
        ages = [f["age_seconds"] for f in self.files if f["age_seconds"] is not None]
        return {
            "area": self.area,
            "path": self.path,
            "exists": self.exists,
            "expiry": self.expiry,
            "file_count": len(self.files),
            "bytes": sum(int(f["bytes"] or 0) for f in self.files),
            "expired": sum(1 for f in self.files if f["expired"]),
            "oldest_age_seconds": max(ages) if ages else None,
            "newest_age_seconds": min(ages) if ages else None,
            "problems": list(self.problems),
            "files": self.files,
            **self.extra,
        }


def _cache_area(area: str, cache: ChannelCache, now: float) -> _Area:
    out = _Area(area, str(cache.cache_dir), f"older than cache_ttl ({cache.ttl:g} s)", exists=cache.cache_dir.is_dir())
    if not out.exists:
        return out
    for row in cache.health():
        age = row.get("age_seconds")
        state = str(row.get("state", ""))
        out.add(
            str(row.get("file", "")),
            int(row.get("size") or 0),
            age,
            expired=state == "stale",
            url=redact_url(str(row.get("url", ""))),
            state=state,
        )
        if row.get("problem"):
            out.problems.append(f"{row.get('file')}: {row['problem']}")
    return out


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


def _file_area(area: str, root: Path, now: float, older_than: float, **kw: Any) -> _Area:
    days = older_than / 86400
    out = _Area(area, str(root), f"older than {days:g} days (cleanup-cache)", exists=root.is_dir())
    keep = kw.get("keep", lambda _p: True)
    for path, st in _walk_files(root, keep):
        age = max(0.0, now - st.st_mtime)
        out.add(str(path.relative_to(root)), st.st_size, age, expired=age > older_than)
    return out


def _total_nodes(manager: Manager) -> dict[str, Any]:
    """Node counts of the cached (or local) node lists: never a request."""
    out: dict[str, Any] = {"channel": None, "channel_name": "", "registry": None}
    try:
        channel = manager.active_channel()
        out["channel_name"] = channel.name
        from .network import run_sync

        got = run_sync(manager.cache.aget(manager.channels.file_url(channel, CHANNEL_FILES[0]), refresh="never"))
        out["channel"] = _nodes_in(got.data)
    except ManagerError:
        pass
    try:
        from .network import run_sync

        listing = run_sync(manager.registry.list_nodes(refresh="never"))
        out["registry"] = len(listing.nodes)
    except ManagerError:
        pass
    return out


def _is_dist(path: Path) -> bool:
    return path.name.endswith(DIST_SUFFIXES)


def cache_report(manager: Manager, *, older_than_days: float = DEFAULT_OLDER_THAN_DAYS) -> dict[str, Any]:
    """Every cache of this box: files with age and size, expired files, problems, totals."""
    from .deps.policy import deps_policy_from_config
    from .models.store import ModelStore

    now = time.time()
    older = older_than_days * 86400
    layout = manager.layout
    areas = [_cache_area("channels", manager.cache, now)]
    if manager.registry.cache is not None:
        areas.append(_cache_area("registry", manager.registry.cache, now))
    areas.append(_file_area("archives", layout.cache_dir / "archives", now, older))
    for root in ModelStore.from_manager(manager).local_roots:
        assert root.path is not None
        store = _file_area("models_store", root.path, now, float("inf"))
        store.expiry = "never (a store is kept as it is)"
        areas.append(store)
    partials = _file_area(
        "model_partials", layout.models_dir, now, older, keep=lambda p: p.name.endswith((".part", ".part.json"))
    )
    areas.append(partials)
    for folder in deps_policy_from_config(manager.config, layout).wheelhouse_dirs:
        wheels = _file_area("wheelhouse", folder, now, float("inf"), keep=_is_dist)
        wheels.expiry = "never (wheels do not expire)"
        wheels.extra["projects"] = len(
            {f["name"].split("-", 1)[0].lower() for f in wheels.files if "/" not in f["name"]}
        )
        areas.append(wheels)
    shown = [a.to_dict() for a in areas]
    return {
        "timestamp": _iso(now),
        "cache_size_bytes": sum(a["bytes"] for a in shown),
        "file_count": sum(a["file_count"] for a in shown),
        "expired_files": sum(a["expired"] for a in shown),
        "problems": sum(len(a["problems"]) for a in shown),
        "total_nodes": _total_nodes(manager),
        "network_mode": str(manager.config["network_mode"]),
        "areas": shown,
    }


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
