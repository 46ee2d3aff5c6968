"""The model list with installed state, and the inventory of model files on disk.

``list_models`` maps every catalog entry to its folder (``folders.place``); an entry that
cannot be mapped or downloaded stays in the list with a ``problem`` (code and message) instead
of disappearing, so the panel can say why. ``installed_models`` walks the model folders for
snapshots: every file with its folder, relative name, size and (on request) sha256.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ManagerError, ModelSourceUnsupported, NotFound
from ..records import ModelEntry, Notice
from .folders import ModelFolders, Placement, load_model_folders, place
from .paths import TEMP_SUFFIXES
from .verify import HashCache

HF_FILENAME = "<huggingface>"


def model_id(entry: ModelEntry) -> str:
    """The stable id of a catalog model: ``<save_path>/<filename>`` (``default/<file>`` by type)."""
    return f"{(entry.save_path or 'default').strip().replace(chr(92), '/').strip('/')}/{entry.filename}"


def source_problem(entry: ModelEntry) -> ModelSourceUnsupported | None:
    """Why this entry cannot be fetched as one file, or None when it can."""
    if entry.filename == HF_FILENAME:
        return ModelSourceUnsupported(
            f"model {entry.name!r} is a Hugging Face repository snapshot ({entry.url}), not one file",
            details={"name": entry.name, "url": entry.url},
        )
    scheme = urllib.parse.urlsplit(entry.url).scheme.lower() if "://" in entry.url else ""
    if scheme not in ("http", "https", "file"):
        return ModelSourceUnsupported(
            f"model {entry.name!r} has no downloadable URL ({entry.url!r})",
            details={"name": entry.name, "url": entry.url},
        )
    return None


@dataclass(frozen=True)
class ModelItem:
    """One catalog model with where it goes and whether it is there."""

    id: str
    entry: ModelEntry
    placement: Placement | None
    installed: bool = False
    installed_path: str = ""
    problem_code: str = ""
    problem: str = ""

    @property
    def installable(self) -> bool:
        return self.placement is not None and not self.problem_code

    def to_dict(self) -> dict[str, Any]:
        out = self.entry.to_dict()
        out.update(
            {
                "id": self.id,
                "installed": self.installed,
                "installed_path": self.installed_path,
                "installable": self.installable,
                "problem": {"code": self.problem_code, "message": self.problem} if self.problem_code else None,
            }
        )
        out.update(
            self.placement.to_dict()
            if self.placement
            else {"folder": "", "kind": "", "relpath": "", "path": "", "folder_dir": ""}
        )
        return out


@dataclass(frozen=True)
class ModelListing:
    """Every catalog model mapped; ``unmapped`` are the ones with no folder."""

    items: tuple[ModelItem, ...]
    notices: tuple[Notice, ...] = field(default=())

    @property
    def unmapped(self) -> tuple[ModelItem, ...]:
        return tuple(i for i in self.items if i.placement is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": [i.to_dict() for i in self.items],
            "notices": [n.to_dict() for n in self.notices],
            "unmapped": [i.id for i in self.unmapped],
        }


def _item(entry: ModelEntry, mid: str, folders: ModelFolders) -> ModelItem:
    problem = source_problem(entry)
    try:
        if entry.filename == HF_FILENAME:  # a repository lands as a folder named after it
            placement = place(entry, folders, filename=entry.url.rstrip("/").rsplit("/", 1)[-1])
        else:
            placement = place(entry, folders)
    except ManagerError as exc:
        return ModelItem(mid, entry, None, problem_code=exc.code, problem=exc.message)
    found = ""
    for cand in placement.candidates():
        if cand.is_dir() if entry.filename == HF_FILENAME else cand.is_file():
            found = str(cand)
            break
    return ModelItem(
        mid,
        entry,
        placement,
        installed=bool(found),
        installed_path=found,
        problem_code=problem.code if problem else "",
        problem=problem.message if problem else "",
    )


def list_models(models: Iterable[ModelEntry], folders: ModelFolders) -> ModelListing:
    """Map every entry to its folder and installed state; duplicate ids get a ``@<url hash>`` suffix."""
    items: list[ModelItem] = []
    seen: set[str] = set()
    for entry in models:
        mid = model_id(entry)
        if mid in seen:
            mid = f"{mid}@{hashlib.sha1(entry.url.encode()).hexdigest()[:8]}"
        seen.add(mid)
        items.append(_item(entry, mid, folders))
    return ModelListing(tuple(items), notices=folders.notices)


def catalog_models(manager: Any, *, refresh: str = "auto", folders: ModelFolders | None = None) -> ModelListing:
    """The active catalog's models mapped for ``manager`` (its host folders and yaml)."""
    view = manager.catalog_view(refresh=refresh)
    listing = list_models(view.catalog.models, folders or load_model_folders(manager.host))
    return ModelListing(listing.items, notices=tuple(view.notices) + listing.notices)


