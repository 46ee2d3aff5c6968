"""Cache upkeep: fill the caches an air-gapped box needs, report on them, clean them.

Three jobs, each a plain function of a ``Manager`` (the CLI only translates them):

- ``fill_caches``: every file asked for (the five files of each channel, the registry node
  list) through the channel cache ladder, one ``FileOutcome`` per file as it completes, and a
  verdict: ``ok`` when every file is in place (fetched, revalidated, fresh in the cache, or a
  readable ``file://`` file), ``partial`` when some are, ``failed`` when none is.
- ``cache_report``: per cache area (channels, registry, archives, the model store and partial
  model downloads, the wheelhouse) the files with their age, size, expired count and problems,
  plus the cache size and the node totals of the cached node lists. Never opens a socket.
- ``cleanup_caches`` (in ``manager/cache_cleanup.py``, re-exported here): orphaned or corrupt
  channel/registry cache files, expired entries no channel uses any more, archives, staging and
  trash entries older than N days; ``dry_run`` reports the same without deleting. Deletions hold
  the operations lock (staging and trash belong to running operations).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache_cleanup import AREAS, CleanupReport, _active_or_none, _walk_files, cleanup_caches  # cleanup lives there
from .cache_cleanup import DEFAULT_OLDER_THAN_DAYS as DEFAULT_OLDER_THAN_DAYS
from .channel_cache import ChannelCache
from .channels import check_allowed
from .context import CHANNEL_FILES, Manager
from .errors import ManagerError
from .network import redact_url
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
