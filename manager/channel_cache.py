"""On-disk cache of remote channel files, with a metadata sidecar per file.

Layout (``cache_dir``): ``<sha256(url)[:16]>_<basename>`` holds the body exactly as fetched,
``<same>.meta.json`` holds ``url, etag, last_modified, fetched_at, sha256, size``. Both are written
atomically; the body is only trusted when its sidecar vouches for it (size, sha256, JSON).

The ladder for a remote URL: fresh cache (younger than ``ttl``, no request) -> network
(conditional request when a copy exists; 304 keeps the body) -> stale copy, flagged with its age
-> a coded error with a hint. Offline mode never asks the network: any cached copy is served.
Nothing here is global: the owner passes a gate, a folder and (in tests) a clock.

The cache folder is one of our working folders: it, and every folder between the user folder and
it, must be real (``working_folder_link`` before any read or write); a body, sidecar or staged
file that is a link is never read through (it counts as corrupt and is replaced, not followed).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import (
    CacheCorrupt,
    CacheMissing,
    ChannelDataInvalid,
    DownloadIncomplete,
    HttpStatusError,
    ManagerError,
    NetworkBlocked,
    NetworkUnreachable,
    ResponseTooLarge,
)
from .fsops import atomic_write_bytes, atomic_write_json, file_lock, refuse_links
from .layout import data_anchor_for
from .network import NetworkGate, redact_url
from .records import CacheEntry, Notice

__all__ = ["CachedFile", "ChannelCache", "cache_file_name", "format_age"]

SIDECAR_SUFFIX = ".meta.json"
REFRESH_MODES = ("auto", "force", "never")
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_FETCH_ERRORS = (
    NetworkUnreachable,
    HttpStatusError,
    DownloadIncomplete,
    ResponseTooLarge,
    NetworkBlocked,
    ChannelDataInvalid,
)
# The command that fills a cache (it exists: tests run it with --help), and what to carry over.
REFRESH_COMMAND = "cm-cli.py update-cache"
_REFRESH_HINT = (
    f"On a machine with network run `{REFRESH_COMMAND}` and copy its user/__manager/cache folder "
    "to the same place here."
)


@dataclass(frozen=True)
class CachedFile:
    """What ``ChannelCache.aget`` hands back: the bytes and how fresh they are."""

    url: str
    data: bytes
    entry: CacheEntry | None
    source: str  # fresh | revalidated | fetched | stale | local
    age_seconds: float
    notice: Notice | None = None

    @property
    def stale(self) -> bool:
        return self.source == "stale"

    def json(self) -> Any:
        return json.loads(self.data)


class _BadCache(Exception):
    """A cached body that must not be served (the reason is reported, never the bytes)."""


def format_age(seconds: float) -> str:
    """``95000`` -> ``'1 day 2 h'``: short, for messages."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    days = s // 86400
    return f"{days} days {s % 86400 // 3600} h"


