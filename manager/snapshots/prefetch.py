"""Clones a restore takes from the local git mirror, made side by side before its steps run.

A restore installs its packs one after the other (each step can be undone); the clones of packs
whose source is the git mirror (a bundle's copy: local, no network, no scripts) are independent,
so a small thread pool makes them first into a private folder under staging. The pack's install
step still vets the source before using its clone (``operations.sources.fetch_into`` renames it
into the step's staging folder) and clones itself when none is ready. The folder is removed when
the restore ends; after a kill, the next operation's ``prepare_tree`` drops it with the other
staging leftovers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ManagerError
from ..git_mirror import find_mirror
from ..operations.staging import new_staging_dir, remove_tree
from .plan import RestorePlan

__all__ = ["Prefetched", "prefetch_clones"]


@dataclass(frozen=True)
class Prefetched:
    root: Path | None = None
    clones: dict[tuple[str, str], Path] = field(default_factory=dict)  # (url, ref) -> a finished clone


def _wanted(manager: Any, plan: RestorePlan) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for step in plan.steps:
        p = step.params
        if step.kind != "pack_install" or p.get("kind") != "git":
            continue
        url, ref = str(p.get("url") or ""), str(p.get("commit") or p.get("branch") or "")
        if url and find_mirror(manager.git.mirror_root, url) is not None and (url, ref) not in out:
            out.append((url, ref))
    return out


@contextmanager
def prefetch_clones(manager: Any, plan: RestorePlan) -> Iterator[Prefetched]:
    """The mirror clones of ``plan``'s git installs, made in parallel (none when fewer than two)."""
    wanted = _wanted(manager, plan)
    if len(wanted) < 2:
        yield Prefetched()
        return
    root = new_staging_dir(manager.layout, "restore-prefetch")
    try:

        def one(index: int, url: str, ref: str) -> tuple[tuple[str, str], Path] | None:
            dest = root / str(index)
            try:
                manager.git.clone(url, dest, ref=ref or None)
            except (ManagerError, OSError):
                return None  # the step clones itself and reports why
            return (url, ref), dest

        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            done = list(pool.map(lambda item: one(item[0], *item[1]), enumerate(wanted)))
        yield Prefetched(root, dict(d for d in done if d is not None))
    finally:
        if os.path.lexists(root):
            remove_tree(root)
