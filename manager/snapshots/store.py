"""Stored snapshots: one file each under ``<manager dir>/snapshots/``, written atomically.

Names are single safe file names (letters, digits, ``._@+-``); a path, ``..``, an absolute
name or an empty one is refused with ``invalid_name`` before anything is touched. Our own
files are JSON; classic files (JSON, or YAML written by the classic ``--output``) are read too.

The snapshots folder is one of our working folders: it and every folder between the user folder
and it must be real, not a symbolic link (``working_folder_link``, checked before every read,
write or delete); a stored snapshot that is a link is refused too, never followed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidName, NotFound, SnapshotExists, SnapshotInvalid, WorkingFolderLink
from ..fsops import atomic_write_bytes, refuse_link_file, refuse_links
from ..layout import data_anchor_for, is_reserved_device_name
from .classic import created_from_name, from_classic, is_classic, to_classic
from .model import Snapshot, _Record

SUFFIXES = (".json", ".yaml", ".yml")
MAX_FILE_BYTES = 64 << 20
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,149}$")
_NAME_HINT = (
    "Use letters, digits and . _ @ + - only (at most 150 characters, no folders); "
    "the snapshot is stored in the Manager's snapshots folder."
)


def check_name(name: Any) -> str:
    """The stored name for ``name`` (a trailing .json dropped); ``InvalidName`` for anything path-like."""
    if not isinstance(name, str):
        raise InvalidName("a snapshot name must be text", hint=_NAME_HINT)
    text = name.strip()
    for suffix in SUFFIXES:
        if text.lower().endswith(suffix):
            text = text[: -len(suffix)]
            break
    if not text:
        raise InvalidName("the snapshot name is empty", hint=_NAME_HINT, details={"name": name})
    if (
        "/" in text
        or "\\" in text
        or ".." in text
        or os.path.isabs(text)
        or not _NAME_RE.match(text)
        or is_reserved_device_name(text)
    ):
        raise InvalidName(f"{name[:80]!r} is not a valid snapshot name", hint=_NAME_HINT, details={"name": name})
    return text


def _local_stamp(created_at: str) -> str:
    try:
        when = _dt.datetime.fromisoformat(created_at.replace("Z", "+00:00")).astimezone()
    except ValueError:
        when = _dt.datetime.now()
    return when.strftime("%Y-%m-%d_%H-%M-%S")


def parse_snapshot(
    data: bytes, *, where: str, suffix: str = ".json", stem: str = "", mtime: float | None = None
) -> Snapshot:
    """Read a snapshot document (ours or classic, JSON or YAML); ``SnapshotInvalid`` when it is neither."""
    if len(data) > MAX_FILE_BYTES:
        raise SnapshotInvalid(
            f"{where}: larger than {MAX_FILE_BYTES >> 20} MiB; not a snapshot",
            details={"where": where, "field": "document"},
        )
    is_yaml = suffix.lower() in (".yaml", ".yml")
    try:
        text = data.decode("utf-8-sig")
        if is_yaml:
            import yaml  # only classic --output files need it

            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(str(exc)) from None
        else:
            doc = json.loads(text)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise SnapshotInvalid(
            f"{where}: not valid {'YAML' if is_yaml else 'JSON'}: {exc}",
            hint="The file is damaged or not a snapshot; take a new one with `cm-cli.py snapshot save`.",
            details={"where": where, "field": "document"},
        ) from None
    if is_classic(doc):
        created = created_from_name(stem)
        if created is None and mtime is not None:
            created = (
                _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc)
                .isoformat(timespec="microseconds")
                .replace("+00:00", "Z")
            )
        return from_classic(doc, where=where, created_at=created)
    return Snapshot.from_dict(doc, where=where)


def read_snapshot_file(path: str | os.PathLike[str]) -> Snapshot:
    """Load a snapshot from any path (``cm-cli.py snapshot restore FILE``)."""
    target = Path(path)
    try:
        st = target.stat()
        if st.st_size > MAX_FILE_BYTES:
            return parse_snapshot(b" " * (MAX_FILE_BYTES + 1), where=str(target))
        data = target.read_bytes()
    except FileNotFoundError:
        raise NotFound(
            f"snapshot file {target} does not exist",
            hint="Give the path of a snapshot file, or a name from `cm-cli.py snapshot list`.",
            details={"path": str(target)},
        ) from None
    except OSError as exc:
        raise SnapshotInvalid(
            f"{target}: cannot be read ({exc.strerror or exc})", details={"where": str(target), "field": "document"}
        ) from None
    return parse_snapshot(data, where=str(target), suffix=target.suffix or ".json", stem=target.stem, mtime=st.st_mtime)


def dump(snapshot: Snapshot, fmt: str = "json") -> bytes:
    """The bytes of a snapshot file: ``json`` (ours), ``yaml`` (ours as YAML) or ``classic`` (classic JSON)."""
    if fmt == "classic":
        return (json.dumps(to_classic(snapshot), indent=4, ensure_ascii=False) + "\n").encode("utf-8")
    doc = snapshot.to_json()
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode("utf-8")
    if fmt != "json":
        raise SnapshotInvalid(
            f"unknown snapshot file format {fmt!r}", hint="Use json, yaml or classic.", details={"field": "format"}
        )
    return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


@dataclass(frozen=True)
class StoredSnapshot(_Record):
    """One listed file: its name, when it was taken, why, and what it holds."""

    name: str
    path: str
    created_at: str
    reason: str = ""
    origin: str = ""
    size: int = 0
    summary: Mapping[str, Any] = field(default_factory=dict)
    error: Mapping[str, Any] | None = None  # unreadable files are listed with the reason, not hidden

    @property
    def auto(self) -> bool:
        return self.reason.startswith("auto")


class SnapshotStore:
    """The snapshots folder of one Manager (created on first save).

    ``anchor`` is the folder the user chose, below which everything is ours (default: the parent
    of the ``__manager`` folder holding ``folder``); links between it and ``folder`` are refused.
    """

    def __init__(self, folder: str | os.PathLike[str], *, anchor: str | os.PathLike[str] | None = None):
        self.folder = Path(folder)
        self.anchor = Path(anchor) if anchor is not None else data_anchor_for(self.folder)

    def check_folder(self) -> Path:
        """``WorkingFolderLink`` when the snapshots folder (or a folder on its way) is a link."""
        return refuse_links(self.folder, self.anchor, what="snapshots folder")

    def _existing(self, name: str) -> Path | None:
        self.check_folder()
        for suffix in SUFFIXES:
            candidate = self.folder / f"{name}{suffix}"
            if candidate.is_symlink():
                refuse_link_file(candidate, what="stored snapshot")
            if candidate.is_file():
                return candidate
        return None

    def path_of(self, name: str) -> Path:
        """The file of a stored snapshot; ``NotFound`` when there is none."""
        stored = check_name(name)
        found = self._existing(stored)
        if found is None:
            raise NotFound(
                f"no snapshot named {stored!r} in {self.folder}",
                hint="List the stored snapshots with `cm-cli.py snapshot list`.",
                details={"name": stored, "folder": str(self.folder)},
            )
        return found

    def new_name(self, snapshot: Snapshot) -> str:
        """``<local time>_snapshot`` (the classic naming) or ``<local time>_auto-<why>``; never taken."""
        stamp = _local_stamp(snapshot.created_at)
        if snapshot.auto:
            why = re.sub(r"[^A-Za-z0-9]+", "-", snapshot.reason.partition(":")[2]).strip("-")[:40] or "auto"
            base = f"{stamp}_auto-{why}"
        else:
            base = f"{stamp}_snapshot"
        name, n = base, 1
        while self._existing(name) is not None:
            n += 1
            name = f"{base}-{n}"
        return name

    def save(self, snapshot: Snapshot, name: str | None = None, *, overwrite: bool = False) -> StoredSnapshot:
        """Store ``snapshot`` atomically; an existing name is refused unless ``overwrite``."""
        stored = check_name(name) if name is not None else self.new_name(snapshot)
        existing = self._existing(stored)
        if existing is not None and not overwrite:
            raise SnapshotExists(
                f"a snapshot named {stored!r} already exists ({existing})",
                details={"name": stored, "path": str(existing)},
            )
        data = dump(snapshot)
        path = atomic_write_bytes(self.folder / f"{stored}.json", data)
        if existing is not None and existing != path:
            existing.unlink()  # the same name stored as YAML before: one file per name
        return StoredSnapshot(
            stored, str(path), snapshot.created_at, snapshot.reason, snapshot.origin, len(data), snapshot.summary()
        )

    @staticmethod
    def export(snapshot: Snapshot, output: str | os.PathLike[str], *, fmt: str | None = None) -> Path:
        """``save --output PATH``: write anywhere (format from ``fmt`` or the suffix: .yaml/.yml -> YAML)."""
        target = Path(output)
        if target.is_dir():
            raise InvalidName(
                f"{target} is a folder; give a file path for --output",
                hint="For example --output /backups/studio-a.json",
                details={"path": str(target)},
            )
        chosen = fmt or ("yaml" if target.suffix.lower() in (".yaml", ".yml") else "json")
        return atomic_write_bytes(target, dump(snapshot, chosen))

    def import_file(
        self, path: str | os.PathLike[str], name: str | None = None, *, overwrite: bool = False
    ) -> StoredSnapshot:
        """Validate a snapshot file (ours or classic, JSON or YAML) and store it under ``name``
        (default: the file's own name); ``cm-cli.py snapshot restore FILE`` restores it by name then."""
        source = Path(path)
        snap = read_snapshot_file(source)
        stored = check_name(name if name is not None else source.stem)
        if snap.origin == "classic":
            data = source.read_bytes() if source.suffix.lower() == ".json" else dump(snap, "classic")
        else:
            data = dump(snap)
        existing = self._existing(stored)
        if existing is not None and not overwrite:
            raise SnapshotExists(
                f"a snapshot named {stored!r} already exists ({existing})",
                details={"name": stored, "path": str(existing)},
            )
        target = atomic_write_bytes(self.folder / f"{stored}.json", data)
        if existing is not None and existing != target:
            existing.unlink()
        return StoredSnapshot(stored, str(target), snap.created_at, snap.reason, snap.origin, len(data), snap.summary())

    def load(self, name: str) -> Snapshot:
        path = self.path_of(name)
        return read_snapshot_file(path)

    def entries(self) -> list[StoredSnapshot]:
        """Every stored snapshot, newest first; an unreadable file is listed with its error (a link
        is listed as an error, never read)."""
        self.check_folder()
        try:
            files = [
                e
                for e in os.scandir(self.folder)
                if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(SUFFIXES)
            ]
        except FileNotFoundError:
            return []
        out: list[StoredSnapshot] = []
        for entry in files:
            path = Path(entry.path)
            st = entry.stat(follow_symlinks=False)
            try:
                refuse_link_file(path, what="stored snapshot")
                snap = read_snapshot_file(path)
            except (SnapshotInvalid, NotFound, WorkingFolderLink) as exc:
                when = (
                    _dt.datetime.fromtimestamp(st.st_mtime, _dt.timezone.utc)
                    .isoformat(timespec="microseconds")
                    .replace("+00:00", "Z")
                )
                out.append(StoredSnapshot(path.stem, str(path), when, size=st.st_size, error=exc.to_dict()))
                continue
            out.append(
                StoredSnapshot(
                    path.stem, str(path), snap.created_at, snap.reason, snap.origin, st.st_size, snap.summary()
                )
            )
        out.sort(key=lambda s: (s.created_at, s.name), reverse=True)
        return out

    def remove(self, name: str) -> StoredSnapshot:
        """Delete a stored snapshot; returns what was removed."""
        path = self.path_of(name)
        st = path.stat()
        path.unlink()
        return StoredSnapshot(path.stem, str(path), "", size=st.st_size)

    def prune_auto(self, keep: int) -> list[str]:
        """Keep the ``keep`` newest auto-snapshots, delete older ones (``keep`` 0 keeps all); returns names removed."""
        if keep <= 0:
            return []
        autos = [s for s in self.entries() if s.error is None and s.auto and s.origin == "ours"]  # checks the folder
        removed = []
        for old in autos[keep:]:
            Path(old.path).unlink(missing_ok=True)
            removed.append(old.name)
        return removed
