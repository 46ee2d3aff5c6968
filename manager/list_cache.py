"""Pack lists persisted beside the channel cache: the first list request after a start answers
from a file instead of reading, hashing and parsing the channel (issue 21).

What is kept, per list kind (the classic ``getlist`` body, the v1 pack list), is the expensive
part: every pack's encoded JSON fragment in catalog order, the pack ids and the URL index the
inventory needs to match installed packs to catalog ids, and named blobs the door adds (the
gzip-compressed body with nothing installed). The cheap live state (what is installed, disabled,
failed to import) is merged per request by the door (``manager/api/listing.py``).

Each file records what it was built from: the catalog version and, per channel file, the path,
size, mtime and inode of the file the ladder serves (the cached body, or the ``file://`` file)
with its sha256. ``channel_state`` reads that without reading a body (a cached file's digest comes
from its sidecar; a local file is hashed only when its stat changed), and a persisted file is used
only when the inputs are the same and ``catalog_version`` of their digests is the version it was
built from. The payload carries a CRC-32: a stale, truncated or corrupt file is rebuilt, never
served. Writes are atomic (temp file, fsync, rename).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog import CHANNEL_FILES, catalog_version
from .catalog_parse import normalize_url
from .fsops import atomic_write_bytes, refuse_links
from .network import NetworkGate
from .records import Channel, Notice

if TYPE_CHECKING:
    from .context import Manager

log = logging.getLogger("offline_manager.list_cache")

FORMAT = 2  # bump when the file layout or a fragment's shape changes
MAGIC = b"CM-LIST\n"
_HEADER_LEN = 16  # hex digits giving the header's length


@dataclass(frozen=True)
class FileInput:
    """One channel file as a list was built from it (or as the ladder would serve it now)."""

    kind: str
    path: str
    size: int
    mtime_ns: int
    ino: int
    sha256: str

    def same_file(self, other: FileInput) -> bool:
        return (self.kind, self.path, self.size, self.mtime_ns, self.ino) == (
            other.kind,
            other.path,
            other.size,
            other.mtime_ns,
            other.ino,
        )


@dataclass(frozen=True)
class ChannelState:
    """What the cache ladder (refresh "auto") would serve for the active channel now."""

    channel: Channel
    files: tuple[FileInput, ...]
    sources: Mapping[str, str]
    notices: tuple[Notice, ...]
    oldest_age_seconds: float

    @property
    def version(self) -> str:
        """The ``Catalog.version`` a catalog built from these files has."""
        return catalog_version([(self.channel, {f.kind: f.sha256 for f in self.files})])


@dataclass(frozen=True)
class PersistedList:
    """One list kind's encoded fragments and what they were built from."""

    kind: str
    catalog_version: str
    channel: Channel
    inputs: tuple[FileInput, ...]
    ids: tuple[str, ...]
    text: bytes  # the encoded elements, one per id in catalog order, joined by b","
    ends: Sequence[int]  # where each element ends in ``text`` (the next starts one byte later)
    url_index: Mapping[str, str]  # normalised URL -> pack id
    blobs: Mapping[str, bytes] = field(default_factory=dict)

    def index(self) -> PackIndex:
        return PackIndex(self.ids, self.url_index)


class PackIndex:
    """The two catalog lookups ``inventory.scan`` uses, answered from a persisted list."""

    @dataclass(frozen=True)
    class Hit:
        id: str

    def __init__(self, ids: Sequence[str], url_index: Mapping[str, str]) -> None:
        self._ids = ids
        self._exact: set[str] | None = None
        self._lower: dict[str, str] | None = None
        self._urls = url_index

    def get(self, pack_id: str) -> PackIndex.Hit | None:
        if self._exact is None or self._lower is None:  # built on the first lookup (installed packs only)
            self._exact = set(self._ids)
            self._lower = {}
            for known in self._ids:
                self._lower.setdefault(known.lower(), known)
        if pack_id in self._exact:
            return self.Hit(pack_id)
        found = self._lower.get(pack_id.strip().lower())
        return self.Hit(found) if found else None

    def by_reference(self, url: str) -> PackIndex.Hit | None:
        found = self._urls.get(normalize_url(url))
        return self.Hit(found) if found else None


# --- what the ladder would serve ------------------------------------------------------------------
def _stat_input(kind: str, path: Path, sha256: str) -> FileInput:
    st = path.stat()
    return FileInput(kind, str(path), st.st_size, st.st_mtime_ns, st.st_ino, sha256)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def channel_state(manager: Manager, known: Sequence[FileInput] = ()) -> ChannelState | None:
    """The active channel's files as the ladder would serve them, or None when it would do more
    than read the cache (a network request, a missing or unreadable file, a refused channel).
    Where the state is known, refresh "auto" and "never" serve the same copies: offline, or a
    copy younger than the TTL (the notice of a stale copy then says "offline mode" either way).

    Reads sidecars and stats only; a local file's digest is taken from ``known`` when its stat is
    unchanged, else the file is hashed. Blocking: call it off the event loop."""
    try:
        channel = manager.active_channel()
        by_kind = {f.kind: f for f in known}
        cache = manager.cache
        now = cache.clock()
        files: list[FileInput] = []
        sources: dict[str, str] = {}
        notices: list[Notice] = []
        ages: list[float] = []
        for kind in CHANNEL_FILES:
            url = manager.channels.file_url(channel, kind)
            served = cache.served_copy(url)
            if served is not None:
                entry, source, age, notice = served
                files.append(_stat_input(kind, Path(entry.path), entry.sha256))
                if files[-1].size != entry.size:
                    return None  # the body is not the one its sidecar describes: the ladder decides
                if notice is not None:
                    notices.append(notice)
            elif NetworkGate.is_local(url):
                path = NetworkGate.local_path(url)
                probe = _stat_input(kind, path, "")
                old = by_kind.get(kind)
                sha = old.sha256 if old is not None and old.same_file(probe) else _hash_file(path)
                files.append(FileInput(kind, probe.path, probe.size, probe.mtime_ns, probe.ino, sha))
                source, age = "local", max(0.0, now - probe.mtime_ns / 1e9)
            else:
                return None
            sources[kind] = source
            ages.append(age)
        return ChannelState(channel, tuple(files), sources, tuple(notices), max(ages) if ages else 0.0)
    except Exception as exc:  # any doubt: the ladder answers (and reports) instead of us
        log.debug("no persisted-list shortcut: %s", exc)
        return None


