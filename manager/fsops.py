"""Filesystem primitives that never leave a half-written file: atomic writes and locks; and the
one check that our working folders are real folders, not symbolic links (``refuse_links``)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import LockBusy, PathEscape, WorkingFolderLink

_LINK_FIX = "Remove the link (rm {path}, which deletes only the link, never what it points to), then retry."


def _link_error(path: Path, what: str, *, detail: str = "") -> WorkingFolderLink:
    try:
        target = os.readlink(path)
    except OSError:
        target = ""
    pointing = f" pointing to {target}" if target else ""
    return WorkingFolderLink(
        f"{path} ({what}) is a symbolic link{pointing}{detail}; the Manager refuses to write through links "
        "in its working folders, so nothing was written or moved",
        hint=_LINK_FIX.format(path=path),
        details={"path": str(path), "target": target, "what": what},
    )


def refuse_links(path: str | os.PathLike[str], anchor: str | os.PathLike[str], *, what: str = "working folder") -> Path:
    """Check, before any write, that ``path`` and every folder between ``anchor`` and it are real
    folders and not symbolic links; returns ``path`` (absolute).

    ``anchor`` itself may be a link: it is the place the user chose (``custom_nodes/`` or
    ``user/`` linked to another disk), and everything below it is ours. A part that does not
    exist yet is fine (it will be created as a real folder); a link, or a folder that resolves
    outside ``anchor``, raises ``WorkingFolderLink`` naming it. ``path`` outside ``anchor`` is
    ``PathEscape``.
    """
    if os.name != "nt":
        return _refuse_links_posix(os.path.abspath(path), os.path.abspath(anchor), what)
    base = Path(os.path.abspath(anchor))
    target = Path(os.path.abspath(path))
    if target != base and base not in target.parents:
        raise PathEscape(f"{target} is not inside {base}", details={"path": str(target), "allowed": [str(base)]})
    current = base
    last_real = base
    for part in target.relative_to(base).parts:
        current = current / part
        try:
            st = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            break
        if stat.S_ISLNK(st.st_mode):
            raise _link_error(current, what)
        last_real = current
    real_base = os.path.realpath(base)
    real = os.path.realpath(last_real)
    if real != real_base and not real.startswith(real_base.rstrip(os.sep) + os.sep):
        raise WorkingFolderLink(
            f"{last_real} ({what}) resolves to {real}, outside {real_base}; nothing was written or moved",
            hint="Put a real folder at that place (remove the link or mount on the way to it), then retry.",
            details={"path": str(last_real), "target": real, "what": what},
        )
    return target


def _refuse_links_posix(target: str, base: str, what: str) -> Path:
    """``refuse_links`` on POSIX, on plain strings (it runs some twenty times per operation).

    Every part from the anchor to the last existing one is lstat'ed as a real folder, so the path
    resolves inside the anchor: no ``realpath`` is needed (only Windows has link-like folders
    that lstat does not flag, junctions)."""
    if target != base:
        prefix = base if base.endswith(os.sep) else base + os.sep
        if not target.startswith(prefix):
            raise PathEscape(f"{target} is not inside {base}", details={"path": target, "allowed": [base]})
        current = base
        for part in target[len(prefix) :].split(os.sep):
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except (FileNotFoundError, NotADirectoryError):
                break
            if stat.S_ISLNK(st.st_mode):
                raise _link_error(Path(current), what)
    return Path(target)


def refuse_link_entries(folder: str | os.PathLike[str], *, what: str) -> None:
    """``WorkingFolderLink`` for the first entry of ``folder`` that is a symbolic link (a missing
    folder has none). Run after ``refuse_links(folder, ...)``: the listing must not follow a link."""
    try:
        with os.scandir(folder) as it:
            links = sorted(e.name for e in it if e.is_symlink())
    except (FileNotFoundError, NotADirectoryError):
        return
    if links:
        raise _link_error(Path(folder) / links[0], what, detail=f" ({len(links)} link(s) in {folder})")


def refuse_link_file(path: str | os.PathLike[str], *, what: str) -> None:
    """``WorkingFolderLink`` when the file ``path`` (a lock, a partial download) is a symbolic link."""
    if os.path.islink(path):
        raise _link_error(Path(path), what)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, then rename.

    A crash at any point leaves either the old file or the new one, never a mix.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=indent, ensure_ascii=False) + "\n").encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temp_files(folder: str | os.PathLike[str], *, older_than: float = 3600.0) -> int:
    """Delete ``.*.tmp`` leftovers of writers killed mid-write; returns how many went."""
    count = 0
    now = time.time()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
                with contextlib.suppress(OSError):
                    if now - entry.stat().st_mtime >= older_than:
                        os.unlink(entry.path)
                        count += 1
    return count


@contextlib.contextmanager
def file_lock(
    path: str | os.PathLike[str],
    *,
    timeout: float = 0.0,
    poll: float = 0.05,
    anchor: str | os.PathLike[str] | None = None,
) -> Iterator[None]:
    """Exclusive advisory lock shared by the server and cm-cli.

    ``flock`` is released by the kernel when the holder dies, so a SIGKILLed process never
    leaves a stale lock behind. Raises ``LockBusy`` after ``timeout`` seconds. The lock file is
    opened with ``O_NOFOLLOW``: a link planted under its name is ``WorkingFolderLink``, never
    created or truncated through. With ``anchor``, the folders between it and the lock file are
    checked first (``refuse_links``), before the folder is created.
    """
    lock_path = Path(path)
    if anchor is not None:
        refuse_links(lock_path.parent, anchor, what="lock folder")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(lock_path):
            raise _link_error(lock_path, "lock file") from None
        raise
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise LockBusy(
                        f"lock {lock_path.name} is held by another process",
                        details={"lock": str(lock_path)},
                    ) from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
