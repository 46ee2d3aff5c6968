"""The snapshot document: frozen records, the JSON shape, and validation with coded errors.

A snapshot says what a ComfyUI tree looked like: every node pack (git remote and commit,
registry id and version, single files with their sha256), the Python packages of the ComfyUI
environment, the models the Manager knows, the effective (non-secret) config and which pack
required which package. ``Snapshot.from_dict`` refuses anything a restore could misuse (a pack
name that is a path, a commit that is not hex) before a single file is touched.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging.utils import canonicalize_name

from ..errors import SnapshotInvalid
from ..inventory import normalise_remote

FORMAT = "comfyui-offline-manager/snapshot"
FORMAT_VERSION = 1
PACK_KINDS = ("git", "cnr", "file", "folder", "unknown")
PIP_KINDS = ("index", "url", "local")  # classic flags: --pip-non-url / -non-local-url / -local-url

_HEX_RE = re.compile(r"^[0-9a-f]{7,64}$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]{0,99}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_PIP_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


def jsonable(value: Any) -> Any:
    """A JSON-ready copy: dataclasses (nested too), mappings, tuples and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


class _Record:
    """``to_dict`` for the records of this package (nested records become plain JSON)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = jsonable(self)  # a dataclass becomes a dict
        return out


def safe_entry_name(name: str) -> bool:
    """True for a single path component usable as a ``custom_nodes`` entry (no '/', no '..')."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 255
        and not name.startswith(".")
        and not any(c in name for c in "/\\\x00")
        and name.strip() == name
        and ":" not in name
    )


def safe_relative_path(path: str) -> bool:
    """True for a relative path of safe components (a model file inside its folder)."""
    if not isinstance(path, str) or not path or len(path) > 1024:
        return False
    return all(safe_entry_name(part) for part in path.split("/"))


@dataclass(frozen=True)
class EntryProblem(_Record):
    """One snapshot entry a restore will not act on: ``refused`` (hostile or unusable: the whole
    restore is refused before its first change) or ``skipped`` (left alone, reported)."""

    field: str  # "packs[3].url", "pips['--index-url x']"
    entry: str  # the pack or package it belongs to, as shown
    problem: str
    status: str = "refused"  # refused | skipped

    def describe(self) -> str:
        return f"{self.field} ({self.entry}): {self.problem}"


@dataclass(frozen=True)
class PackState(_Record):
    """One node pack as captured: enough to find it again and to reinstall it."""

    name: str  # entry name without disabled decoration ("pack", "x.py")
    kind: str  # one of PACK_KINDS
    enabled: bool = True
    id: str = ""  # registry id, catalog id or the name
    url: str = ""  # git remote URL
    commit: str = ""  # git commit
    branch: str = ""  # git branch ("" when detached)
    version: str = ""  # registry version (cnr), pyproject version otherwise
    cnr_id: str = ""  # [project] name of pyproject.toml, when present
    sha256: str = ""  # single-file packs

    @property
    def key(self) -> str:
        """Identity across snapshots: repository URL, registry id, or the entry name."""
        if self.kind == "git" and self.url:
            return "git:" + normalise_remote(self.url)
        if self.kind == "cnr":
            return "cnr:" + (self.cnr_id or self.id or self.name).lower()
        if self.kind == "file":
            return "file:" + self.name.lower()
        return "dir:" + self.name.lower()

    @property
    def label(self) -> str:
        return self.id or self.name

    def describe(self) -> str:
        """Short human form: ``name (git abc1234)``, ``id@1.2.0 (registry)``."""
        state = "" if self.enabled else ", disabled"
        if self.kind == "git":
            return f"{self.name} (git {self.commit[:10] or '?'}{state})"
        if self.kind == "cnr":
            return f"{self.label}@{self.version or '?'} (registry{state})"
        return f"{self.name} ({self.kind}{state})"


@dataclass(frozen=True)
class PythonPackage(_Record):
    """One distribution of the ComfyUI environment."""

    name: str  # canonical name
    version: str  # "" only for a URL install read from a classic snapshot
    kind: str = "index"  # index | url | local
    source: str = ""  # direct URL (vcs: "git+https://...@<commit>") or file:// URL

    @property
    def requirement(self) -> str:
        """What an installer is given to put exactly this back."""
        if self.kind == "index" or not self.source:
            return f"{self.name}=={self.version}"
        return f"{self.name} @ {self.source}"


@dataclass(frozen=True)
class ModelState(_Record):
    """One model file the Manager knows (sha256 empty when it was not computed)."""

    folder: str  # models sub-folder name: checkpoints, loras, ...
    name: str  # file name, may contain sub-folders ("sd/x.safetensors")
    size: int = 0
    sha256: str = ""

    @property
    def key(self) -> str:
        return f"{self.folder}/{self.name}"


