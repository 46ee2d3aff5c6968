"""Which bundle file a request may name: a server-side path to a plain file this process can read.

The HTTP door and the ``bundle_import`` kind check a path before anything opens it: an absolute
path, not a symbolic link, not a device, a FIFO, a socket or a folder (a FIFO would hang the
reader, a device would read forever, a link could point a request at a file it never named).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import BundleError

_HINT = (
    "Name the bundle file itself by its absolute path on the server (the file made by "
    "cm-cli.py bundle create), not a link, a folder or a device: cm-cli.py bundle verify FILE checks it."
)


class BundlePathInvalid(BundleError):
    """A bundle path that is not a plain, readable file named by an absolute path."""

    code = "bundle_path_invalid"
    http_status = 400
    default_hint = _HINT


def _refuse(path: str, why: str) -> BundlePathInvalid:
    return BundlePathInvalid(f"bundle path {path!r}: {why}", details={"path": path, "problem": why})


def bundle_source(raw: str) -> Path:
    """``raw`` as a Path when it names a regular, readable file by an absolute path; else
    ``bundle_path_invalid`` naming the problem. Nothing is opened or changed."""
    text = str(raw or "").strip()
    if not text:
        raise _refuse(text, "empty")
    if "\x00" in text:
        raise _refuse(text.replace("\x00", "\\0"), "holds a NUL character")
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        raise _refuse(text, "not an absolute path (the server's working folder is not yours)")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise _refuse(text, "no such file") from None
    except OSError as exc:
        raise _refuse(text, f"cannot be read: {exc.strerror or exc}") from None
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        raise _refuse(text, "a symbolic link (name the file it points to)")
    if stat.S_ISDIR(mode):
        raise _refuse(text, "a folder, not a bundle file")
    if not stat.S_ISREG(mode):
        raise _refuse(text, "not a regular file (a device, FIFO or socket)")
    if not os.access(path, os.R_OK):
        raise _refuse(text, "not readable by the server's user")
    return path
