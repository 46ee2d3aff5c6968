"""From packs' requirements.txt to a ``DepsPlan``: overrides applied, blacklists and downgrade
protection enforced, markers judged, and conflicts between packs reported with their winner.

A conflict is two packs pinning versions no single release satisfies (judged with
``packaging`` specifiers). The pack listed *later* wins: installs run in that order and the
last install is the one left in place; the other pin is shown as skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from ..errors import ManagerError
from ..plans import HeldBack, python_changes
from ..plans import Plan as SharedPlan
from .blacklist import clause_version, would_downgrade
from .environment import TargetEnvironment
from .overrides import AppliedOverride
from .policy import DepsPolicy
from .requirements import Origin, ReqLine, SourceOption, name_from_filename, parse_requirements_file

REQUIREMENTS_FILE = "requirements.txt"


@dataclass(frozen=True)
class PackSource:
    """A pack whose dependencies are planned: its display name and folder."""

    name: str
    path: Path


@dataclass(frozen=True)
class Planned:
    """One requirement that will be handed to the installer."""

    name: str | None
    text: str
    kind: str  # name | url | path
    packs: tuple[str, ...]
    origins: tuple[Origin, ...]
    requirement: Requirement | None = None
    index_url: str | None = None  # from a pip_overrides.json entry
    trusted_host: str | None = None


@dataclass(frozen=True)
class Skipped:
    pack: str
    requirement: str
    reason: str  # blacklisted | downgrade | marker | conflict
    message: str
    installed: str | None = None


@dataclass(frozen=True)
class Conflict:
    name: str
    wanted: tuple[tuple[str, str], ...]  # (pack, specifier)
    winner: str
    message: str


@dataclass(frozen=True)
class PackDeps:
    pack: str
    path: Path
    requirements_file: Path | None
    planned: tuple[Planned, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    overrides: tuple[AppliedOverride, ...] = ()
    sources: tuple[SourceOption, ...] = ()
    notes: tuple[str, ...] = ()
    error: ManagerError | None = None


@dataclass(frozen=True)
class DepsPlan:
    """What would be installed for a set of packs, and why anything else would not."""

    packs: tuple[PackDeps, ...]
    merged: tuple[Planned, ...]
    conflicts: tuple[Conflict, ...]
    conflict_skips: tuple[Skipped, ...] = ()
    installed: Mapping[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> tuple[ManagerError, ...]:
        return tuple(p.error for p in self.packs if p.error is not None)

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        return tuple(s for p in self.packs for s in p.skipped) + self.conflict_skips

    @property
    def overrides(self) -> tuple[AppliedOverride, ...]:
        return tuple(o for p in self.packs for o in p.overrides)

    @property
    def sources(self) -> tuple[SourceOption, ...]:
        return tuple(s for p in self.packs for s in p.sources)

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(n for p in self.packs for n in p.notes)

    def describe(self) -> list[str]:
        """Human lines for a preview (CLI --dry-run, the panel)."""
        out = [
            f"install {p.text}  ({', '.join(p.packs)})" + (f" from {p.index_url}" if p.index_url else "")
            for p in self.merged
        ]
        out += [f"override {o.original} -> {o.result} ({o.pack}; {o.override.describe()})" for o in self.overrides]
        out += [f"skip {s.requirement} ({s.pack}): {s.message}" for s in self.skipped]
        out += [f"conflict {c.message}" for c in self.conflicts]
        out += [f"error {e}" for e in self.errors]
        return out

    def to_plan(
        self,
        kind: str,
        target: str,
        *,
        after: Mapping[str, str] | None = None,
        removed: Sequence[str] = (),
        skip_deps: bool = False,
        blockers: Sequence[Mapping[str, Any]] = (),
        notes: Sequence[str] = (),
        resolver: str = "",
    ) -> SharedPlan:
        """The shared plan record of this dependency plan: ``after`` (name -> version) and
        ``removed`` are what the installer's dry run resolved; with ``skip_deps`` the changes
        are listed only under ``with_deps`` (what skipping leaves out)."""
        changes = python_changes(self.installed, after or {}, removed)
        held = tuple(
            HeldBack(s.requirement, s.pack, s.reason, s.message, s.installed or "")
            for s in self.skipped
            if s.reason != "marker"
        )
        return SharedPlan(
            kind,
            target,
            python=() if skip_deps else changes,
            held_back=held,
            blockers=(*(e.to_dict() for e in self.errors), *(dict(b) for b in blockers)),
            notes=(*self.notes, *(f"conflict {c.message}" for c in self.conflicts), *notes),
            skip_deps=skip_deps,
            with_deps=changes,
            requirements=tuple(p.text for p in self.merged),
            resolver=resolver,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "install": [{"requirement": p.text, "packs": list(p.packs), "index_url": p.index_url} for p in self.merged],
            "overrides": [
                {"pack": o.pack, "from": o.original, "to": o.result, "entry": o.override.key} for o in self.overrides
            ],
            "skipped": [
                {
                    "pack": s.pack,
                    "requirement": s.requirement,
                    "reason": s.reason,
                    "message": s.message,
                    "installed": s.installed,
                }
                for s in self.skipped
            ],
            "conflicts": [
                {"name": c.name, "wanted": [list(w) for w in c.wanted], "winner": c.winner, "message": c.message}
                for c in self.conflicts
            ],
            "errors": [e.to_dict() for e in self.errors],
            "notes": list(self.notes),
        }


class Planner:
    """Turns packs into a ``DepsPlan`` for one policy and target environment."""

    def __init__(
        self,
        policy: DepsPolicy,
        env: TargetEnvironment,
        *,
        evaluate_markers: bool = True,
        version_hints: Mapping[str, Iterable[Version]] | None = None,
    ):
        self.policy = policy
        self.env = env
        self.evaluate_markers = evaluate_markers
        self.hints = version_hints or {}

    def plan(self, packs: Sequence[PackSource], installed: Mapping[str, str]) -> DepsPlan:
        pack_deps = tuple(self.plan_pack(p, installed) for p in packs)
        merged, conflicts, skips = self.merge(pack_deps, installed)
        return DepsPlan(pack_deps, merged, conflicts, skips, dict(installed))

    def plan_pack(self, pack: PackSource, installed: Mapping[str, str]) -> PackDeps:
        req_file = Path(pack.path) / REQUIREMENTS_FILE
        if not req_file.is_file():
            return PackDeps(pack.name, Path(pack.path), None)
        try:
            overrides = self.policy.overrides
            parsed = parse_requirements_file(
                req_file,
                pack=pack.name,
                pack_dir=Path(pack.path),
                rules=self.policy.source_rules(),
                rewrite=overrides.rewrite_text if len(overrides) else None,
            )
        except ManagerError as exc:
            return PackDeps(pack.name, Path(pack.path), req_file, error=exc)
        return self.plan_lines(
            pack.name, Path(pack.path), req_file, parsed.requirements, parsed.sources, parsed.notes, installed
        )

    def plan_lines(
        self,
        pack: str,
        path: Path,
        req_file: Path | None,
        lines: Sequence[ReqLine],
        sources: Sequence[SourceOption],
        notes: Sequence[str],
        installed: Mapping[str, str],
    ) -> PackDeps:
        planned: list[Planned] = []
        skipped: list[Skipped] = []
        applied: list[AppliedOverride] = []
        for line in lines:
            outcome = self.policy.overrides.apply(line)
            if outcome.applied:
                applied.append(outcome.applied)
            new = outcome.line
            skip = self._skip_reason(pack, line, new, installed)
            if skip:
                skipped.append(skip)
                continue
            planned.append(
                Planned(
                    new.name,
                    new.text,
                    new.kind,
                    (pack,),
                    (line.origin,),
                    new.requirement,
                    outcome.index_url,
                    outcome.trusted_host,
                )
            )
        return PackDeps(
            pack, path, req_file, tuple(planned), tuple(skipped), tuple(applied), tuple(sources), tuple(notes)
        )

    def _skip_reason(self, pack: str, before: ReqLine, line: ReqLine, installed: Mapping[str, str]) -> Skipped | None:
        req = line.requirement
        if self.evaluate_markers and req is not None and not self.env.marker_ok(req):
            return Skipped(pack, line.text, "marker", f"not for this environment ({req.marker})")
        names = {n for n in (before.name, line.name) if n}
        listed = sorted(names & self.policy.blacklist)
        if listed:
            where = self.policy.blacklist_file or "pip_blacklist.list"
            return Skipped(pack, line.text, "blacklisted", f"{listed[0]} is listed in {where}; never installed")
        if line.name and line.name in self.policy.protected and line.name in installed:
            have = installed[line.name]
            requested = self._requested_spec(line)
            if requested is None:
                return Skipped(
                    pack,
                    line.text,
                    "downgrade",
                    f"{line.name} is protected (installed {have}) and {line.text!r} names no version "
                    f"that can be checked; skipped",
                    have,
                )
            if would_downgrade(requested, have):
                return Skipped(
                    pack,
                    line.text,
                    "downgrade",
                    f"pack {pack} asks for {line.name}{requested} but {have} is installed and "
                    f"{line.name} is protected from downgrades (downgrade_blacklist)",
                    have,
                )
        return None

    @staticmethod
    def _requested_spec(line: ReqLine) -> str | None:
        if line.kind == "name" and line.requirement is not None:
            return str(line.requirement.specifier)
        version = name_from_filename(line.url or line.text)[1]
        return f"=={version}" if version else None

    # -- merging across packs ------------------------------------------------------------
    def merge(
        self, packs: Sequence[PackDeps], installed: Mapping[str, str]
    ) -> tuple[tuple[Planned, ...], tuple[Conflict, ...], tuple[Skipped, ...]]:
        groups: dict[tuple[str, str | None], list[Planned]] = {}
        order: list[tuple[str, str | None]] = []
        for pack in packs:
            for item in pack.planned:
                key = (item.name or item.text, item.index_url) if item.kind == "name" else (item.text, "")
                if key not in groups:
                    groups[key] = []
                    order.append(key)
                groups[key].append(item)
        merged: list[Planned] = []
        conflicts: list[Conflict] = []
        skips: list[Skipped] = []
        for key in order:
            items = groups[key]
            if len(items) == 1 or items[0].kind != "name":
                merged.append(_combine(items) if len(items) > 1 else items[0])
                continue
            combined = SpecifierSet()
            for item in items:
                assert item.requirement is not None
                combined &= item.requirement.specifier
            if self._satisfiable(combined, key[0], installed):
                merged.append(_combine(items))
                continue
            winner = items[-1]
            assert winner.requirement is not None  # every item of a group has a requirement (asserted above)
            wanted = tuple((i.packs[0], str(i.requirement.specifier) or "(any)") for i in items if i.requirement)
            losers = [
                i
                for i in items[:-1]
                if i.requirement
                and not self._satisfiable(i.requirement.specifier & winner.requirement.specifier, key[0], installed)
            ]
            keep = [i for i in items[:-1] if i not in losers] + [winner]
            message = (
                f"{key[0]}: "
                + ", ".join(f"{p} wants {s}" for p, s in wanted)
                + f"; no version satisfies all, {winner.packs[0]} wins (installed last)"
            )
            conflicts.append(Conflict(key[0], wanted, winner.packs[0], message))
            skips.extend(
                Skipped(
                    i.packs[0],
                    i.text,
                    "conflict",
                    f"conflicts with {winner.packs[0]}'s {winner.text}; {winner.packs[0]} wins",
                )
                for i in losers
            )
            merged.append(_combine(keep))
        return tuple(merged), tuple(conflicts), tuple(skips)

    def _satisfiable(self, spec: SpecifierSet, name: str, installed: Mapping[str, str]) -> bool:
        candidates: set[Version] = {Version("0"), Version("999999")}
        candidates.update(self.hints.get(name, ()))
        if name in installed:
            try:
                candidates.add(Version(installed[name]))
            except InvalidVersion:
                pass
        for clause in spec:
            bound = clause_version(clause)
            if bound is not None:
                candidates.update(_neighbours(bound))
        return any(spec.contains(v, prereleases=True) for v in candidates)


def _neighbours(v: Version) -> list[Version]:
    """``v`` and two releases just around it, enough to probe interval specifiers."""
    out = [v, Version(".".join(str(x) for x in v.release + (0, 0, 1)))]
    release = list(v.release)
    while release and release[-1] == 0:
        release.pop()
    if release:
        release[-1] -= 1
        out.append(Version(".".join(str(x) for x in release + [999999])))
    return out


def _combine(items: Sequence[Planned]) -> Planned:
    """One requirement for a package asked for by several packs (specifiers intersected)."""
    first = items[0]
    packs = tuple(dict.fromkeys(p for i in items for p in i.packs))
    origins = tuple(o for i in items for o in i.origins)
    if first.kind != "name" or first.requirement is None:
        return Planned(
            first.name, first.text, first.kind, packs, origins, first.requirement, first.index_url, first.trusted_host
        )
    spec = SpecifierSet()
    extras: set[str] = set()
    markers = []
    for item in items:
        assert item.requirement is not None
        spec &= item.requirement.specifier
        extras |= item.requirement.extras
        markers.append(str(item.requirement.marker) if item.requirement.marker else "")
    text = first.requirement.name + (f"[{','.join(sorted(extras))}]" if extras else "") + str(spec)
    distinct = list(dict.fromkeys(markers))
    if "" not in distinct:
        text += "; " + (distinct[0] if len(distinct) == 1 else " or ".join(f"({m})" for m in distinct))
    req = Requirement(text)
    return Planned(first.name, str(req), "name", packs, origins, req, first.index_url, first.trusted_host)