@dataclass(frozen=True)
class Snapshot(_Record):
    """A whole captured state. ``origin`` is ``ours`` or ``classic`` (read from the old format)."""

    created_at: str
    packs: tuple[PackState, ...] = ()
    python: tuple[PythonPackage, ...] = ()
    models: tuple[ModelState, ...] = ()
    comfyui: str | None = None  # ComfyUI version or commit, when known
    python_version: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # pack -> package names
    reason: str = "manual"  # manual | auto:<why>
    origin: str = "ours"
    notes: tuple[str, ...] = ()
    format_version: int = FORMAT_VERSION
    # entries a reader left out or found unusable (classic ``pips`` lines); never stored, read again each load
    entry_problems: tuple[EntryProblem, ...] = ()

    @property
    def auto(self) -> bool:
        return self.reason.startswith("auto")

    def summary(self) -> dict[str, Any]:
        """Counts shown in listings."""
        return {
            "packs": len(self.packs),
            "enabled": sum(1 for p in self.packs if p.enabled),
            "disabled": sum(1 for p in self.packs if not p.enabled),
            "python_packages": len(self.python),
            "models": len(self.models),
            "comfyui": self.comfyui,
            "reason": self.reason,
            "origin": self.origin,
        }

    # -- JSON ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The stored document (keys in a stable order; empty optional fields left out)."""

        def pack(p: PackState) -> dict[str, Any]:
            out: dict[str, Any] = {"name": p.name, "kind": p.kind, "enabled": p.enabled}
            for key in ("id", "url", "commit", "branch", "version", "cnr_id", "sha256"):
                if getattr(p, key):
                    out[key] = getattr(p, key)
            return out

        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "created_at": self.created_at,
            "reason": self.reason,
            "origin": self.origin,
            "comfyui": self.comfyui,
            "packs": [pack(p) for p in self.packs],
            "python": {
                "version": self.python_version,
                "packages": [
                    {"name": p.name, "version": p.version, "kind": p.kind, **({"source": p.source} if p.source else {})}
                    for p in self.python
                ],
            },
            "models": [
                {"folder": m.folder, "name": m.name, "size": m.size, **({"sha256": m.sha256} if m.sha256 else {})}
                for m in self.models
            ],
            "config": dict(self.config),
            "dependencies": {k: list(v) for k, v in self.dependencies.items()},
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, doc: Any, *, where: str = "snapshot") -> Snapshot:
        """Validate and build; raises ``SnapshotInvalid`` naming the first bad field."""
        return _Reader(where).snapshot(doc)


