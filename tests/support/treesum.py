"""Checksum listings of a folder tree, to prove what an operation did (or did not) write.

``listing(root)`` maps every entry below ``root`` (relative posix path) to a short fingerprint:
``dir``, ``file:<sha256>:<mode>`` or ``link:<target>``. Links are recorded, never followed, so
a link that points out of the tree cannot make the walk leave it. ``changes(before, after)``
names what was added, removed or modified.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


def _fingerprint(path: str, st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "link:" + os.readlink(path)
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return f"file:{digest.hexdigest()}:{stat.S_IMODE(st.st_mode) & 0o777:o}"
    return f"special:{stat.S_IFMT(st.st_mode):o}"


def listing(root: str | os.PathLike[str], *, skip: Iterable[str] = ()) -> dict[str, str]:
    """Fingerprint of every entry below ``root``; ``skip`` names relative paths (and their subtrees)
    left out, e.g. ``.git`` internals whose packing differs between two clones."""
    base = Path(root)
    skipped = tuple(s.strip("/") for s in skip)
    out: dict[str, str] = {}
    stack = [base]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            rel = Path(entry.path).relative_to(base).as_posix()
            if any(rel == s or rel.startswith(s + "/") for s in skipped):
                continue
            st = entry.stat(follow_symlinks=False)
            out[rel] = _fingerprint(entry.path, st)
            if stat.S_ISDIR(st.st_mode):
                stack.append(Path(entry.path))
    return out


@dataclass(frozen=True)
class Changes:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    modified: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)

    def outside(self, *allowed: str) -> Changes:
        """Only the changes not under one of the ``allowed`` relative folders."""
        allow = tuple(a.strip("/") for a in allowed)

        def keep(paths: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(p for p in paths if not any(p == a or p.startswith(a + "/") for a in allow))

        return Changes(keep(self.added), keep(self.removed), keep(self.modified))

    def describe(self, limit: int = 20) -> str:
        parts = []
        for label, paths in (("added", self.added), ("removed", self.removed), ("modified", self.modified)):
            if paths:
                more = f" (+{len(paths) - limit} more)" if len(paths) > limit else ""
                parts.append(f"{label}: {', '.join(paths[:limit])}{more}")
        return "; ".join(parts) or "no changes"


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> Changes:
    """What differs between two listings of the same root."""
    return Changes(
        added=tuple(sorted(set(after) - set(before))),
        removed=tuple(sorted(set(before) - set(after))),
        modified=tuple(sorted(k for k in set(before) & set(after) if before[k] != after[k])),
    )
