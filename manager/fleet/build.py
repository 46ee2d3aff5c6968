"""``mirror build DIR``: lay this box's offline stores out as a static mirror (docs/fleet.md).

Sections, each from its store in ``Layout``:

=========  ==============================  ======================================================
section    from                            as
=========  ==============================  ======================================================
channel    ``local_channel_dir``           ``channel/*.json`` (a ``channel_url``)
git        ``git_mirror_dir``              ``git/<host>/<path>.git`` for dumb HTTP (+ ``<path>``)
pypi       ``wheelhouse_dir``              ``wheels/`` and the PEP 503 index ``simple/``
registry   ``cache/archives/cnr``          ``registry/`` (archives and static API answers)
models     ``model_store_dir``             ``models/`` (a ``model_store`` URL root)
=========  ==============================  ======================================================

plus ``index.html`` (every file with its size) and ``.cm-mirror.json`` (the manifest). The
target is checked before anything is written; the build happens in a staging folder beside it
and is swapped in atomically; unchanged files are kept from the previous build.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..layout import Layout
from .errors import MirrorTargetInvalid
from .index_page import render_index
from .registry_static import add_registry
from .sections import add_channel, add_git, add_models, add_wheels, bare_repos
from .tree import FileEntry, StagedTree, check_target

SECTIONS = ("channel", "git", "pypi", "registry", "models")


@dataclass(frozen=True)
class SectionSummary:
    name: str
    files: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "files": self.files, "bytes": self.bytes}


@dataclass(frozen=True)
class MirrorReport:
    """What a build laid out: per section, files written vs kept, repositories, what was skipped."""

    dest: str
    sections: tuple[SectionSummary, ...]
    written: int
    kept: int
    repositories: tuple[str, ...]
    projects: int
    skipped: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.sections)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "sections": [s.to_dict() for s in self.sections],
            "written": self.written,
            "kept": self.kept,
            "total_bytes": self.total_bytes,
            "repositories": list(self.repositories),
            "projects": self.projects,
            "skipped": list(self.skipped),
        }


def _check_dest(dest: Path, layout: Layout) -> None:
    check_target(dest)
    real = Path(os.path.realpath(dest))
    for store in (
        layout.manager_dir,
        layout.local_channel_dir,
        layout.git_mirror_dir,
        layout.wheelhouse_dir,
        layout.model_store_dir,
        layout.cache_dir,
    ):
        base = Path(os.path.realpath(store))
        if real == base or base in real.parents or real in base.parents:
            raise MirrorTargetInvalid(
                f"{dest} overlaps the store {store}: a mirror is built outside the Manager's data folder",
                hint="Name a folder outside user/__manager, e.g. /srv/comfy-mirror; nothing was written.",
                details={"path": str(dest), "store": str(store)},
            )


def build_mirror(layout: Layout, dest: Path, *, git_exe: str = "git") -> MirrorReport:
    """Lay the stores of ``layout`` out under ``dest`` (see the module doc)."""
    dest = Path(os.path.abspath(dest))
    _check_dest(dest, layout)
    if shutil.which(git_exe) is None and bare_repos(layout.git_mirror_dir):
        raise MirrorTargetInvalid(
            "git is needed to make the git mirror servable (git update-server-info) and was not found",
            hint="Install git (apt-get install git), then run cm-cli.py mirror build DIR again.",
            details={"git": git_exe},
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tree = StagedTree(dest)
    skipped: list[str] = []
    try:
        by_section: dict[str, list[FileEntry]] = {
            "channel": add_channel(tree, layout.local_channel_dir, layout.git_mirror_dir, skipped),
            "git": add_git(tree, layout.git_mirror_dir, git_exe, skipped),
            "pypi": add_wheels(tree, layout.wheelhouse_dir, skipped),
            "registry": add_registry(tree, layout.cache_dir / "archives" / "cnr", skipped),
            "models": add_models(tree, layout.model_store_dir, skipped),
        }
        repos = tuple(sorted({e.rel.split(".git/", 1)[0][len("git/") :] for e in by_section["git"]}))
        projects = len([e for e in by_section["pypi"] if e.rel.startswith("simple/") and e.rel.count("/") == 2])
        created = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
        tree.write_bytes(
            "index.html", render_index(tree.files.values(), repos=repos, host=socket.gethostname()), "index"
        )
        tree.commit({"created_at": created, "creator_host": socket.gethostname(), "sections": list(SECTIONS)})
    except BaseException:
        tree.discard()
        raise
    return MirrorReport(
        dest=str(dest),
        sections=tuple(
            SectionSummary(name, len(entries), sum(e.size for e in entries)) for name, entries in by_section.items()
        ),
        written=tree.written,
        kept=tree.kept,
        repositories=repos,
        projects=projects,
        skipped=tuple(skipped),
    )
