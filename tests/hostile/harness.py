"""Shared machinery of the hostile-input suite: the sealed tree, archive builders, refusals.

Every case runs against a fresh ``tmp_path`` holding a ComfyUI tree (``sealed`` fixture). The
whole ``tmp_path`` is checksummed before and after (``support.treesum``), so a write anywhere in
it — traversal targets are placed *inside* ``tmp_path`` on purpose — shows up as a change.
``refuses`` runs the input, demands a ``ManagerError`` with the expected code and a hint, and
demands that no file changed outside the folders the case allows.
"""

from __future__ import annotations

import io
import stat
import sys
import tarfile
import threading
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from manager.errors import ManagerError
from manager.layout import Layout
from support import treesum


@dataclass(frozen=True)
class Case:
    """One hostile input: ``payload`` is what the category's test feeds in; ``code`` the error."""

    id: str
    payload: Any
    code: str
    note: str = ""
    known_gap: str = ""  # a finding not fixed yet: the case runs as a strict xfail

    def param(self) -> Any:
        marks = [pytest.mark.xfail(strict=True, reason=self.known_gap)] if self.known_gap else []
        return pytest.param(self, id=self.id, marks=marks)


# --- process audit: prove that refused input never started a program -------------------------
class _SpawnAudit:
    def __init__(self) -> None:
        self.active = False
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def hook(self, event: str, args: tuple) -> None:
        if self.active and event in ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.system"):
            with self.lock:
                self.seen.append(f"{event}: {args[:2]!r}")


_SPAWNS = _SpawnAudit()
_installed: list[bool] = []


def spawn_audit() -> _SpawnAudit:
    """The process-wide spawn recorder (installed once; audit hooks cannot be removed)."""
    if not _installed:
        sys.addaudithook(_SPAWNS.hook)
        _installed.append(True)
    return _SPAWNS


# --- the sealed tree ----------------------------------------------------------------------------
@dataclass
class Sealed:
    """A ComfyUI tree in ``root`` (= tmp_path) and its layout."""

    root: Path
    layout: Layout
    checks: int = field(default=0)

    def snapshot(self) -> dict[str, str]:
        return treesum.listing(self.root)

    def refuses(
        self, code: str, action: Callable[[], Any], *, allowed: tuple[str, ...] = (), no_spawn: bool = False
    ) -> ManagerError:
        """Run ``action``; it must raise a ManagerError with ``code`` and a hint, and leave every
        file of the tmp tree as it was except below ``allowed`` (paths relative to ``root``)."""
        before = self.snapshot()
        audit = spawn_audit()
        audit.seen.clear()
        audit.active = no_spawn
        try:
            with pytest.raises(ManagerError) as info:
                action()
        finally:
            audit.active = False
        err = info.value
        assert err.code == code, f"expected code {code!r}, got {err.code!r}: {err}"
        assert err.message and err.hint, f"coded error without message or hint: {err!r}"
        diff = treesum.changes(before, self.snapshot()).outside(*allowed)
        assert not diff, f"hostile input changed the tree: {diff.describe()}"
        if no_spawn:
            assert not audit.seen, f"a program was started for refused input: {audit.seen}"
        self.checks += 1
        return err


def make_sealed(tmp_path: Path) -> Sealed:
    root = tmp_path / "ComfyUI"
    for sub in ("custom_nodes/.cm-staging.disabled", "models/checkpoints", "user/__manager/cache/channels"):
        (root / sub).mkdir(parents=True)
    (root / "custom_nodes" / "existing-pack").mkdir()
    (root / "custom_nodes" / "existing-pack" / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (root / "models" / "checkpoints" / "keep.safetensors").write_bytes(b"\0" * 64)
    return Sealed(tmp_path, Layout.from_root(root))


# --- archives -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """An archive member. ``name`` may hold ``{abs}``: the absolute tmp root (absolute-path cases)."""

    name: str
    kind: str = "file"  # file | dir | symlink | hardlink | chr | fifo
    data: bytes = b"x\n"
    zeros: int = 0  # > 0: a file of that many zero bytes (compresses ~1000:1)
    link: str = ""


@dataclass(frozen=True)
class ArchiveSpec:
    fmt: str  # zip | tar | tgz | raw
    entries: tuple[Entry, ...] = ()
    raw: bytes = b""
    limits: dict[str, Any] | None = None


def _content(e: Entry) -> bytes:
    return b"\0" * e.zeros if e.zeros else e.data


def build_archive(spec: ArchiveSpec, folder: Path, abs_root: Path) -> Path:
    """Write the archive ``spec`` describes into ``folder``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    sub = lambda text: text.replace("{abs}", str(abs_root))  # noqa: E731
    if spec.fmt == "raw":
        path = folder / "pack.zip"
        path.write_bytes(spec.raw)
        return path
    if spec.fmt == "zip":
        path = folder / "pack.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # duplicate names are one of the attacks
            for e in spec.entries:
                info = zipfile.ZipInfo(sub(e.name))
                info.create_system = 3
                info.compress_type = zipfile.ZIP_DEFLATED
                if e.kind == "symlink":
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                    zf.writestr(info, sub(e.link))
                elif e.kind == "dir":
                    info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                    zf.writestr(info, b"")
                elif e.kind == "fifo":
                    info.external_attr = (stat.S_IFIFO | 0o644) << 16
                    zf.writestr(info, b"")
                else:
                    info.external_attr = (stat.S_IFREG | 0o644) << 16
                    zf.writestr(info, _content(e))
        return path
    path = folder / ("pack.tar.gz" if spec.fmt == "tgz" else "pack.tar")
    with tarfile.open(path, "w:gz" if spec.fmt == "tgz" else "w") as tf:
        for e in spec.entries:
            info = tarfile.TarInfo(sub(e.name))
            data = b""
            if e.kind == "file":
                data = _content(e)
                info.size = len(data)
            elif e.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif e.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, sub(e.link)
            elif e.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, sub(e.link)
            elif e.kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif e.kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tf.addfile(info, io.BytesIO(data) if data else None)
    return path
