"""The staging folder a mirror is built in, and the atomic swap into place.

A build writes a complete new tree beside ``DIR`` (same filesystem), then exchanges the two in
one ``renameat2(RENAME_EXCHANGE)`` (two renames where the kernel lacks it), so a web server
serving ``DIR`` never sees a half-built mirror. Incremental: a file whose bytes (generated) or
size and mtime (copied) match the previous build is hard-linked from it, not written again, and
the sha256 recorded in the previous manifest (``.cm-mirror.json``) is reused.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import MirrorTargetInvalid

MARKER = ".cm-mirror.json"
FORMAT = 1
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@dataclass(frozen=True)
class FileEntry:
    """One file of the mirror: its path under DIR, size, sha256 ("" for models) and section."""

    rel: str
    size: int
    sha256: str
    section: str
    mtime_ns: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"rel": self.rel, "size": self.size, "sha256": self.sha256, "section": self.section}


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a built mirror, None when ``folder`` holds none (or an unreadable one)."""
    try:
        doc = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


def check_target(dest: Path) -> None:
    """Refuse ``dest`` before anything is written: a link, a file, or a folder we did not build."""
    if dest.is_symlink():
        raise MirrorTargetInvalid(f"{dest} is a symbolic link", details={"path": str(dest)})
    if dest.exists() and not dest.is_dir():
        raise MirrorTargetInvalid(f"{dest} is not a folder", details={"path": str(dest)})
    if dest.is_dir() and any(dest.iterdir()) and read_manifest(dest) is None:
        raise MirrorTargetInvalid(
            f"{dest} is a folder with other files in it (no {MARKER}): a build would replace them",
            details={"path": str(dest)},
        )


def _safe_rel(rel: str) -> str:
    parts = PurePosixPath(rel).parts
    if not parts or rel.startswith("/") or any(p in ("", ".", "..") or "\\" in p for p in parts):
        raise MirrorTargetInvalid(f"refused the mirror path {rel!r}", details={"path": rel})
    return rel


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class StagedTree:
    """A new mirror tree under construction beside ``dest``; ``commit`` swaps it into place."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.root = dest.parent / f".{dest.name}.staging-{os.getpid()}"
        old = read_manifest(dest) if dest.is_dir() else None
        self._old_files: dict[str, dict[str, Any]] = {}
        if old is not None:
            for item in old.get("files", []):
                if isinstance(item, dict) and isinstance(item.get("rel"), str):
                    self._old_files[item["rel"]] = item
        self.files: dict[str, FileEntry] = {}
        self.written = 0
        self.kept = 0
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)

    def path(self, rel: str) -> Path:
        target = self.root.joinpath(*_safe_rel(rel).split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def _old(self, rel: str) -> Path | None:
        old = self.dest.joinpath(*rel.split("/"))
        return old if rel in self._old_files and old.is_file() and not old.is_symlink() else None

    def _link_old(self, old: Path, target: Path) -> None:
        try:
            os.link(old, target)
        except OSError:  # a filesystem without hard links: copy
            shutil.copy2(old, target)

    def _record(self, rel: str, size: int, sha: str, section: str, mtime_ns: int = 0) -> FileEntry:
        entry = FileEntry(rel, size, sha, section, mtime_ns)
        self.files[rel] = entry
        return entry

    def write_bytes(self, rel: str, data: bytes, section: str) -> FileEntry:
        """A generated file: kept from the previous build when its bytes are the same."""
        target = self.path(rel)
        sha = hashlib.sha256(data).hexdigest()
        old = self._old(rel)
        if old is not None and self._old_files[rel].get("sha256") == sha and old.stat().st_size == len(data):
            self._link_old(old, target)
            self.kept += 1
        else:
            target.write_bytes(data)
            self.written += 1
        return self._record(rel, len(data), sha, section)

    def copy_file(self, rel: str, src: Path, section: str, *, hash_it: bool = True) -> FileEntry:
        """A store file: kept when size and mtime match the previous build's copy."""
        target = self.path(rel)
        st = src.stat()
        old = self._old(rel)
        if old is not None:
            ost = old.stat()
            known = self._old_files[rel]
            if (ost.st_size, ost.st_mtime_ns) == (st.st_size, st.st_mtime_ns) and (known.get("sha256") or not hash_it):
                self._link_old(old, target)
                self.kept += 1
                return self._record(rel, st.st_size, str(known.get("sha256") or ""), section, st.st_mtime_ns)
        shutil.copy2(src, target)
        self.written += 1
        sha = sha256_file(target) if hash_it else ""
        return self._record(rel, st.st_size, sha, section, st.st_mtime_ns)

    def adopt(self, rel: str, section: str) -> FileEntry:
        """A file a tool wrote into the staging tree (``git update-server-info``)."""
        target = self.path(rel)
        data = target.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        old = self._old(rel)
        if old is not None and self._old_files[rel].get("sha256") == sha:
            target.unlink()
            self._link_old(old, target)
            self.kept += 1
        else:
            self.written += 1
        return self._record(rel, len(data), sha, section)

    def symlink(self, rel: str, points_to: str) -> None:
        """A relative link inside the tree (``owner/repo`` -> ``repo.git``)."""
        target = self.path(rel)
        if not target.exists() and not target.is_symlink():
            os.symlink(points_to, target)

    def commit(self, manifest: dict[str, Any]) -> None:
        """Write the manifest, then swap the staging tree into ``dest`` and drop the old one."""
        doc = {**manifest, "format": FORMAT, "files": [f.to_dict() for f in self.files.values()]}
        (self.root / MARKER).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        if not self.dest.exists():
            os.rename(self.root, self.dest)
            return
        if not _exchange(self.root, self.dest):
            aside = self.dest.parent / f".{self.dest.name}.old-{os.getpid()}"
            os.rename(self.dest, aside)
            os.rename(self.root, self.dest)
            self.root = aside
        shutil.rmtree(self.root, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where that is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(rc == 0)
