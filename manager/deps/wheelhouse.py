"""The offline wheelhouse: folders of wheels (and file:// simple indexes), judged before installing.

``Wheelhouse.missing`` answers "can these requirements be installed offline?" by walking the
requirements and the ``Requires-Dist`` of the chosen wheels (read from their METADATA), with
what is already installed counting as present. It is a fail-fast check with the names a user
must fetch, not a resolver: uv or pip still resolves for real afterwards.
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from .environment import TargetEnvironment

_HREF_RE = re.compile(r'href="([^"#]+)', re.I)


@dataclass(frozen=True)
class DistFile:
    path: Path
    name: str  # canonical
    version: Version
    tags: frozenset[Tag] | None  # None: an sdist


@dataclass(frozen=True)
class MissingRequirement:
    requirement: str  # as it must be fetched, e.g. "beta>=2"
    needed_by: str  # pack name, or "alpha 1.0" for a dependency of a wheel
    available: tuple[str, ...] = ()  # versions the wheelhouse does have (wrong version/platform)


def _dist_file(path: Path) -> DistFile | None:
    name = path.name
    try:
        if name.endswith(".whl"):
            project, version, _, tags = parse_wheel_filename(name)
            return DistFile(path, str(project), version, frozenset(tags))
        if name.endswith((".tar.gz", ".zip")):
            project, version = parse_sdist_filename(name)
            return DistFile(path, str(project), version, None)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return None


@dataclass
class Wheelhouse:
    """Flat folders of distribution files plus local PEP 503 index roots (``<root>/<name>/``)."""

    folders: Sequence[Path]
    index_roots: Sequence[Path] = ()
    _flat: dict[str, list[DistFile]] | None = field(default=None, repr=False)
    _indexed: dict[str, list[DistFile]] = field(default_factory=dict, repr=False)
    # Caches to share between Wheelhouse objects (the installer keeps them): a folder's listing by
    # its mtime, a wheel's parsed Requires-Dist by (path, size, mtime). Large wheelhouses are then
    # read once per change, not once per install.
    folder_cache: dict[str, tuple[int, dict[str, list[DistFile]]]] = field(default_factory=dict, repr=False)
    requires_cache: dict[tuple[str, int, int], tuple[Requirement, ...]] = field(default_factory=dict, repr=False)

    def existing_folders(self) -> list[Path]:
        return [f for f in self.folders if f.is_dir()]

    def _scan(self) -> dict[str, list[DistFile]]:
        if self._flat is None:
            flat: dict[str, list[DistFile]] = {}
            for folder in self.existing_folders():
                for name, dists in self._listing(folder).items():
                    flat.setdefault(name, []).extend(dists)
            self._flat = flat
        return self._flat

    def _listing(self, folder: Path) -> dict[str, list[DistFile]]:
        mtime = folder.stat().st_mtime_ns
        cached = self.folder_cache.get(str(folder))
        # a folder changed in the last 2 s is read again: some filesystems keep coarse mtimes
        if cached is not None and cached[0] == mtime and time.time_ns() - mtime > 2_000_000_000:
            return cached[1]
        listing: dict[str, list[DistFile]] = {}
        for entry in os.scandir(folder):
            dist = _dist_file(Path(entry.path)) if entry.is_file() else None
            if dist:
                listing.setdefault(dist.name, []).append(dist)
        self.folder_cache[str(folder)] = (mtime, listing)
        return listing

    def _from_index(self, name: str) -> list[DistFile]:
        if name not in self._indexed:
            found: list[DistFile] = []
            for root in self.index_roots:
                project = root / name
                if not project.is_dir():
                    continue
                names = {p.name for p in project.iterdir() if p.is_file()}
                page = project / "index.html"
                if page.is_file():  # links relative to the page (files may sit elsewhere)
                    for href in _HREF_RE.findall(page.read_text(encoding="utf-8", errors="replace")):
                        target = (project / urllib.parse.unquote(href)).resolve()
                        dist = _dist_file(target) if target.is_file() else None
                        if dist:
                            found.append(dist)
                for file_name in names:
                    dist = _dist_file(project / file_name)
                    if dist:
                        found.append(dist)
            self._indexed[name] = found
        return self._indexed[name]

    def files_for(self, name: str) -> list[DistFile]:
        canonical = str(canonicalize_name(name))
        flat = self._scan().get(canonical, [])
        return flat + self._from_index(canonical) if self.index_roots else flat

    def names(self) -> list[str]:
        return sorted(self._scan())

    def best(self, req: Requirement, env: TargetEnvironment) -> DistFile | None:
        """Highest matching file usable by ``env`` (wheels preferred over sdists)."""
        usable = [d for d in self.files_for(req.name) if d.tags is None or any(env.tag_supported(t) for t in d.tags)]
        matching = set(req.specifier.filter([d.version for d in usable]))
        picks = [d for d in usable if d.version in matching]
        if not picks:
            return None
        return max(picks, key=lambda d: (d.version, d.tags is not None))

    def requires(self, dist: DistFile) -> tuple[Requirement, ...]:
        """``Requires-Dist`` of a wheel (empty for an sdist: its metadata needs a build)."""
        if dist.tags is None:
            return ()
        try:
            st = dist.path.stat()
        except OSError:
            return ()
        key = (str(dist.path), st.st_size, st.st_mtime_ns)
        if key not in self.requires_cache:
            self.requires_cache[key] = _parsed(read_wheel_requires(dist.path))
        return self.requires_cache[key]

    def missing(
        self,
        wanted: Iterable[tuple[Requirement, str]],
        env: TargetEnvironment,
        installed: dict[str, str],
        *,
        local_wheels: Sequence[tuple[Path, str]] = (),
    ) -> list[MissingRequirement]:
        """Requirements (and their dependencies) neither installed nor in the wheelhouse.

        ``wanted`` pairs each requirement with who needs it; ``local_wheels`` are wheel files
        installed by path (their dependencies are checked too).
        """
        queue: list[tuple[Requirement, str, frozenset[str]]] = [(r, who, frozenset()) for r, who in wanted]
        for path, _who in local_wheels:
            dist = _dist_file(path)
            if dist:
                queue.extend(_deps_of(self.requires(dist), f"{path.name}", frozenset()))
        out: list[MissingRequirement] = []
        done: set[tuple[str, str]] = set()
        reported: set[str] = set()
        while queue:
            req, who, extras = queue.pop(0)
            if not env.marker_ok(req, extras):
                continue
            name = str(canonicalize_name(req.name))
            have = installed.get(name)
            if have is not None and not req.extras and req.specifier.contains(have, prereleases=True):
                continue
            dist = self.best(req, env)
            if dist is None:
                key = f"{name}{req.specifier}"
                if key not in reported:
                    reported.add(key)
                    versions = tuple(sorted({str(d.version) for d in self.files_for(name)}))
                    text = str(
                        Requirement(
                            f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}{req.specifier}"
                        )
                    )
                    out.append(MissingRequirement(text, who, versions))
                continue
            visit = (name, f"{dist.version}|{','.join(sorted(req.extras))}")
            if visit in done:
                continue
            done.add(visit)
            queue.extend(_deps_of(self.requires(dist), f"{dist.name} {dist.version}", frozenset(req.extras)))
        return out


def _parsed(lines: Sequence[str]) -> tuple[Requirement, ...]:
    out = []
    for line in lines:
        try:
            out.append(Requirement(line))
        except InvalidRequirement:
            continue  # a malformed dependency line of a wheel: the installer will say so
    return tuple(out)


def _deps_of(
    reqs: Sequence[Requirement], who: str, extras: frozenset[str]
) -> list[tuple[Requirement, str, frozenset[str]]]:
    return [(req, who, extras) for req in reqs]


def read_wheel_requires(path: Path) -> tuple[str, ...]:
    """``Requires-Dist`` lines of a wheel's METADATA (empty when the wheel cannot be read)."""
    try:
        with zipfile.ZipFile(path) as zf:
            meta = next((n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
            if meta is None:
                return ()
            text = zf.read(meta).decode("utf-8", errors="replace")
    except (OSError, zipfile.BadZipFile):
        return ()
    return tuple(HeaderParser().parsestr(text).get_all("Requires-Dist") or ())


def local_dir(url_or_path: str) -> Path:
    """A wheelhouse entry as a folder: ``file://`` URLs and plain paths alike."""
    if url_or_path.lower().startswith("file:"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(url_or_path).path))
    return Path(url_or_path).expanduser()
