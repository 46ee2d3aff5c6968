"""The known-compromise list: pack ids, repository URLs and file sha256 that must not be installed.

Two sources, merged (docs/security.md):

- the active channel's optional ``compromised-list.json`` (read through the channel cache, like
  the other channel files; absent or unreadable: no entries, with a notice)::

      {"version": 1,
       "entries": [{"id": "evil-pack", "reason": "...", "reference": "https://..."},
                   {"repository": "https://github.com/evil/pack", "reason": "..."},
                   {"sha256": "<64 hex digits>", "reason": "..."}]}

  an entry holds at least one of ``id``, ``repository``, ``sha256`` (each one matches on its own);
- the admin's ``<user>/__manager/compromised.list``: one entry per line, ``id:<pack id>``,
  ``repo:<url>`` or ``sha256:<hex>``, an optional ``# reason`` after it; ``#`` starts a comment
  line. A line that does not parse is ``compromise_list_invalid`` and installs stay refused
  until it is fixed (the admin's own file fails closed).

``check_source`` refuses a pack by id or repository before anything is fetched,
``check_files`` refuses one whose staged files match a hash, both with ``pack_compromised``
naming the entry and the list it came from. ``scan_installed`` lists installed packs that match
(the start-up alert): it warns, it never deletes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog_parse import normalize_url
from .errors import CompromiseListInvalid, ManagerError, PackCompromised
from .inspect_files import inspect_tree
from .network import redact_url, run_sync
from .records import Notice

if TYPE_CHECKING:  # pragma: no cover
    from .context import Manager
    from .layout import Layout

__all__ = [
    "CHANNEL_FILE",
    "LOCAL_FILE",
    "CompromiseEntry",
    "CompromiseList",
    "parse_channel_list",
    "parse_local_list",
    "local_list_path",
    "load",
    "aload",
    "check_source",
    "check_files",
    "scan_installed",
]

CHANNEL_FILE = "compromised-list.json"
LOCAL_FILE = "compromised.list"
MAX_BYTES = 8 << 20
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_KINDS = {"id": "id", "repo": "repository", "repository": "repository", "sha256": "sha256"}
log = logging.getLogger("offline_manager.compromised")


@dataclass(frozen=True)
class CompromiseEntry:
    """One listed item: ``kind`` is id | repository | sha256; ``value`` as written."""

    kind: str
    value: str
    reason: str
    origin: str  # the list it came from: a channel file URL or the local file path
    line: int = 0  # local file: its line; channel file: the entry's index + 1

    @property
    def key(self) -> str:
        return normalize_url(self.value) if self.kind == "repository" else self.value.lower()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "reason": self.reason, "list": self.origin, "line": self.line}


@dataclass(frozen=True)
class CompromiseList:
    entries: tuple[CompromiseEntry, ...] = ()
    notices: tuple[Notice, ...] = ()
    sources: tuple[str, ...] = ()
    _index: dict[tuple[str, str], CompromiseEntry] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for e in self.entries:
            self._index.setdefault((e.kind, e.key), e)

    @property
    def has_hashes(self) -> bool:
        return any(e.kind == "sha256" for e in self.entries)

    def match_pack(self, ids: Iterable[str], urls: Iterable[str]) -> CompromiseEntry | None:
        for ident in ids:
            if ident and (hit := self._index.get(("id", ident.lower()))):
                return hit
        for url in urls:
            if url and (hit := self._index.get(("repository", normalize_url(url)))):
                return hit
        return None

    def match_hashes(self, hashes: Mapping[str, str]) -> tuple[CompromiseEntry, str] | None:
        for rel, digest in sorted(hashes.items()):
            hit = self._index.get(("sha256", digest.lower()))
            if hit is not None:
                return hit, rel
        return None


def _entry(kind: str, value: str, reason: str, origin: str, line: int) -> CompromiseEntry:
    value = value.strip()
    if kind == "sha256" and not _SHA_RE.match(value.lower()):
        raise ValueError(f"sha256 {value[:80]!r} is not 64 hex digits")
    if not value or len(value) > 2048 or any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{kind} value {value[:80]!r} is empty, too long or has control characters")
    return CompromiseEntry(kind, value, reason.strip()[:500], origin, line)


def parse_channel_list(data: bytes, origin: str) -> list[CompromiseEntry]:
    """Entries of a channel's ``compromised-list.json``; ``CompromiseListInvalid`` if malformed."""

    def bad(why: str) -> CompromiseListInvalid:
        return CompromiseListInvalid(
            f"{origin}: {why}",
            hint=f"Ask the channel maintainer to fix {CHANNEL_FILE} (schema in docs/security.md).",
            details={"list": origin},
        )

    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad(f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        raise bad('expected {"version": 1, "entries": [...]}')
    out: list[CompromiseEntry] = []
    for i, raw in enumerate(doc["entries"], 1):
        if not isinstance(raw, dict):
            raise bad(f"entry {i} is not an object")
        reason = raw.get("reason") if isinstance(raw.get("reason"), str) else ""
        found = False
        for kind in ("id", "repository", "sha256"):
            value = raw.get(kind)
            if value is None:
                continue
            if not isinstance(value, str):
                raise bad(f"entry {i}: {kind} is not text")
            try:
                out.append(_entry(kind, value, str(reason), origin, i))
            except ValueError as exc:
                raise bad(f"entry {i}: {exc}") from None
            found = True
        if not found:
            raise bad(f"entry {i} has none of id, repository, sha256")
    return out


def parse_local_list(text: str, origin: str) -> list[CompromiseEntry]:
    """Entries of the admin's ``compromised.list``; ``CompromiseListInvalid`` names the bad line."""
    out: list[CompromiseEntry] = []
    for n, line in enumerate(text.splitlines(), 1):
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        item, _, reason = body.partition(" #")
        kind, sep, value = item.strip().partition(":")
        kind = kind.strip().lower()
        try:
            if not sep or kind not in _KINDS:
                raise ValueError("expected id:<pack id>, repo:<url> or sha256:<hex>")
            out.append(_entry(_KINDS[kind], value, reason, origin, n))
        except ValueError as exc:
            raise CompromiseListInvalid(
                f"{origin}:{n}: {exc}",
                hint=f"Fix or remove line {n} of {origin} (id:<pack id>, repo:<url>, sha256:<hex>, "
                "'# reason' after it); installs are refused until it parses.",
                details={"list": origin, "line": n},
            ) from None
    return out


def local_list_path(layout: Layout) -> Path:
    return layout.manager_dir / LOCAL_FILE


def _read_local(layout: Layout) -> list[CompromiseEntry]:
    path = local_list_path(layout)
    if not path.is_file():
        return []
    try:
        if path.stat().st_size > MAX_BYTES:
            raise OSError(f"larger than {MAX_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CompromiseListInvalid(
            f"cannot read {path}: {exc}",
            hint=f"Make {path} a readable UTF-8 text file (or remove it); installs are refused until then.",
            details={"list": str(path)},
        ) from exc
    return parse_local_list(text, str(path))


async def aload(manager: Manager, *, refresh: str = "auto") -> CompromiseList:
    """The merged list: the active channel's file (if any) and the admin's local file."""
    entries = _read_local(manager.layout)  # raises: the admin's file fails closed
    notices: list[Notice] = []
    sources = [str(local_list_path(manager.layout))] if entries else []
    try:
        url = manager.channels.file_url(manager.active_channel(), CHANNEL_FILE)
    except ManagerError as exc:
        url = ""
        notices.append(Notice("info", exc.code, f"{CHANNEL_FILE}: no active channel ({exc.message})", exc.hint))
    if url:
        try:
            got = await manager.cache.aget(url, refresh=refresh, validate=lambda b: None, optional=True)
            shown = redact_url(url)
            entries += parse_channel_list(got.data, shown)
            sources.append(shown)
            if got.notice:
                notices.append(got.notice)
        except ManagerError as exc:  # optional file: most channels have none
            level = "warning" if isinstance(exc, CompromiseListInvalid) else "info"
            notices.append(Notice(level, exc.code, f"{CHANNEL_FILE}: {exc.message}", exc.hint))
    return CompromiseList(tuple(entries), tuple(notices), tuple(sources))


def load(manager: Manager, *, refresh: str = "auto") -> CompromiseList:
    """``aload`` from sync code (the verbs run on worker threads)."""
    return run_sync(aload(manager, refresh=refresh))


def _refuse(entry: CompromiseEntry, what: str, matched: str) -> PackCompromised:
    where = entry.origin + (f":{entry.line}" if entry.line and not entry.origin.startswith("http") else "")
    return PackCompromised(
        f"{what} is on a known-compromise list: {entry.kind} {entry.value!r} matches {matched}"
        + (f" ({entry.reason})" if entry.reason else "")
        + f"; listed in {where}",
        hint="Do not install it. If the entry is wrong, remove it from the admin's list "
        f"({LOCAL_FILE} in the manager data folder) or ask the channel maintainer to fix {CHANNEL_FILE}.",
        details={"entry": entry.to_dict(), "list": entry.origin, "matched": matched},
    )


def check_source(clist: CompromiseList, what: str, *, ids: Iterable[str] = (), urls: Iterable[str] = ()) -> None:
    """Refuse by pack id or repository URL (before anything is fetched)."""
    urls = [u for u in urls if u]
    hit = clist.match_pack(ids, urls)
    if hit is not None:
        matched = hit.value if hit.kind == "id" else redact_url(next(iter(urls), hit.value))
        raise _refuse(hit, what, matched)


def check_files(clist: CompromiseList, what: str, hashes: Mapping[str, str]) -> None:
    """Refuse when a staged file's sha256 is listed."""
    found = clist.match_hashes(hashes)
    if found is not None:
        entry, rel = found
        raise _refuse(entry, what, f"the file {rel}")


def _pack_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file of an installed pack (a single-file pack is hashed alone)."""
    if root.is_file():
        return dict(inspect_tree(root.parent, hashes=True, only=[root.name]).hashes)
    return dict(inspect_tree(root, hashes=True).hashes)


def scan_installed(manager: Manager, *, clist: CompromiseList | None = None, hashes: bool = True) -> list[Notice]:
    """One warning per installed pack (enabled or disabled) that the list names; never deletes.

    Reads the channel file only from the cache (``refresh="never"``): nothing at start opens a
    socket."""
    clist = clist if clist is not None else load(manager, refresh="never")
    if not clist.entries:
        return []
    out: list[Notice] = []
    inv = manager.inventory(with_catalog=False)
    for pack in inv.packs:
        what = f"installed pack {pack.name}"
        try:
            check_source(
                clist, what, ids=[pack.cnr_id, pack.pack_id, pack.catalog_id], urls=[pack.remote_url, pack.repository]
            )
            if hashes and clist.has_hashes and Path(pack.path).exists() and not pack.is_link:
                check_files(clist, what, _pack_hashes(Path(pack.path)))
        except PackCompromised as exc:
            out.append(
                Notice(
                    "warning",
                    exc.code,
                    exc.message,
                    f"Disable or uninstall {pack.name} (cm-cli.py disable {pack.name}); the Manager never "
                    "removes it on its own.",
                    details={"pack": pack.name, "path": pack.path, **exc.details},
                )
            )
    return out


def startup_alerts(manager: Manager) -> list[dict[str, str]]:
    """The start-up alerts (``/manager/startup_alerts``): one warning per installed pack on the
    list, or an error naming a broken admin list. Reads the channel file from the cache only."""
    try:
        notices = scan_installed(manager)
    except ManagerError as exc:
        log.warning("known-compromise list: %s", exc.message)
        return [{"message": f"{exc.message} {exc.hint}".strip(), "level": "error"}]
    for n in notices:
        log.warning("%s", n.message)
    return [{"message": f"{n.message} {n.hint}".strip(), "level": "warning"} for n in notices]