def find_model(items: Sequence[ModelItem], ref: str) -> ModelItem:
    """Look a model up by id, then name, then URL, then file name (each must be unambiguous)."""
    ref = ref.strip()
    keys: tuple[Callable[[ModelItem], str], ...] = (
        lambda i: i.id,
        lambda i: i.entry.name,
        lambda i: i.entry.url,
        lambda i: i.entry.filename,
    )
    for key in keys:
        hits = [i for i in items if key(i) == ref]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise NotFound(
                f"{ref!r} matches {len(hits)} models: " + ", ".join(h.id for h in hits[:5]),
                hint="Use the model id (save_path/filename) shown by the model list.",
                details={"ref": ref, "matches": [h.id for h in hits]},
            )
    raise NotFound(
        f"no model {ref!r} in the catalog",
        hint="Check the id in the model list (cm-cli.py models), or refresh the channel "
        "cache (cm-cli.py update-cache).",
        details={"ref": ref},
    )


# -- what is on disk ----------------------------------------------------------------------
@dataclass(frozen=True)
class InstalledModel:
    """One model file on disk, as snapshots record it."""

    folder: str
    name: str  # relative to the folder directory, '/'-separated
    size: int
    sha256: str | None = None
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "name": self.name, "size": self.size, "sha256": self.sha256, "path": self.path}


def _skip_file(name: str) -> bool:
    return (
        name.startswith(".")
        or name.lower().endswith(TEMP_SUFFIXES)
        or (name.startswith("put_") and name.endswith("_here"))
    )


def scan_models(folders: ModelFolders) -> list[tuple[str, str, Path]]:
    """(folder, relative name, path) of every model file, each file once (first folder wins).

    Directories registered for another folder are not descended into from a parent, and
    symlinked folders are followed once (loops are cut).
    """
    registered: dict[Path, str] = {}
    for name, dirs in folders.folders.items():
        for d in dirs:
            registered.setdefault(d, name)
    roots: list[tuple[str, Path]] = [(name, d) for d, name in registered.items()]
    # Folders of node packs that ComfyUI does not know (models/ipadapter, models/sams, ...).
    for base in dict.fromkeys((folders.models_dir, folders.models_base)):
        try:
            subdirs = [e for e in os.scandir(base) if e.is_dir() and not e.name.startswith(".")]
        except OSError:
            continue
        for e in sorted(subdirs, key=lambda e: e.name):
            p = Path(e.path)
            if p not in registered and not any(p == d or p in d.parents for d in registered):
                roots.append((e.name, p))
    seen_files: set[str] = set()
    out: list[tuple[str, str, Path]] = []
    for folder, root in roots:
        visited: set[str] = set()
        for cur, dirnames, filenames in os.walk(root, followlinks=True):
            real = os.path.realpath(cur)
            if real in visited:
                dirnames[:] = []
                continue
            visited.add(real)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and Path(cur, d) not in registered)
            for fname in sorted(filenames):
                if _skip_file(fname):
                    continue
                full = Path(cur, fname)
                key = os.path.realpath(full)
                if key in seen_files or not full.is_file():
                    continue
                seen_files.add(key)
                out.append((folder, full.relative_to(root).as_posix(), full))
    return out


def installed_models(
    manager: Any, *, with_sha256: bool = False, cache: HashCache | None = None, folders: ModelFolders | None = None
) -> list[InstalledModel]:
    """Every model file in ``manager``'s model folders. sha256 is filled from the hash cache when
    cached, and computed (then cached) when ``with_sha256`` is true; otherwise None."""
    folders = folders or load_model_folders(manager.host)
    cache = cache or HashCache.for_manager(manager)
    out: list[InstalledModel] = []
    for folder, name, path in scan_models(folders):
        try:
            size = path.stat().st_size
            digest = cache.sha256(path) if with_sha256 else cache.lookup(path)
        except FileNotFoundError:
            continue  # removed while we walked
        out.append(InstalledModel(folder, name, size, digest, str(path)))
    cache.save()
    return out