def cache_file_name(url: str) -> str:
    """Stable, readable body name: a hash of the full URL plus its (sanitised) basename."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    base = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base)[:80].lstrip(".") or "index"
    return f"{digest}_{base}"


def _is_json_url(url: str) -> bool:
    return urllib.parse.urlsplit(url).path.lower().endswith(".json")


def _json_check(data: bytes) -> None:
    json.loads(data)


class ChannelCache:
    """Fetches channel files through the gate and keeps the last good copy of each."""

    def __init__(
        self,
        cache_dir: Path,
        gate: NetworkGate,
        *,
        ttl: float = 86400.0,
        clock: Callable[[], float] = time.time,
        max_bytes: int = DEFAULT_MAX_BYTES,
        logger: logging.Logger | None = None,
        anchor: Path | None = None,
    ):
        self.cache_dir = Path(cache_dir)
        self.anchor = Path(anchor) if anchor is not None else data_anchor_for(self.cache_dir)
        self.gate = gate
        self.ttl = float(ttl)
        self.clock = clock
        self.max_bytes = max_bytes
        self.log = logger or logging.getLogger("offline_manager.channel_cache")

    # -- paths and sidecars -----------------------------------------------------------
    def paths(self, url: str) -> tuple[Path, Path]:
        """(body, sidecar) paths for ``url``; neither need exist."""
        body = self.cache_dir / cache_file_name(url)
        return body, body.with_name(body.name + SIDECAR_SUFFIX)

    def check_folder(self) -> None:
        """``WorkingFolderLink`` when the cache folder or a folder on its way is a symbolic link."""
        refuse_links(self.cache_dir, self.anchor, what="channel cache folder")

    def _lock(self) -> Any:
        self.check_folder()  # before the lock file (and any write) is created
        return file_lock(self.cache_dir / ".cache.lock", timeout=10.0, anchor=self.anchor)

    @staticmethod
    def _parse_sidecar(sidecar: Path, body: Path) -> CacheEntry:
        try:
            raw = json.loads(sidecar.read_text("utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            return CacheEntry(
                url=str(raw["url"]),
                path=str(body),
                fetched_at=float(raw["fetched_at"]),
                sha256=str(raw["sha256"]),
                size=int(raw["size"]),
                etag=str(raw.get("etag") or ""),
                last_modified=str(raw.get("last_modified") or ""),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _BadCache(f"metadata sidecar {sidecar.name} is unreadable ({exc})") from exc

    def _load(self, url: str, check: Callable[[bytes], None] | None) -> tuple[CacheEntry, bytes] | None:
        """The verified cached copy, ``None`` when there is none; ``_BadCache`` when it is corrupt."""
        self.check_folder()
        body, sidecar = self.paths(url)
        for path in (body, sidecar):
            if path.is_symlink():
                raise _BadCache(f"{path.name} is a symbolic link, not a copy this cache wrote")
        if not sidecar.exists() and not body.exists():
            return None  # (a stray staged body is not a copy)
        if not sidecar.exists():
            raise _BadCache(f"cached body {body.name} has no metadata sidecar")
        entry = self._parse_sidecar(sidecar, body)
        if entry.url != url:
            raise _BadCache(f"sidecar {sidecar.name} describes {entry.url!r}, not this URL")
        try:
            data = body.read_bytes()
        except OSError as exc:
            rolled = self._roll_forward(body, entry)  # a first write killed after its commit
            if rolled is None:
                raise _BadCache(f"cached body {body.name} is unreadable ({exc})") from exc
            data = rolled
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            recovered = self._roll_forward(body, entry)
            if recovered is not None:
                data = recovered
            elif len(data) != entry.size:
                raise _BadCache(f"cached body {body.name} has {len(data)} bytes, its sidecar says {entry.size}")
            else:
                raise _BadCache(f"cached body {body.name} does not match its sha256")
        if check is not None:
            try:
                check(data)
            except Exception as exc:  # any rejection by the validator means: do not serve it
                raise _BadCache(f"cached body {body.name} fails validation ({exc})") from exc
        return entry, data

    def _store(self, url: str, data: bytes, *, etag: str, last_modified: str, fetched_at: float) -> CacheEntry:
        body, sidecar = self.paths(url)
        entry = CacheEntry(
            url=url,
            path=str(body),
            fetched_at=fetched_at,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            etag=etag,
            last_modified=last_modified,
        )
        staged = self._staged_path(body)
        with self._lock():
            # The sidecar is the commit point: the new body waits under a hidden name until the
            # sidecar describing it is on disk, then takes the real name. A kill before the
            # commit leaves the old pair intact; a kill after it is rolled forward on read.
            atomic_write_bytes(staged, data)
            atomic_write_json(sidecar, self._sidecar_dict(entry))
            os.replace(staged, body)
        return entry

    @staticmethod
    def _staged_path(body: Path) -> Path:
        return body.with_name(f".{body.name}.new")  # hidden: never listed as a cache file

    def _roll_forward(self, body: Path, entry: CacheEntry) -> bytes | None:
        """Finish a write killed between its sidecar commit and the body rename; None if none."""
        staged = self._staged_path(body)
        if staged.is_symlink():
            return None
        try:
            data = staged.read_bytes()
        except OSError:
            return None
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            return None
        os.replace(staged, body)
        self.log.warning("channel cache: finished the interrupted write of %s", body.name)
        return data

    def _touch(self, entry: CacheEntry, *, fetched_at: float, etag: str, last_modified: str) -> CacheEntry:
        new = CacheEntry(
            url=entry.url,
            path=entry.path,
            fetched_at=fetched_at,
            sha256=entry.sha256,
            size=entry.size,
            etag=etag or entry.etag,
            last_modified=last_modified or entry.last_modified,
        )
        _, sidecar = self.paths(entry.url)
        with self._lock():
            atomic_write_json(sidecar, self._sidecar_dict(new))
        return new

    @staticmethod
    def _sidecar_dict(entry: CacheEntry) -> dict[str, Any]:
        return {
            "url": entry.url,
            "etag": entry.etag,
            "last_modified": entry.last_modified,
            "fetched_at": entry.fetched_at,
            "sha256": entry.sha256,
            "size": entry.size,
            "body": Path(entry.path).name,
        }

    # -- the ladder -----------------------------------------------------------------------
    async def aget(
        self,
        url: str,
        *,
        refresh: str = "auto",
        validate: Callable[[bytes], None] | None = None,
        optional: bool = False,
    ) -> CachedFile:
        """Return the file at ``url`` following the cache ladder (see the module docstring).

        ``validate(body)`` raises to reject a body; ``*.json`` URLs are JSON-checked by default.
        ``optional``: a file the source may not publish; a failed fetch is the caller's to report,
        not a warning in the log (the known-compromise list of a channel that has none).
        Raises ``CacheMissing``, ``CacheCorrupt`` or the network error (with its hint) when no
        usable copy exists.
        """
        if refresh not in REFRESH_MODES:
            raise ValueError(f"refresh must be one of {REFRESH_MODES}, not {refresh!r}")
        check = validate if validate is not None else (_json_check if _is_json_url(url) else None)
        if self.gate.is_local(url):
            return await self._local(url, url, check)
        blocked: ManagerError | None = None
        try:
            final = self.gate.decide(url, "channel")
            if self.gate.is_local(final):  # mirror_map points this URL at a local folder
                return await self._local(url, final, check)
        except NetworkBlocked as exc:  # offline or private: decided before any socket
            blocked = exc

        corrupt = ""
        try:
            cached = await asyncio.to_thread(self._load, url, check)
        except _BadCache as exc:
            corrupt, cached = str(exc), None
            self.log.warning("channel cache: %s (%s); not serving it", corrupt, redact_url(url))
        offline = self.gate.offline
        if cached is not None:
            age = max(0.0, self.clock() - cached[0].fetched_at)
            if offline or refresh == "never" or (refresh == "auto" and age < self.ttl):
                return self._from_cache(url, cached, age, offline=offline)
        elif offline or refresh == "never":
            raise self._no_copy(url, corrupt, blocked)

        error: ManagerError | None = blocked
        if error is None:
            try:
                result = await self._fetch(url, cached, check)
            except _FETCH_ERRORS as exc:
                error = exc
            else:
                if corrupt:
                    result = _with_notice(
                        result,
                        Notice(
                            "warning",
                            CacheCorrupt.code,
                            f"the cached copy was corrupt and has been refetched: {corrupt}",
                            details={"url": redact_url(url)},
                        ),
                    )
                return result
        (self.log.debug if optional else self.log.warning)("channel fetch failed for %s: %s", redact_url(url), error)
        if cached is not None:
            age = max(0.0, self.clock() - cached[0].fetched_at)
            return self._stale(url, cached, age, error)
        if corrupt:
            raise CacheCorrupt(
                f"the cached copy of {redact_url(url)} is corrupt ({corrupt}) and refetching failed: {error.message}",
                hint=error.hint or _REFRESH_HINT,
                details={"url": redact_url(url), "cache_dir": str(self.cache_dir)},
            )
        raise error

    async def _fetch(
        self, url: str, cached: tuple[CacheEntry, bytes] | None, check: Callable[[bytes], None] | None
    ) -> CachedFile:
        headers: dict[str, str] = {}
        if cached is not None:
            if cached[0].etag:
                headers["If-None-Match"] = cached[0].etag
            if cached[0].last_modified:
                headers["If-Modified-Since"] = cached[0].last_modified
        resp = await self.gate.get(url, purpose="channel", headers=headers, max_bytes=self.max_bytes)
        now = self.clock()
        etag, last_modified = resp.headers.get("etag", ""), resp.headers.get("last-modified", "")
        if resp.status == 304:
            if cached is None:
                raise HttpStatusError(
                    f"{redact_url(url)} answered 304 to an unconditional request",
                    hint="The server or proxy is misconfigured; retry later.",
                    details={"url": redact_url(url), "status": 304},
                )
            entry = await asyncio.to_thread(
                self._touch, cached[0], fetched_at=now, etag=etag, last_modified=last_modified
            )
            return CachedFile(url, cached[1], entry, "revalidated", 0.0)
        if check is not None:
            try:
                check(resp.body)
            except Exception as exc:  # the validator's own exception type is not ours to know
                raise ChannelDataInvalid(
                    f"{redact_url(url)} sent a body that is not valid ({exc}); the last good copy is kept",
                    hint="The channel or mirror is serving an error page or a broken file; check the "
                    "channel URL in channels.list or the mirror.",
                    details={"url": redact_url(url)},
                ) from exc
        entry = await asyncio.to_thread(
            self._store, url, resp.body, etag=etag, last_modified=last_modified, fetched_at=now
        )
        return CachedFile(url, resp.body, entry, "fetched", 0.0)

    async def _local(self, url: str, final: str, check: Callable[[bytes], None] | None) -> CachedFile:
        resp = await self.gate.get(final, purpose="channel", max_bytes=self.max_bytes)
        if check is not None:
            try:
                check(resp.body)
            except Exception as exc:  # reported with the file's path, never served
                raise ChannelDataInvalid(
                    f"local channel file {final} is not valid ({exc})",
                    hint="Fix or replace the file (copy the channel folder again from where it was made).",
                    details={"url": final},
                ) from exc
        try:
            age = max(0.0, self.clock() - NetworkGate.local_path(final).stat().st_mtime)
        except OSError:
            age = 0.0
        return CachedFile(url, resp.body, None, "local", age)

    def served_copy(self, url: str) -> tuple[CacheEntry, str, float, Notice | None] | None:
        """What ``aget(url)`` (refresh "auto") would serve from this cache without asking the
        network: (entry, source, age, notice), read from the sidecar alone (the body is neither
        read nor hashed). None when ``aget`` would do more: a local URL, a network request, no
        copy. The caller vouches for the body (``manager/list_cache.py`` keys on its stat)."""
        if self.gate.is_local(url):
            return None
        try:
            final = self.gate.decide(url, "channel")
        except NetworkBlocked:
            final = url
        if self.gate.is_local(final):
            return None
        entry = self.peek(url)
        if entry is None or entry.url != url:
            return None
        age = max(0.0, self.clock() - entry.fetched_at)
        offline = self.gate.offline
        if not offline and age >= self.ttl:
            return None
        notice = None if age < self.ttl else self._stale_notice(url, entry, age, offline=offline)
        return entry, ("fresh" if notice is None else "stale"), age, notice

    def _from_cache(self, url: str, cached: tuple[CacheEntry, bytes], age: float, *, offline: bool) -> CachedFile:
        entry, data = cached
        if age < self.ttl:
            return CachedFile(url, data, entry, "fresh", age)
        return CachedFile(url, data, entry, "stale", age, self._stale_notice(url, entry, age, offline=offline))

    def _stale_notice(self, url: str, entry: CacheEntry, age: float, *, offline: bool) -> Notice:
        why = "offline mode" if offline else "refresh=never"
        return Notice(
            "info",
            "cache_stale",
            f"{why}: using the cached copy of {_name(url)} fetched {format_age(age)} ago",
            hint=(
                "Set network_mode = public (or private with a mirror) and run `cm-cli.py update-cache`, or copy "
                "a newer user/__manager/cache folder from a machine that ran `cm-cli.py --cache-only`."
                if offline
                else "Refresh the channel to get current data."
            ),
            details={"url": redact_url(url), "age_seconds": age, "fetched_at": entry.fetched_at},
        )

    def _stale(self, url: str, cached: tuple[CacheEntry, bytes], age: float, error: ManagerError) -> CachedFile:
        entry, data = cached
        notice = Notice(
            "warning",
            "cache_stale",
            f"using the cached copy of {_name(url)} from {format_age(age)} ago: {error.message}",
            hint=error.hint or _REFRESH_HINT,
            details={"url": redact_url(url), "age_seconds": age, "fetched_at": entry.fetched_at, "reason": error.code},
        )
        return CachedFile(url, data, entry, "stale", age, notice)

    def _no_copy(self, url: str, corrupt: str, blocked: ManagerError | None) -> ManagerError:
        shown = redact_url(url)
        details = {"url": shown, "cache_dir": str(self.cache_dir), "command": REFRESH_COMMAND}
        if corrupt:
            return CacheCorrupt(
                f"the cached copy of {shown} is corrupt ({corrupt})",
                hint=("Refresh it with network_mode = public/private, or " if not self.gate.offline else "")
                + _REFRESH_HINT,
                details=details,
            )
        if self.gate.offline:
            return CacheMissing(
                f"offline mode and no cached copy of {shown}",
                hint=f"network_mode is 'offline' and nothing was cached yet: on a machine with "
                f"network run `{REFRESH_COMMAND}` and copy its user/__manager/cache folder to "
                f"{self.cache_dir.parent} here, or select a file:// channel from channels.list.",
                details=details,
            )
        return CacheMissing(
            f"no cached copy of {shown} (refresh=never)",
            hint="Refresh the channel (mode=remote, or cache with network_mode public/private). " + _REFRESH_HINT,
            details=details,
        )

    # -- import and inspection ---------------------------------------------------------
    def put(
        self, url: str, data: bytes, *, etag: str = "", last_modified: str = "", fetched_at: float | None = None
    ) -> CacheEntry:
        """Store a body fetched elsewhere (a copied cache)."""
        return self._store(
            url,
            data,
            etag=etag,
            last_modified=last_modified,
            fetched_at=self.clock() if fetched_at is None else fetched_at,
        )

    def peek(self, url: str) -> CacheEntry | None:
        """The sidecar of ``url`` as recorded (not verified), or ``None``."""
        body, sidecar = self.paths(url)
        if not sidecar.exists():
            return None
        try:
            entry = self._parse_sidecar(sidecar, body)
        except _BadCache:
            return None
        return entry if entry.url == url else None

    def entries(self) -> list[CacheEntry]:
        """Every readable sidecar in the cache folder, sorted by URL."""
        out = []
        for sidecar in sorted(self.cache_dir.glob("*" + SIDECAR_SUFFIX)):
            try:
                out.append(self._parse_sidecar(sidecar, sidecar.with_name(sidecar.name[: -len(SIDECAR_SUFFIX)])))
            except _BadCache as exc:
                self.log.warning("channel cache: %s", exc)
        return sorted(out, key=lambda e: e.url)

    def health(self) -> list[dict[str, Any]]:
        """One row per cached file: url, age, fresh/stale, sha ok, size, problem (orphans included)."""
        rows: list[dict[str, Any]] = []
        now = self.clock()
        seen: set[str] = set()
        for sidecar in sorted(self.cache_dir.glob("*" + SIDECAR_SUFFIX)):
            body = sidecar.with_name(sidecar.name[: -len(SIDECAR_SUFFIX)])
            seen.add(body.name)
            try:
                entry = self._parse_sidecar(sidecar, body)
            except _BadCache as exc:
                rows.append(
                    {
                        "url": "",
                        "file": body.name,
                        "age_seconds": None,
                        "state": "corrupt",
                        "sha_ok": False,
                        "size": None,
                        "problem": str(exc),
                    }
                )
                continue
            age = max(0.0, now - entry.fetched_at)
            problem = ""
            if cache_file_name(entry.url) != body.name:
                problem = f"sidecar {sidecar.name} describes {entry.url!r}, which belongs to another file"
            else:
                try:
                    self._load(entry.url, _json_check if _is_json_url(entry.url) else None)
                except _BadCache as exc:
                    problem = str(exc)
            rows.append(
                {
                    "url": entry.url,
                    "file": body.name,
                    "age_seconds": age,
                    "state": "corrupt" if problem else ("fresh" if age < self.ttl else "stale"),
                    "sha_ok": not problem,
                    "size": entry.size,
                    "problem": problem,
                }
            )
        if self.cache_dir.is_dir():
            for body in sorted(self.cache_dir.iterdir()):
                if (
                    body.is_file()
                    and not body.name.startswith(".")
                    and not body.name.endswith(SIDECAR_SUFFIX)
                    and body.name not in seen
                ):
                    rows.append(
                        {
                            "url": "",
                            "file": body.name,
                            "age_seconds": None,
                            "state": "corrupt",
                            "sha_ok": False,
                            "size": body.stat().st_size,
                            "problem": "cached body has no metadata sidecar",
                        }
                    )
        return rows


def _name(url: str) -> str:
    return urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1] or url


def _with_notice(result: CachedFile, notice: Notice) -> CachedFile:
    return CachedFile(result.url, result.data, result.entry, result.source, result.age_seconds, notice)
