"""The one plan record every changing operation answers for a dry run (issue 19, item 1).

A ``Plan`` says what an operation would change, before it runs: the packs added, changed or
removed (with their commits or versions), the Python packages added, upgraded, downgraded or
removed (as the installer resolved them, changing nothing), what the blacklists hold back and
which pack asks for each, the files that will move, and what would stop it (``blockers``, coded
errors as dicts). ``with_deps`` is what the dependency step changes, so a door can show both
choices: with dependencies, and what ``skip_deps`` leaves out. Built by the task table's
previews (``manager/kinds/previews.py``) and by the older plan classes' ``to_plan()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["Plan", "PackChange", "PythonChange", "HeldBack", "FileMove", "merge_plans", "python_changes"]

PACK_CHANGES = ("added", "changed", "removed", "enabled", "disabled")
PYTHON_CHANGES = ("added", "upgraded", "downgraded", "removed")


@dataclass(frozen=True)
class PackChange:
    """A pack the operation adds, changes or removes (``from_``/``to``: commit or version)."""

    change: str  # one of PACK_CHANGES
    name: str
    from_: str = ""
    to: str = ""
    source: str = ""  # git | cnr | local | ... (the pack's kind)
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "change": self.change,
            "name": self.name,
            "from": self.from_,
            "to": self.to,
            "source": self.source,
            "note": self.note,
        }


@dataclass(frozen=True)
class PythonChange:
    """A Python package the installer would add, upgrade, downgrade or remove."""

    change: str  # one of PYTHON_CHANGES
    name: str
    from_: str = ""
    to: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"change": self.change, "name": self.name, "from": self.from_, "to": self.to}


@dataclass(frozen=True)
class HeldBack:
    """A requirement the policy keeps out (blacklisted, downgrade-protected, losing a conflict)."""

    requirement: str
    pack: str  # the pack that asks for it
    reason: str  # blacklisted | downgrade | conflict
    message: str = ""
    installed: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "requirement": self.requirement,
            "pack": self.pack,
            "reason": self.reason,
            "message": self.message,
            "installed": self.installed,
        }


@dataclass(frozen=True)
class FileMove:
    """A folder or file the operation moves (into the trash, ``.disabled/``, back)."""

    from_: str
    to: str
    why: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"from": self.from_, "to": self.to, "why": self.why}


@dataclass(frozen=True)
class Plan:
    """What one operation would change; ``to_dict()`` is the JSON every door shows."""

    kind: str
    target: str
    packs: tuple[PackChange, ...] = ()
    python: tuple[PythonChange, ...] = ()  # what happens as asked (empty with skip_deps)
    held_back: tuple[HeldBack, ...] = ()
    moves: tuple[FileMove, ...] = ()
    blockers: tuple[Mapping[str, Any], ...] = ()
    notes: tuple[str, ...] = ()
    skip_deps: bool = False
    with_deps: tuple[PythonChange, ...] = ()  # what the dependency step changes (= what skip_deps leaves out)
    requirements: tuple[str, ...] = ()  # the requirement lines the dependency step hands the installer
    resolver: str = ""  # how the package changes were found ("uv pip install --dry-run", ...), "" = not resolved

    @property
    def ok(self) -> bool:
        return not self.blockers

    def packs_with(self, change: str) -> tuple[PackChange, ...]:
        return tuple(p for p in self.packs if p.change == change)

    def python_with(self, change: str) -> tuple[PythonChange, ...]:
        return tuple(p for p in self.python if p.change == change)

    def with_blocker(self, error: Mapping[str, Any]) -> Plan:
        return replace(self, blockers=(*self.blockers, dict(error)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "ok": self.ok,
            "packs": {c: [p.to_dict() for p in self.packs if p.change == c] for c in PACK_CHANGES},
            "python": {c: [p.to_dict() for p in self.python if p.change == c] for c in PYTHON_CHANGES},
            "held_back": [h.to_dict() for h in self.held_back],
            "moves": [m.to_dict() for m in self.moves],
            "blockers": [dict(b) for b in self.blockers],
            "notes": list(self.notes),
            "skip_deps": self.skip_deps,
            "with_deps": {
                "python": [p.to_dict() for p in self.with_deps],
                "requirements": list(self.requirements),
            },
            "resolver": self.resolver,
        }

    def lines(self) -> list[str]:
        """Human lines (CLI ``--dry-run``; the panel builds its own view from ``to_dict``)."""
        out = [f"plan: {self.kind} {self.target}" + ("" if self.ok else "  (BLOCKED)")]
        for b in self.blockers:
            out.append(f"blocked: {b.get('code', 'error')}: {b.get('message', '')}")
        for p in self.packs:
            arrow = f" {p.from_ or '-'} -> {p.to or '-'}" if (p.from_ or p.to) else ""
            out.append(f"pack {p.change}: {p.name}{arrow}" + (f" ({p.note})" if p.note else ""))
        for m in self.moves:
            out.append(f"move: {m.from_} -> {m.to}" + (f" ({m.why})" if m.why else ""))
        for c in self.python:
            arrow = f"{c.from_ or '-'} -> {c.to or '-'}"
            out.append(f"python {c.change}: {c.name} {arrow}")
        if self.skip_deps and self.with_deps:
            out.append(
                "skip_deps leaves out: "
                + ", ".join(f"{c.name} {c.from_ or '-'} -> {c.to or '-'}" for c in self.with_deps)
            )
        for h in self.held_back:
            out.append(
                f"held back: {h.requirement} (asked by {h.pack}, {h.reason})" + (f": {h.message}" if h.message else "")
            )
        out += [f"note: {n}" for n in self.notes]
        if len(out) == 1:
            out.append("nothing to change")
        return out


def merge_plans(kind: str, target: str, plans: Sequence[Plan], *, notes: Iterable[str] = ()) -> Plan:
    """One plan of several (update-all: one per pack), in order."""
    return Plan(
        kind,
        target,
        packs=tuple(p for plan in plans for p in plan.packs),
        python=tuple(p for plan in plans for p in plan.python),
        held_back=tuple(h for plan in plans for h in plan.held_back),
        moves=tuple(m for plan in plans for m in plan.moves),
        blockers=tuple(b for plan in plans for b in plan.blockers),
        notes=(*(n for plan in plans for n in plan.notes), *notes),
        skip_deps=any(p.skip_deps for p in plans),
        with_deps=tuple(p for plan in plans for p in plan.with_deps),
        requirements=tuple(r for plan in plans for r in plan.requirements),
        resolver=next((p.resolver for p in plans if p.resolver), ""),
    )


def python_changes(
    installed: Mapping[str, str], after: Mapping[str, str], removed: Iterable[str] = ()
) -> tuple[PythonChange, ...]:
    """Compare installed versions with the resolved ones (``after``: name -> new version)."""
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    have = {canonicalize_name(k): v for k, v in installed.items()}
    out: list[PythonChange] = []
    for name, new in sorted(after.items()):
        old = have.get(canonicalize_name(name), "")
        if not old:
            out.append(PythonChange("added", name, "", new))
            continue
        if old == new:
            continue
        try:
            change = "upgraded" if Version(new) > Version(old) else "downgraded"
        except InvalidVersion:
            change = "upgraded"
        out.append(PythonChange(change, name, old, new))
    gone = {canonicalize_name(n) for n in after}
    for name in sorted(removed):
        if canonicalize_name(name) not in gone:
            out.append(PythonChange("removed", name, have.get(canonicalize_name(name), ""), ""))
    return tuple(out)
