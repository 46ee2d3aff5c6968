"""Install one model file: store first, then its URL, through the gate; resumable; checked.

The file is streamed by ``NetworkGate.download`` to ``<target>.part`` in the target folder
(same filesystem, so the final rename is atomic), resumed with HTTP Range where the server
allows it, checked for size and sha256, and only then renamed to its final name. A failed or
cancelled download never leaves a file under the final name; the ``.part`` stays for the
next attempt unless it is proven wrong (bad digest, a different source).

Sources, in order: a local store hit; in private and public mode the http(s) store names;
then the model's own URL (mirror map applied by the gate). Offline, a store miss fails at
once with ``model_not_in_store`` before anything is opened.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import InvalidName, LockBusy, ManagerError, NetworkBlocked
from ..fetch import adopt_orphan_part
from ..fsops import file_lock, refuse_link_file
from ..network import NetworkGate, redact_url
from ..records import ModelEntry
from .catalog import HF_FILENAME, model_id, source_problem
from .folders import ModelFolders, Placement, load_model_folders, place
from .store import ModelStore, StoreSource
from .verify import HashCache, normalise_sha

PROGRESS_INTERVAL = 0.25  # seconds between progress reports (each chunk would flood the panel)


@dataclass(frozen=True)
class ModelProgress:
    """One progress report: bytes so far, total when known, rate over this attempt."""

    done: int
    total: int | None
    rate: float  # bytes per second since this source started
    source: str  # "store" | "url"

    @property
    def percent(self) -> float | None:
        return (100.0 * self.done / self.total) if self.total else None

    @property
    def line(self) -> str:
        of = f" / {human_bytes(self.total)}" if self.total else ""
        return f"{human_bytes(self.done)}{of} at {human_bytes(self.rate)}/s ({self.source})"


@dataclass(frozen=True)
class InstallResult:
    """What ``install`` did. ``source``: existing | store | url."""

    id: str
    name: str
    folder: str
    relpath: str
    path: str
    source: str
    url: str = ""  # redacted
    size: int = 0
    transferred: int = 0  # bytes received in this run (less than size after a resume)
    resumed_from: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    sha256: str = ""  # set when the digest was checked

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class _Meter:
    """Per-chunk callback for the gate: cancellation checked every chunk, reports throttled.

    ``kept`` is the partial file's size before the attempt; the first report tells whether the
    server resumed after it (206) or sent the whole file again (200)."""

    def __init__(
        self,
        source: str,
        kept: int,
        report: Callable[[ModelProgress], None] | None,
        check_cancelled: Callable[[], None] | None,
    ) -> None:
        self.source, self.kept = source, kept
        self.report, self.check = report, check_cancelled
        self.started = time.monotonic()
        self.last = 0.0
        self.offset: int | None = None  # bytes that were not transferred in this attempt
        self.done = kept

    @property
    def resumed_from(self) -> int:
        return self.kept if self.offset is None else self.offset

    def rate(self, now: float | None = None) -> float:
        elapsed = (now or time.monotonic()) - self.started
        return (self.done - self.resumed_from) / elapsed if elapsed > 0 else 0.0

    def __call__(self, done: int, total: int | None) -> None:
        if self.offset is None:  # a chunk is never empty: done > kept only after a resume
            self.offset = self.kept if done > self.kept else 0
        self.done = done
        if self.check is not None:
            self.check()
        if self.report is None:
            return
        now = time.monotonic()
        if now - self.last >= PROGRESS_INTERVAL or (total is not None and done >= total):
            self.last = now
            self.report(ModelProgress(done, total, self.rate(now), self.source))


def _part_files(dest: Path) -> tuple[Path, Path]:
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")


def _refuse_linked_parts(dest: Path) -> None:
    """The partial download, its metadata and its lock are files we write: a symbolic link planted
    under one of their names is ``WorkingFolderLink`` before anything is opened (the download would
    append to the link's target). The model folders themselves may be links (the user's disks)."""
    part, meta = _part_files(dest)
    for path, what in ((part, "partial download"), (meta, "partial download metadata")):
        refuse_link_file(path, what=what)
    refuse_link_file(dest.with_name("." + dest.name + ".lock"), what="download lock")


def _drop_foreign_part(dest: Path, url: str) -> int:
    """Keep a partial download only if it came from ``url``; returns the bytes kept. A partial file
    without its metadata sidecar is kept too: the download asks the server for the file's size and
    validators (HEAD) and resumes with a range request only when they allow it (``fetch``)."""
    part, meta = _part_files(dest)
    if not part.exists():
        return 0
    if not meta.exists():
        return part.stat().st_size
    try:
        origin = json.loads(meta.read_text("utf-8")).get("url")
    except (OSError, ValueError, AttributeError):
        origin = None
    if origin != url:  # another source's bytes must never be continued
        for p in (part, meta):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        return 0
    return part.stat().st_size


async def install_entry(
    entry: ModelEntry,
    *,
    gate: NetworkGate,
    folders: ModelFolders,
    store: ModelStore | None = None,
    sha256: str | None = None,
    size: int | None = None,
    force: bool = False,
    hash_cache: HashCache | None = None,
    progress: Callable[[ModelProgress], None] | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> InstallResult:
    """Install ``entry`` into its folder. ``sha256``/``size`` are exact expectations (a snapshot's);
    the catalog's approximate size is never enforced. An existing file is kept unless ``force``.

    Raises ``PathEscape``/``ModelPathInvalid``/``ModelFolderUnknown`` before any I/O,
    ``ModelSourceUnsupported``, ``ModelNotInStore`` (offline miss), or the gate's errors
    (``NetworkBlocked``, ``HttpStatusError``, ``DownloadIncomplete``, ``ChecksumMismatch``, ...).
    """
    store = store or ModelStore()
    problem = source_problem(entry)
    if problem is not None and entry.filename == HF_FILENAME:
        raise problem  # a repository snapshot: no single file to fetch
    placement = place(entry, folders)
    mid = model_id(entry)
    want_sha = normalise_sha(sha256)
    if sha256 and not want_sha:
        raise InvalidName(
            f"{sha256!r} is not a sha256 digest", hint="Give 64 hexadecimal digits.", details={"sha256": sha256}
        )
    result = partial(InstallResult, id=mid, name=entry.name, folder=placement.folder, relpath=placement.relpath)
    if not force:
        for existing in placement.candidates():
            if existing.is_file():
                return result(path=str(existing), source="existing", size=existing.stat().st_size)
    sources: list[tuple[str, str]] = [
        ("store", s.url) for s in store.sources(placement, want_sha, remote=not gate.offline)
    ]
    if gate.offline:
        if not sources:
            raise store.miss(placement, want_sha)
    elif problem is None:
        sources.append(("url", entry.url))
    if not sources:
        raise problem or store.miss(placement, want_sha)
    _refuse_linked_parts(placement.path)  # before any folder or file is made
    existing_parent = next(p for p in (placement.path.parent, *placement.path.parent.parents) if p.exists())
    try:
        return await _fetch_first(
            sources,
            placement,
            result,
            gate=gate,
            sha256=want_sha,
            size=size,
            hash_cache=hash_cache,
            progress=progress,
            check_cancelled=check_cancelled,
        )
    except BaseException:
        _prune_empty(placement.path.parent, existing_parent)  # folders made for nothing go again
        raise


def _prune_empty(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``stop`` while they are empty."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()  # only succeeds on an empty folder: a .part keeps it
        except OSError:
            return
        folder = folder.parent


async def _fetch_first(
    sources: list[tuple[str, str]],
    placement: Placement,
    result: partial[InstallResult],
    *,
    gate: NetworkGate,
    sha256: str,
    size: int | None,
    hash_cache: HashCache | None,
    progress: Callable[[ModelProgress], None] | None,
    check_cancelled: Callable[[], None] | None,
) -> InstallResult:
    dest = placement.path
    attempts: list[dict[str, Any]] = []
    last: ManagerError | None = None
    for kind, url in sources:
        try:
            final = gate.decide(url, "model")
        except NetworkBlocked as exc:
            attempts.append({"source": kind, "url": redact_url(url), "code": exc.code, "message": exc.message})
            last = exc
            continue
        _refuse_linked_parts(dest)
        with file_lock(dest.with_name("." + dest.name + ".lock"), timeout=0):  # not under a live download
            kept = _drop_foreign_part(dest, final)
            if kept and not _part_files(dest)[1].exists():  # no sidecar: the server's size and validators decide
                kept = await adopt_orphan_part(gate, final, dest, purpose="model", expected_size=size)
        meter = _Meter(kind, kept, progress, check_cancelled)
        try:
            await gate.download(
                url, dest, purpose="model", expected_size=size, sha256=sha256 or None, resume=True, progress=meter
            )
        except ManagerError as exc:
            attempts.append({"source": kind, "url": redact_url(final), "code": exc.code, "message": exc.message})
            last = exc
            if kind == "store" and not isinstance(exc, LockBusy):
                continue  # a store that lacks or garbles the file: try the next source
            exc.details.setdefault("attempts", attempts)
            raise
        seconds = time.monotonic() - meter.started
        final_size = dest.stat().st_size
        if hash_cache is not None and sha256:
            hash_cache.remember(dest, sha256)
            hash_cache.save()
        resumed = min(meter.resumed_from, final_size)
        transferred = final_size - resumed
        return result(
            path=str(dest),
            source=kind,
            url=redact_url(final),
            size=final_size,
            transferred=transferred,
            resumed_from=resumed,
            seconds=round(seconds, 3),
            rate=round(transferred / seconds, 1) if seconds > 0 else 0.0,
            sha256=sha256,
        )
    assert last is not None
    last.details.setdefault("attempts", attempts)
    raise last


async def install_model(manager: Any, entry: ModelEntry, **kw: Any) -> InstallResult:
    """``install_entry`` with ``manager``'s gate, folders, model store and hash cache."""
    kw.setdefault("folders", load_model_folders(manager.host))
    kw.setdefault("store", ModelStore.from_manager(manager))
    kw.setdefault("hash_cache", HashCache.for_manager(manager))
    return await install_entry(entry, gate=manager.gate, **kw)


__all__ = ["InstallResult", "ModelProgress", "StoreSource", "install_entry", "install_model", "human_bytes"]
