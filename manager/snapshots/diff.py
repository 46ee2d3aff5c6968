"""Compare two snapshots: what would change to go from ``current`` to ``wanted``.

Packs are matched by identity (repository URL, registry id, entry name; see ``PackState.key``):
missing ones are ``add``, unlisted ones ``remove``, and a matched pack may need ``enable`` /
``disable`` and a ``move`` to another commit or version. Python packages are ``add`` /
``change`` / ``remove``; models are ``missing`` or ``different`` (size or sha256).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .model import ModelState, PackState, PythonPackage, Snapshot, _Record

PACK_ACTIONS = ("remove", "disable", "move", "enable", "add")


@dataclass(frozen=True)
class PackChange(_Record):
    action: str  # add | remove | enable | disable | move
    key: str
    current: PackState | None = None
    wanted: PackState | None = None

    @property
    def name(self) -> str:
        return (self.wanted or self.current).name  # type: ignore[union-attr]

    def describe(self) -> str:
        cur, want = self.current, self.wanted
        if self.action == "add" and want:
            return f"add {want.describe()}"
        if self.action == "remove" and cur:
            return f"remove {cur.describe()}"
        if self.action == "move" and cur and want:
            if want.kind == "git":
                return f"move {want.name} from {cur.commit[:10] or '?'} to {want.commit[:10]}"
            if want.kind == "cnr":
                return f"move {want.label} from {cur.version or '?'} to {want.version}"
            return f"replace {want.name} (content differs)"
        return f"{self.action} {self.name}"


@dataclass(frozen=True)
class PythonChange(_Record):
    action: str  # add | change | remove
    name: str
    current: PythonPackage | None = None
    wanted: PythonPackage | None = None

    def describe(self) -> str:
        if self.action == "add" and self.wanted:
            return f"add {self.wanted.requirement}"
        if self.action == "remove" and self.current:
            return f"remove {self.name} {self.current.version}"
        cur = self.current.version if self.current else "?"
        want = self.wanted.version or self.wanted.source if self.wanted else "?"
        return f"change {self.name} {cur} -> {want}"


@dataclass(frozen=True)
class ModelChange(_Record):
    action: str  # missing | different
    key: str
    current: ModelState | None = None
    wanted: ModelState | None = None

    def describe(self) -> str:
        if self.action == "missing":
            return f"missing model {self.key}"
        return f"different model {self.key}"


@dataclass(frozen=True)
class SnapshotDiff(_Record):
    packs: tuple[PackChange, ...] = ()
    python: tuple[PythonChange, ...] = ()
    models: tuple[ModelChange, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.packs or self.python or self.models)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for prefix, items in (("packs", self.packs), ("python", self.python), ("models", self.models)):
            for change in items:
                out[f"{prefix}.{change.action}"] = out.get(f"{prefix}.{change.action}", 0) + 1
        return out

    def lines(self) -> list[str]:
        """Human lines for the CLI and the panel (packs, then packages, then models, then notes)."""
        out = [c.describe() for c in self.packs] + [c.describe() for c in self.python]
        out += [c.describe() for c in self.models] + [f"note: {n}" for n in self.notes]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"empty": self.empty, "counts": self.counts(), "lines": self.lines(), **self.to_dict()}


def _primary(packs: Iterable[PackState], notes: list[str], side: str) -> dict[str, PackState]:
    """One pack per key: the enabled copy wins over a disabled one of the same pack."""
    out: dict[str, PackState] = {}
    for p in packs:
        old = out.get(p.key)
        if old is None:
            out[p.key] = p
            continue
        keep, drop = (p, old) if p.enabled and not old.enabled else (old, p)
        out[p.key] = keep
        notes.append(f"{side}: {drop.describe()} is a second copy of {keep.name}; it is left alone")
    return out


def _same_commit(a: str, b: str) -> bool:
    return bool(a) and bool(b) and (a.startswith(b) or b.startswith(a))


def _pack_changes(current: Snapshot, wanted: Snapshot, notes: list[str]) -> list[PackChange]:
    have = _primary(current.packs, notes, "current")
    want = _primary(wanted.packs, notes, "snapshot")
    changes: list[PackChange] = []
    for key, w in want.items():
        c = have.get(key)
        if c is None:
            changes.append(PackChange("add", key, None, w))
            continue
        if w.kind == "git" and w.commit and not _same_commit(w.commit, c.commit):
            changes.append(PackChange("move", key, c, w))
        elif w.kind == "cnr" and w.version and w.version != c.version:
            changes.append(PackChange("move", key, c, w))
        elif w.kind == "file" and w.sha256 and c.sha256 and w.sha256 != c.sha256:
            changes.append(PackChange("move", key, c, w))
        if w.enabled != c.enabled:
            changes.append(PackChange("enable" if w.enabled else "disable", key, c, w))
    for key, c in have.items():
        if key not in want:
            changes.append(PackChange("remove", key, c, None))
    order = {a: i for i, a in enumerate(PACK_ACTIONS)}
    changes.sort(key=lambda ch: (order[ch.action], ch.name.lower()))
    return changes


def _python_changes(current: Snapshot, wanted: Snapshot) -> list[PythonChange]:
    have = {p.name: p for p in current.python}
    want = {p.name: p for p in wanted.python}
    out: list[PythonChange] = []
    for name in sorted(want):
        w, c = want[name], have.get(name)
        if c is None:
            out.append(PythonChange("add", name, None, w))
        elif w.kind == "index" and (c.version != w.version or c.kind != "index"):
            out.append(PythonChange("change", name, c, w))
        elif w.kind != "index" and (w.source != c.source or (w.version and w.version != c.version)):
            out.append(PythonChange("change", name, c, w))
    out += [PythonChange("remove", name, have[name], None) for name in sorted(have) if name not in want]
    return out


def _model_changes(current: Snapshot, wanted: Snapshot) -> list[ModelChange]:
    have = {m.key: m for m in current.models}
    out: list[ModelChange] = []
    for m in wanted.models:
        c = have.get(m.key)
        if c is None:
            out.append(ModelChange("missing", m.key, None, m))
        elif (m.size and c.size != m.size) or (m.sha256 and c.sha256 and m.sha256 != c.sha256):
            out.append(ModelChange("different", m.key, c, m))
    return out


def diff(current: Snapshot, wanted: Snapshot, *, python: bool = True, models: bool = True) -> SnapshotDiff:
    """Changes that turn ``current`` into ``wanted``.

    Python packages are compared only when ``wanted`` recorded some (a snapshot taken without
    them says nothing about the environment); models likewise.
    """
    notes: list[str] = []
    packs = _pack_changes(current, wanted, notes)
    pips = _python_changes(current, wanted) if python and wanted.python else []
    mods = _model_changes(current, wanted) if models and wanted.models else []
    if wanted.comfyui and current.comfyui and wanted.comfyui != current.comfyui:
        notes.append(
            f"ComfyUI is {current.comfyui}, the snapshot has {wanted.comfyui} "
            f"(ComfyUI itself is not changed by a restore)"
        )
    if wanted.python_version and current.python_version and wanted.python_version != current.python_version:
        notes.append(f"python is {current.python_version}, the snapshot was taken with {wanted.python_version}")
    return SnapshotDiff(tuple(packs), tuple(pips), tuple(mods), tuple(notes))


def diff_current(manager: Any, wanted: Snapshot) -> SnapshotDiff:
    """What restoring ``wanted`` would change in ``manager``'s tree now."""
    from .capture import capture

    current = capture(manager, include_python=bool(wanted.python), include_models=bool(wanted.models))
    return diff(current, wanted)