# --- the file -------------------------------------------------------------------------------------
class ListStore:
    """``<cache>/lists/<kind>.bin``: one persisted list per kind."""

    def __init__(self, folder: str | os.PathLike[str], anchor: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.anchor = Path(anchor)
        self.loads = 0  # files read and accepted (tests and the bench read these)
        self.rejects = 0  # files read and refused (stale or corrupt)
        self.saves = 0

    @classmethod
    def for_manager(cls, manager: Manager) -> ListStore:
        layout = manager.layout
        return cls(layout.cache_dir / "lists", layout.manager_dir.parent)

    def path(self, kind: str) -> Path:
        return self.folder / f"{kind}.bin"

    def save(self, item: PersistedList) -> Path:
        """Write ``item`` atomically (a reader sees the old file or the new one)."""
        refuse_links(self.folder, self.anchor, what="persisted list folder")
        pos = len(item.text)
        blobs: dict[str, list[int]] = {}
        for name, blob in item.blobs.items():
            blobs[name] = [pos, pos + len(blob)]
            pos += len(blob)
        payload = b"".join((item.text, *item.blobs.values()))
        header = {
            "format": FORMAT,
            "kind": item.kind,
            "catalog_version": item.catalog_version,
            "channel": {"name": item.channel.name, "url": item.channel.url},
            "inputs": [f.__dict__ for f in item.inputs],
            "ids": list(item.ids),
            "ends": list(item.ends),
            "text_len": len(item.text),
            "blobs": blobs,
            "url_index": dict(item.url_index),
            "payload_len": len(payload),
            "crc32": zlib.crc32(payload),
            "written_at": time.time(),
        }
        head = json.dumps(header, separators=(",", ":")).encode()
        path = atomic_write_bytes(self.path(item.kind), MAGIC + b"%016x" % len(head) + head + payload)
        self.saves += 1
        return path

    def load(self, kind: str, manager: Manager) -> tuple[PersistedList, ChannelState] | None:
        """The persisted list of ``kind`` with the channel state it matches, when it was built from
        exactly the files the ladder would serve now; else None (missing, stale, corrupt: logged,
        and the caller rebuilds it). Blocking: call it off the event loop."""
        path = self.path(kind)
        try:
            if path.is_symlink():
                raise ValueError("is a symbolic link, not a file this manager wrote")
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return self._reject(path, f"unreadable ({exc})")
        try:
            item = _decode(kind, raw)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            return self._reject(path, f"corrupt ({exc})")
        del raw
        state = channel_state(manager, item.inputs)
        if state is None:
            return self._reject(path, "the channel files cannot be checked without the network")
        if item.channel != state.channel or len(item.inputs) != len(state.files):
            return self._reject(path, "built for another channel")
        for old, new in zip(item.inputs, state.files, strict=True):
            if not old.same_file(new) or old.sha256 != new.sha256:
                return self._reject(path, f"stale ({old.kind} changed)")
        if state.version != item.catalog_version:
            return self._reject(path, "stale (catalog version)")
        self.loads += 1
        return item, state

    def _reject(self, path: Path, why: str) -> tuple[PersistedList, ChannelState] | None:
        self.rejects += 1
        log.info("persisted list %s not used: %s; it is rebuilt", path.name, why)
        return None


def _decode(kind: str, raw: bytes) -> PersistedList:
    if not raw.startswith(MAGIC):
        raise ValueError("not a persisted list")
    start = len(MAGIC) + _HEADER_LEN
    size = int(raw[len(MAGIC) : start], 16)
    header: dict[str, Any] = json.loads(raw[start : start + size])
    if header["format"] != FORMAT or header["kind"] != kind:
        raise ValueError(f"format {header['format']!r} of kind {header['kind']!r}")
    inputs = tuple(FileInput(**f) for f in header["inputs"])
    channel = Channel(str(header["channel"]["name"]), str(header["channel"]["url"]))
    base = start + size
    payload_len = len(raw) - base
    if payload_len != header["payload_len"] or zlib.crc32(memoryview(raw)[base:]) != header["crc32"]:
        raise ValueError("payload does not match its checksum")
    ids, ends, text_len = header["ids"], header["ends"], header["text_len"]
    if not 0 <= text_len <= payload_len or len(ids) != len(ends) or (ends and ends[-1] != text_len):
        raise ValueError("element offsets do not match the text")
    if ends != sorted(ends) or (ends and ends[0] < 0):
        raise ValueError("element offsets out of order")
    text = raw[base : base + text_len]
    blobs = {name: raw[base + a : base + b] for name, (a, b) in header["blobs"].items()}
    return PersistedList(
        kind,
        str(header["catalog_version"]),
        channel,
        inputs,
        tuple(ids),
        text,
        ends,
        header["url_index"],
        blobs,
    )
