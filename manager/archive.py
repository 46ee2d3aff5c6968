"""Safe extraction of zip and tar(.gz) archives (registry zips, ``unzip`` packs).

Every entry is checked before it is written: no ``..``, absolute paths, drive letters or NUL;
symlinks only when they stay inside the target (checked again after creation, resolving
chains); no hard links, devices or FIFOs; caps on entry count, per-entry and total size and
compression ratio. Extraction happens in a private sibling folder that is renamed onto the
target only when everything succeeded, so on any error the target is left untouched.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from .errors import ArchiveInvalid, ArchiveTooLarge, ArchiveUnsafe

__all__ = [
    "ArchiveLimits",
    "FileTap",
    "TapFactory",
    "extract_archive",
    "extract_zip",
    "extract_tar",
    "safe_member_name",
]

_CHUNK = 1 << 20
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
_RATIO_FLOOR = 1 << 20  # ratios are only judged for entries that inflate beyond 1 MiB


@dataclass(frozen=True)
class ArchiveLimits:
    """Extraction caps; the defaults fit any real node pack with a wide margin."""

    max_total_bytes: int = 2 << 30
    max_entry_bytes: int = 1 << 30
    max_entries: int = 50_000
    max_ratio: float = 200.0


@dataclass(frozen=True)
class _Member:
    name: str  # safe relative posix path
    kind: str  # file | dir | symlink
    size: int
    mode: int
    link: str = ""


class FileTap(Protocol):
    """Sees one regular file's bytes as they are written (the single extraction pass)."""

    def feed(self, chunk: bytes) -> None: ...

    def done(self, path: str, mode: int, size: int) -> None: ...


# called with the member's safe relative name when its file is opened; None: nothing to see
TapFactory = Callable[[str], "FileTap | None"]


def _unsafe(name: str, reason: str) -> ArchiveUnsafe:
    return ArchiveUnsafe(f"unsafe archive entry {name!r}: {reason}", details={"entry": name, "reason": reason})


def _too_large(what: str, value: float, limit: float, entry: str = "") -> ArchiveTooLarge:
    details = {"limit": what, "value": value, "max": limit}
    if entry:
        details["entry"] = entry
    return ArchiveTooLarge(
        f"archive too large: {what} {value:g} exceeds {limit:g}" + (f" (entry {entry!r})" if entry else ""),
        details=details,
    )


def safe_member_name(raw: str) -> str:
    """The entry name as a clean relative posix path, or ``ArchiveUnsafe``.

    Backslashes count as separators (zips made on Windows); ``.`` parts are dropped.
    """
    if "\x00" in raw:
        raise _unsafe(raw, "NUL character in name")
    name = raw.replace("\\", "/")
    if name.startswith("/"):
        raise _unsafe(raw, "absolute path")
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        raise _unsafe(raw, "drive letter")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise _unsafe(raw, "'..' component (path traversal)")
    if any(":" in p for p in parts):
        raise _unsafe(raw, "':' in a name (drive or alternate data stream on Windows)")
    if not parts:
        raise _unsafe(raw, "empty name")
    return "/".join(parts)


def _link_inside(member: str, target: str) -> bool:
    """Textual check that a link at ``member`` pointing to ``target`` stays inside the root."""
    if not target or target.startswith("/") or "\\" in target or (len(target) > 1 and target[1] == ":"):
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(member), target))
    return not (joined == ".." or joined.startswith("../"))


def _check_plan(members: list[_Member], limits: ArchiveLimits) -> None:
    """Refuse the archive as a whole before anything is written."""
    if len(members) > limits.max_entries:
        raise _too_large("entry count", len(members), limits.max_entries)
    seen: dict[str, str] = {}
    links = {m.name for m in members if m.kind == "symlink"}
    leaves = {m.name for m in members if m.kind != "dir"}
    total = 0
    for m in members:
        key = m.name
        if key in seen and not (m.kind == "dir" and seen[key] == "dir"):
            raise _unsafe(m.name, "duplicate entry")
        seen[key] = m.kind
        parts = m.name.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in links:
                raise _unsafe(m.name, "path goes through a symlink in the archive")
            if prefix in leaves:
                raise _unsafe(m.name, f"parent {prefix!r} is a file in the archive")
        if m.kind == "symlink" and not _link_inside(m.name, m.link):
            raise _unsafe(m.name, f"symlink to {m.link!r} points outside the target")
        if m.size > limits.max_entry_bytes:
            raise _too_large("entry size", m.size, limits.max_entry_bytes, m.name)
        total += m.size
        if total > limits.max_total_bytes:
            raise _too_large("total uncompressed size", total, limits.max_total_bytes)


