"""The local git mirror: where a bundle import puts a pack's repository, and the one lookup that
prefers it.

A remote URL ``https://github.com/o/r`` (scheme and host lower-cased, user info, a trailing
``.git`` and ``/`` dropped; ``ssh://`` and ``git@host:path`` forms too) maps to
``<git_mirror_dir>/github.com/o/r.git``. ``GitClient.resolve_remote`` asks ``find_mirror`` first,
in every network mode and before the gate: a pack that came in a bundle clones from the local
copy without network and without a config change.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

_SCP_RE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+):(?!//)(.+)$")
_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~+-]*$")
_REMOTE_SCHEMES = ("http", "https", "ssh", "git")


def mirror_relpath(url: str) -> str | None:
    """``<host>/<path>.git`` for a remote git URL; None for local paths, ``file://`` and odd URLs."""
    text = url.strip()
    host = path = ""
    if "://" in text:
        parts = urllib.parse.urlsplit(text)
        if parts.scheme.lower() not in _REMOTE_SCHEMES or not parts.hostname:
            return None
        host = parts.hostname.lower() + (f":{parts.port}" if parts.port else "")
        path = parts.path
    else:
        match = _SCP_RE.match(text)
        if not match:
            return None
        host, path = match.group(1).lower(), match.group(2)
    path = path.strip("/")
    while path.endswith(".git") or path.endswith("/"):
        path = path[:-4] if path.endswith(".git") else path[:-1]
    segments = [s for s in path.split("/") if s]
    if not segments or not all(_PART_RE.match(s) and s not in (".", "..") for s in segments):
        return None
    return f"{host}/{'/'.join(segments)}.git"


def find_mirror(root: Path | None, url: str) -> Path | None:
    """The bare repository for ``url`` under ``root`` when one is there, else None."""
    if root is None:
        return None
    rel = mirror_relpath(url)
    if rel is None:
        return None
    repo = root / rel
    if (repo / "HEAD").is_file() and (repo / "objects").is_dir() and not repo.is_symlink():
        return repo
    return None