# --- validation -----------------------------------------------------------------------------
class _Reader:
    def __init__(self, where: str):
        self.where = where

    def bad(self, fld: str, problem: str) -> SnapshotInvalid:
        return SnapshotInvalid(
            f"{self.where}: {fld}: {problem}",
            hint="The file is not a snapshot this Manager can restore; take a new one with `cm-cli.py snapshot save`, "
            "or fix the named field (see docs/snapshots.md).",
            details={"field": fld, "problem": problem, "where": self.where},
        )

    def obj(self, value: Any, fld: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.bad(fld, f"expected an object, found {type(value).__name__}")
        return value

    def lst(self, value: Any, fld: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.bad(fld, f"expected a list, found {type(value).__name__}")
        return value

    def text(
        self, value: Any, fld: str, *, pattern: re.Pattern[str] | None = None, empty: bool = True, limit: int = 4096
    ) -> str:
        if value is None and empty:
            return ""
        if not isinstance(value, str):
            raise self.bad(fld, f"expected text, found {type(value).__name__}")
        if not value and not empty:
            raise self.bad(fld, "must not be empty")
        if len(value) > limit or any(c in value for c in "\x00\r\n"):
            raise self.bad(fld, "too long or contains a line break")
        if value and pattern is not None and not pattern.match(value):
            raise self.bad(fld, f"{value[:80]!r} is not allowed here")
        return value

    def flag(self, value: Any, fld: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.bad(fld, "expected true or false")
        return value

    def snapshot(self, doc: Any) -> Snapshot:
        doc = self.obj(doc, "document")
        if doc.get("format") != FORMAT:
            raise self.bad("format", f"expected {FORMAT!r}, found {doc.get('format')!r}")
        version = doc.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise self.bad("format_version", "expected a whole number >= 1")
        if version > FORMAT_VERSION:
            raise self.bad(
                "format_version",
                f"written by a newer Manager (format {version}, this one reads "
                f"up to {FORMAT_VERSION}); update the Manager",
            )
        packs = tuple(self.pack(p, f"packs[{i}]") for i, p in enumerate(self.lst(doc.get("packs"), "packs")))
        seen: dict[tuple[str, bool], int] = {}
        for i, p in enumerate(packs):
            slot = (p.key, p.enabled)
            if slot in seen:
                raise self.bad(f"packs[{i}]", f"same pack as packs[{seen[slot]}] ({p.key})")
            seen[slot] = i
        py = self.obj(doc.get("python") or {}, "python")
        pips = tuple(
            self.pip(p, f"python.packages[{i}]") for i, p in enumerate(self.lst(py.get("packages"), "python.packages"))
        )
        models = tuple(self.model(m, f"models[{i}]") for i, m in enumerate(self.lst(doc.get("models"), "models")))
        config = dict(self.obj(doc.get("config") or {}, "config"))
        deps_raw = self.obj(doc.get("dependencies") or {}, "dependencies")
        deps = {
            str(k): tuple(self.text(n, f"dependencies.{k}") for n in self.lst(v, f"dependencies.{k}"))
            for k, v in deps_raw.items()
        }
        comfyui = doc.get("comfyui")
        if comfyui is not None:
            comfyui = self.text(comfyui, "comfyui", limit=200)
        return Snapshot(
            created_at=self.text(doc.get("created_at"), "created_at", empty=False, limit=64),
            packs=packs,
            python=pips,
            models=models,
            comfyui=comfyui or None,
            python_version=self.text(py.get("version"), "python.version", limit=40),
            config=config,
            dependencies=deps,
            reason=self.text(doc.get("reason") or "manual", "reason", limit=120),
            origin=self.text(doc.get("origin") or "ours", "origin", limit=20),
            notes=tuple(self.text(n, "notes") for n in self.lst(doc.get("notes"), "notes")),
            format_version=version,
        )

    def pack(self, raw: Any, fld: str) -> PackState:
        d = self.obj(raw, fld)
        name = self.text(d.get("name"), f"{fld}.name", empty=False, limit=255)
        if not safe_entry_name(name):
            raise self.bad(f"{fld}.name", f"{name[:80]!r} is not a plain folder or file name")
        kind = self.text(d.get("kind"), f"{fld}.kind", empty=False)
        if kind not in PACK_KINDS:
            raise self.bad(f"{fld}.kind", f"{kind!r} is not one of {', '.join(PACK_KINDS)}")
        state = PackState(
            name=name,
            kind=kind,
            enabled=self.flag(d.get("enabled"), f"{fld}.enabled", True),
            id=self.text(d.get("id"), f"{fld}.id", pattern=_ID_RE),
            url=self.text(d.get("url"), f"{fld}.url", limit=2048),
            commit=self.text(d.get("commit"), f"{fld}.commit", pattern=_HEX_RE).lower(),
            branch=self.text(d.get("branch"), f"{fld}.branch", limit=255),
            version=self.text(d.get("version"), f"{fld}.version", pattern=_VERSION_RE),
            cnr_id=self.text(d.get("cnr_id"), f"{fld}.cnr_id", pattern=_ID_RE),
            sha256=self.text(d.get("sha256"), f"{fld}.sha256", pattern=_SHA256_RE).lower(),
        )
        if kind == "git" and state.url.startswith("-"):
            raise self.bad(f"{fld}.url", "a URL must not start with '-'")
        if kind == "cnr" and not (state.cnr_id or state.id):
            raise self.bad(f"{fld}.id", "a registry pack needs its id")
        return state

    def pip(self, raw: Any, fld: str) -> PythonPackage:
        d = self.obj(raw, fld)
        name = self.text(d.get("name"), f"{fld}.name", empty=False, pattern=_PIP_NAME_RE, limit=200)
        kind = self.text(d.get("kind") or "index", f"{fld}.kind")
        if kind not in PIP_KINDS:
            raise self.bad(f"{fld}.kind", f"{kind!r} is not one of {', '.join(PIP_KINDS)}")
        source = self.text(d.get("source"), f"{fld}.source", limit=2048)
        if kind != "index" and not source:
            raise self.bad(f"{fld}.source", f"a {kind} package needs its source URL")
        # a URL install read from a classic snapshot has no known version
        version = self.text(d.get("version"), f"{fld}.version", empty=kind != "index", pattern=_VERSION_RE)
        return PythonPackage(name=str(canonicalize_name(name)), version=version, kind=kind, source=source)

    def model(self, raw: Any, fld: str) -> ModelState:
        d = self.obj(raw, fld)
        folder = self.text(d.get("folder"), f"{fld}.folder", empty=False, limit=255)
        name = self.text(d.get("name"), f"{fld}.name", empty=False, limit=1024)
        if not safe_entry_name(folder) or not safe_relative_path(name):
            raise self.bad(fld, f"{folder}/{name} is not a safe relative path")
        size = d.get("size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise self.bad(f"{fld}.size", "expected a whole number of bytes")
        return ModelState(
            folder=folder,
            name=name,
            size=size,
            sha256=self.text(d.get("sha256"), f"{fld}.sha256", pattern=_SHA256_RE).lower(),
        )