def _case_insensitive(folder: Path) -> bool:
    """Does ``folder``'s filesystem ignore case? Its own name with the case of every letter
    swapped names the same folder only there (a stat, no probe file written and removed)."""
    twin = folder.with_name(folder.name.swapcase())
    if twin.name == folder.name:  # no letter to swap: write a probe
        probe = folder / "cAsE-pRoBe"
        probe.touch()
        try:
            return (folder / "case-probe").exists()
        finally:
            probe.unlink()
    try:
        return os.path.samefile(folder, twin)
    except OSError:
        return False


def _check_case_clashes(members: list[_Member]) -> None:
    seen: dict[str, str] = {}
    for m in members:
        low = m.name.lower()
        if low in seen and seen[low] != m.name:
            raise _unsafe(m.name, f"differs from {seen[low]!r} only by case on a case-insensitive filesystem")
        seen.setdefault(low, m.name)


class _Writer:
    """Writes checked members below ``root``; links are created last and re-verified.

    Each folder is created and checked (its real path inside the root) once, not once per file:
    the root is a fresh private folder and links only appear in ``finish``, so a folder checked
    once stays inside. Files are opened with ``O_EXCL | O_NOFOLLOW`` all the same.
    """

    def __init__(self, root: Path, limits: ArchiveLimits, tap: TapFactory | None = None):
        self.root = root
        self.base = os.fspath(root)
        self.real_root = os.path.realpath(root)
        self.limits = limits
        self.tap = tap
        self.total = 0
        self.written: list[str] = []
        self.links: list[_Member] = []
        self.folders: set[str] = {""}  # relative folders made and checked

    def _dest(self, name: str) -> Path:
        dest = self.root.joinpath(*name.split("/"))
        parent = os.path.realpath(dest.parent)
        if parent != self.real_root and not parent.startswith(self.real_root + os.sep):
            raise _unsafe(name, "resolves outside the target")
        return dest

    def _folder(self, rel: str, name: str) -> None:
        """Make the relative folder ``rel`` (and its parents) once; check where it resolves."""
        if rel in self.folders:
            return
        parent, _, _ = rel.rpartition("/")
        self._folder(parent, name)
        path = os.path.join(self.base, *rel.split("/"))
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        real = os.path.realpath(path)
        if not real.startswith(self.real_root + os.sep):
            raise _unsafe(name, "resolves outside the target")
        self.folders.add(rel)

    def directory(self, m: _Member) -> None:
        self._folder(m.name, m.name)

    def file(self, m: _Member, stream: IO[bytes]) -> None:
        self._folder(m.name.rpartition("/")[0], m.name)
        dest = os.path.join(self.base, *m.name.split("/"))
        tap = self.tap(m.name) if self.tap is not None else None
        written = 0
        mode = 0o755 if m.mode & 0o111 else 0o644
        fd = os.open(dest, _OPEN_FLAGS, mode)
        try:  # the raw descriptor: no buffered file object per member
            while True:
                chunk = stream.read(_CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                self.total += len(chunk)
                # declared sizes can lie: count what really comes out
                if written > max(m.size, 0) and written > self.limits.max_entry_bytes:
                    raise _too_large("entry size", written, self.limits.max_entry_bytes, m.name)
                if self.total > self.limits.max_total_bytes:
                    raise _too_large("total uncompressed size", self.total, self.limits.max_total_bytes)
                _write_all(fd, chunk)
                if tap is not None:
                    tap.feed(chunk)
            if tap is not None:
                tap.done(dest, os.fstat(fd).st_mode, written)
        finally:
            os.close(fd)
        self.written.append(m.name)

    def finish(self) -> list[str]:
        for m in self.links:
            dest = self._dest(m.name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.symlink(m.link, dest)
            except OSError as exc:
                raise _unsafe(m.name, f"cannot create symlink here: {exc}") from exc
        for m in self.links:  # chains of links are only visible once all exist
            real = os.path.realpath(self.root.joinpath(*m.name.split("/")))
            if real != self.real_root and not real.startswith(self.real_root + os.sep):
                raise _unsafe(m.name, f"symlink to {m.link!r} resolves outside the target")
            self.written.append(m.name)
        return sorted(self.written)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _staged(target: Path, body: Callable[[Path], list[str]], *, in_place: bool = False) -> list[str]:
    """Run ``body`` in a private sibling folder, then rename it onto ``target`` (absent or empty).

    ``in_place``: ``target`` does not exist and sits in a private folder its caller removes on
    failure (a staging folder): ``body`` writes straight into it, no sibling and rename."""
    target = Path(target).absolute()
    if in_place:
        target.mkdir()  # FileExistsError when it exists: a caller bug
        return body(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        # a caller bug, not bad input: operations always extract into a fresh staging folder
        raise FileExistsError(f"extraction target {str(target)!r} exists and is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    # ends in ".disabled" so ComfyUI never imports it if a crash leaves it behind
    work = target.parent / f".{target.name}.extract-{secrets.token_hex(4)}.disabled"
    work.mkdir()
    try:
        paths = body(work)
        if target.exists():
            target.rmdir()
        os.replace(work, target)
        return paths
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=False, onerror=None)


# --- zip ---------------------------------------------------------------------------------
def _zip_members(zf: zipfile.ZipFile, limits: ArchiveLimits) -> Iterator[tuple[_Member, zipfile.ZipInfo]]:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise _too_large("entry count", len(infos), limits.max_entries)
    for info in infos:
        name = safe_member_name(info.filename)
        unix_mode = (info.external_attr >> 16) & 0xFFFF
        ftype = stat.S_IFMT(unix_mode) if info.create_system == 3 else 0
        if info.is_dir() or ftype == stat.S_IFDIR:
            yield _Member(name, "dir", 0, 0o755), info
        elif ftype == stat.S_IFLNK:
            if info.file_size > 4096:
                raise _unsafe(name, "symlink target too long")
            link = zf.read(info).decode("utf-8", "replace")
            yield _Member(name, "symlink", 0, 0, link), info
        elif ftype in (0, stat.S_IFREG):
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > _RATIO_FLOOR and ratio > limits.max_ratio:
                raise _too_large("compression ratio", round(ratio, 1), limits.max_ratio, name)
            yield _Member(name, "file", info.file_size, unix_mode & 0o777), info
        else:
            raise _unsafe(name, "special file (device, FIFO or socket)")


def extract_zip(
    archive: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    limits: ArchiveLimits = ArchiveLimits(),
    tap: TapFactory | None = None,
    in_place: bool = False,
) -> list[str]:
    """Extract a zip into ``target`` (created; must be absent or empty); return the extracted
    relative paths (files and links, posix separators) for a ``.tracking`` file.

    ``tap(name)`` may return a ``FileTap`` that sees each regular file's bytes as they are
    written (inspection and hashing in the same pass; nothing is read twice). ``in_place``: the
    caller's private staging folder holds ``target`` and is removed on failure, so no sibling
    folder is needed to keep ``target`` untouched."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveInvalid(f"not a readable zip archive: {exc}", details={"archive": str(archive)}) from exc
    with zf:
        pairs = list(_zip_members(zf, limits))
        members = [m for m, _ in pairs]
        _check_plan(members, limits)
        total = sum(m.size for m in members)
        packed = max(os.path.getsize(archive), 1)
        if total > _RATIO_FLOOR and total / packed > limits.max_ratio:
            raise _too_large("compression ratio", round(total / packed, 1), limits.max_ratio)

        def body(work: Path) -> list[str]:
            if _case_insensitive(work):
                _check_case_clashes(members)
            writer = _Writer(work, limits, tap)
            for m, info in pairs:
                if m.kind == "dir":
                    writer.directory(m)
                elif m.kind == "symlink":
                    writer.links.append(m)
                else:
                    try:
                        with zf.open(info) as src:
                            writer.file(m, src)
                    except (zipfile.BadZipFile, EOFError, NotImplementedError) as exc:
                        raise ArchiveInvalid(
                            f"entry {m.name!r} is damaged or unsupported: {exc}", details={"entry": m.name}
                        ) from exc
            return writer.finish()

        return _staged(Path(target), body, in_place=in_place)


# --- tar -------------------------------------------------------------------------------
def extract_tar(
    archive: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    limits: ArchiveLimits = ArchiveLimits(),
    tap: TapFactory | None = None,
    in_place: bool = False,
) -> list[str]:
    """Extract a tar, tar.gz, tar.bz2 or tar.xz archive; same rules and result as ``extract_zip``.

    Hard links, devices and FIFOs are refused; the compression ratio is judged on the whole file.
    """
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveInvalid(f"not a readable tar archive: {exc}", details={"archive": str(archive)}) from exc
    packed = max(os.path.getsize(archive), 1)
    with tf:
        try:
            infos: list[tarfile.TarInfo] = []
            for info in tf:  # reads headers only; stops early on a cap
                infos.append(info)
                if len(infos) > limits.max_entries:
                    raise _too_large("entry count", len(infos), limits.max_entries)
        except tarfile.TarError as exc:
            raise ArchiveInvalid(f"damaged tar archive: {exc}", details={"archive": str(archive)}) from exc
        members: list[_Member] = []
        for info in infos:
            name = safe_member_name(info.name)
            if info.isdir():
                members.append(_Member(name, "dir", 0, 0o755))
            elif info.issym():
                members.append(_Member(name, "symlink", 0, 0, info.linkname))
            elif info.islnk():
                raise _unsafe(name, f"hard link to {info.linkname!r}")
            elif info.isreg():
                members.append(_Member(name, "file", info.size, info.mode & 0o777))
            else:
                raise _unsafe(name, "special file (device, FIFO or socket)")
        _check_plan(members, limits)
        total = sum(m.size for m in members)
        if total > _RATIO_FLOOR and total / packed > limits.max_ratio:
            raise _too_large("compression ratio", round(total / packed, 1), limits.max_ratio)

        def body(work: Path) -> list[str]:
            if _case_insensitive(work):
                _check_case_clashes(members)
            writer = _Writer(work, limits, tap)
            for m, info in zip(members, infos, strict=True):
                if m.kind == "dir":
                    writer.directory(m)
                elif m.kind == "symlink":
                    writer.links.append(m)
                else:
                    src = tf.extractfile(info)
                    if src is None:
                        raise ArchiveInvalid(f"entry {m.name!r} has no data", details={"entry": m.name})
                    with src:
                        writer.file(m, src)
            return writer.finish()

        try:
            return _staged(Path(target), body, in_place=in_place)
        except (tarfile.TarError, EOFError) as exc:
            raise ArchiveInvalid(f"damaged tar archive: {exc}", details={"archive": str(archive)}) from exc


def extract_archive(
    archive: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    limits: ArchiveLimits = ArchiveLimits(),
    tap: TapFactory | None = None,
    in_place: bool = False,
) -> list[str]:
    """Extract a zip or tar archive, chosen by its content (not its name)."""
    if zipfile.is_zipfile(archive):
        return extract_zip(archive, target, limits=limits, tap=tap, in_place=in_place)
    try:
        is_tar = tarfile.is_tarfile(archive)
    except OSError as exc:
        raise ArchiveInvalid(f"cannot read archive: {exc}", details={"archive": str(archive)}) from exc
    if is_tar:
        return extract_tar(archive, target, limits=limits, tap=tap, in_place=in_place)
    raise ArchiveInvalid(
        f"{os.fspath(archive)!r} is neither a zip nor a tar archive", details={"archive": str(archive)}
    )
