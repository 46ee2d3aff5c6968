"""A restore as a plan: options with the classic flag meanings, and the ordered steps from a diff.

Order (each pack keeps its own steps together):
1. ``pack_remove`` / ``pack_disable`` of packs the snapshot does not list (frees their names);
2. per matched pack: ``pack_enable`` first (operations act on enabled packs), then
   ``pack_checkout`` (git commit) or ``pack_switch`` (registry version), then ``pack_disable``;
3. ``pack_install`` of missing packs (followed by ``pack_disable`` when the snapshot has them off);
4. ``pip_install`` (pinned versions, after the packs so the snapshot's versions win over what the
   packs' requirements pulled in), then ``pip_uninstall`` when extra packages are to go.
The package steps re-read the environment when they run; the plan shows what they would do now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import TaskInvalid
from .diff import PackChange, SnapshotDiff
from .model import EntryProblem, PackState, PythonPackage, Snapshot, _Record

if TYPE_CHECKING:
    from ..plans import Plan as SharedPlan

STEP_KINDS = (
    "pack_remove",
    "pack_disable",
    "pack_enable",
    "pack_checkout",
    "pack_switch",
    "pack_install",
    "pip_install",
    "pip_uninstall",
)
ONLY = ("all", "nodes", "pips")
UNLISTED = ("remove", "disable", "keep")
# Never uninstalled by a restore: the installers themselves.
KEEP_PACKAGES = frozenset({"pip", "setuptools", "wheel", "uv", "distribute", "pkg-resources"})


@dataclass(frozen=True)
class RestoreOptions(_Record):
    """What a restore may change.

    Package categories keep the classic flag meanings: ``pip_non_url`` = packages from an
    index (``name==version``), ``pip_non_local_url`` = direct remote URLs (``git+https://``),
    ``pip_local_url`` = ``file://`` installs. When none is given, index packages are restored
    (the classic manager restores none; see docs/snapshots.md).
    """

    pip_non_url: bool = False
    pip_non_local_url: bool = False
    pip_local_url: bool = False
    no_deps: bool = False
    only: str = "all"
    unlisted: str = ""  # remove | disable | keep; "" = remove (ours), disable (classic)
    remove_extra_pips: bool = False
    auto_snapshot: bool = True

    def pip_kinds(self) -> frozenset[str]:
        if self.only == "nodes":
            return frozenset()
        chosen = {
            k
            for k, on in (("index", self.pip_non_url), ("url", self.pip_non_local_url), ("local", self.pip_local_url))
            if on
        }
        return frozenset(chosen or {"index"})

    def unlisted_for(self, snapshot: Snapshot) -> str:
        return self.unlisted or ("disable" if snapshot.origin == "classic" else "remove")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RestoreOptions:
        """Options from task params / API JSON / CLI flags (dashes or underscores); ``task_invalid`` if bad."""
        norm = {str(k).replace("-", "_").lstrip("_"): v for k, v in params.items()}
        kw: dict[str, Any] = {}
        for key in (
            "pip_non_url",
            "pip_non_local_url",
            "pip_local_url",
            "no_deps",
            "remove_extra_pips",
            "auto_snapshot",
        ):
            if key in norm and norm[key] is not None:
                if not isinstance(norm[key], bool):
                    raise TaskInvalid(
                        f"restore option {key} must be true or false, not {norm[key]!r}", details={"option": key}
                    )
                kw[key] = norm[key]
        for key, allowed in (("only", ONLY), ("unlisted", UNLISTED)):
            value = norm.get(key)
            if value in (None, ""):
                continue
            if value not in allowed:
                raise TaskInvalid(
                    f"restore option {key}={value!r} is not one of {', '.join(allowed)}",
                    details={"option": key, "allowed": list(allowed)},
                )
            kw[key] = value
        return cls(**kw)


@dataclass(frozen=True)
class RestoreStep(_Record):
    index: int
    kind: str  # one of STEP_KINDS
    target: str  # pack name, or "python"
    description: str
    params: Mapping[str, Any] = field(default_factory=dict)
    undo: str = ""  # how a failure later in the plan puts this step back, or why it cannot

    @property
    def undoable(self) -> bool:
        return not self.undo.startswith("cannot")


# what a failure later in the plan does about each step, shown in the plan before it starts
UNDO = {
    "pack_remove": "restored from the trash",
    "pack_disable": "enabled again",
    "pack_enable": "disabled again",
    "pack_checkout": "checked out at its previous commit (requirements it installed stay)",
    "pack_switch": "switched back to its previous version (requirements it installed stay)",
    "pack_install": "moved to the trash (requirements it installed stay)",
    "pip_install": "cannot be undone: the replaced package versions are gone from the environment, and "
    "putting them back would need their wheels (the auto-snapshot lists them)",
    "pip_uninstall": "cannot be undone: the removed packages would need their wheels (the auto-snapshot lists them)",
}


@dataclass(frozen=True)
class RestorePlan(_Record):
    snapshot: str  # name or path it was read from
    steps: tuple[RestoreStep, ...]
    options: RestoreOptions
    notes: tuple[str, ...] = ()  # what is not restored, and why
    skipped_python: tuple[str, ...] = ()
    diff: SnapshotDiff | None = None
    problems: tuple[EntryProblem, ...] = ()  # entries refused (the restore will not start) or skipped
    left_out: tuple[Any, ...] = ()  # preflight.MissingSource: packs whose pinned commit is unreachable

    def without_packs(self, left_out: tuple[Any, ...]) -> RestorePlan:
        """This plan without the steps of the packs in ``left_out`` (renumbered); the rest goes on."""
        names = {m.name for m in left_out}
        kept = [s for s in self.steps if s.kind == "pack_remove" or s.target not in names]
        steps = tuple(dataclasses.replace(s, index=i + 1) for i, s in enumerate(kept))
        return dataclasses.replace(self, steps=steps, left_out=self.left_out + tuple(left_out))

    @property
    def empty(self) -> bool:
        return not self.steps

    @property
    def refused(self) -> tuple[EntryProblem, ...]:
        return tuple(p for p in self.problems if p.status == "refused")

    @property
    def skipped(self) -> tuple[EntryProblem, ...]:
        return tuple(p for p in self.problems if p.status == "skipped")

    def lines(self) -> list[str]:
        """The preview shown by ``--dry-run`` and the panel."""
        out = [f"refused: {p.describe()}" for p in self.refused]
        if self.refused:
            count = len(self.refused)
            out.append(f"the restore will not start: {count} unsafe entr{'y' if count == 1 else 'ies'}")
        out += [f"{s.index}. {s.description}" for s in self.steps]
        out += [
            f"left out (will be reported failed): {m.name}: "
            f"{'commit absent from' if m.what == 'commit' else 'no repository at'} {m.needed}"
            for m in self.left_out
        ]
        if not self.steps:
            out.append(
                "nothing to do: the tree matches the snapshot"
                if not self.problems and not self.left_out
                else "nothing to do for the entries that can be restored"
            )
        out += [f"skipped: {p.describe()}" for p in self.skipped]
        out += [f"not restored: {s}" for s in self.skipped_python]
        if self.steps and not all(s.undoable for s in self.steps):
            out.append(
                "if a step fails, the steps done before it are undone in reverse order, except: "
                + "; ".join(f"{s.index}. {s.kind} {s.undo}" for s in self.steps if not s.undoable)
            )
        out += [f"note: {n}" for n in self.notes]
        return out

    def to_plan(self, *, blockers: Sequence[Mapping[str, Any]] = ()) -> SharedPlan:
        """The shared plan record (``manager.plans``) of this restore: packs from the steps, Python
        packages from the diff (the snapshot's pinned versions, not a resolve)."""
        from ..plans import FileMove
        from ..plans import PackChange as Pk
        from ..plans import Plan as SharedPlan
        from ..plans import PythonChange as Py

        packs: list[Pk] = []
        moves: list[FileMove] = []
        python: list[Py] = []
        for s in self.steps:
            p = s.params
            if s.kind == "pack_remove":
                packs.append(Pk("removed", s.target, str(p.get("version") or ""), ""))
                moves.append(FileMove(f"custom_nodes/{s.target}", "trash", "not in the snapshot"))
            elif s.kind == "pack_disable":
                packs.append(Pk("disabled", s.target))
                moves.append(FileMove(f"custom_nodes/{s.target}", "custom_nodes/.disabled/", "disabled"))
            elif s.kind == "pack_enable":
                packs.append(Pk("enabled", s.target))
                moves.append(FileMove("custom_nodes/.disabled/", f"custom_nodes/{s.target}", "enabled"))
            elif s.kind in ("pack_checkout", "pack_switch"):
                cur = next((c.current for c in (self.diff.packs if self.diff else ()) if c.name == s.target), None)
                was = (cur.commit if s.kind == "pack_checkout" else cur.version) if cur else ""
                to = str(p.get("commit") or "") if s.kind == "pack_checkout" else str(p.get("version") or "")
                packs.append(Pk("changed", s.target, was, to, "git" if s.kind == "pack_checkout" else "cnr"))
            elif s.kind == "pack_install":
                packs.append(
                    Pk("added", s.target, "", str(p.get("commit") or p.get("version") or ""), str(p.get("kind") or ""))
                )
        wanted = {r.split("==")[0] for r in self._step_param("pip_install", "requirements")}
        gone = set(self._step_param("pip_uninstall", "names"))
        for c in self.diff.python if self.diff else ():
            have = c.current.version if c.current else ""
            if c.wanted is not None and c.wanted.requirement.split("==")[0] in wanted:
                new = c.wanted.version or c.wanted.source
                if not have:
                    python.append(Py("added", c.name, "", new))
                elif new != have:
                    python.append(Py(_direction(have, new), c.name, have, new))
            elif c.name in gone:
                python.append(Py("removed", c.name, have, ""))
        return SharedPlan(
            "snapshot_restore",
            self.snapshot,
            packs=tuple(packs),
            python=tuple(python),
            moves=tuple(moves),
            blockers=tuple(dict(b) for b in blockers),  # the preview's: refusals, offline sources, policy
            notes=(
                *self.notes,
                *(f"not restored: {s}" for s in self.skipped_python),
                *(f"skipped: {p.describe()}" for p in self.skipped),
            ),
            with_deps=tuple(python),
            requirements=tuple(self._step_param("pip_install", "requirements")),
            resolver="snapshot" if python else "",
        )

    def _step_param(self, kind: str, key: str) -> list[str]:
        return [str(x) for s in self.steps if s.kind == kind for x in (s.params.get(key) or ())]

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "empty": self.empty,
            "lines": self.lines(),
            "steps": [s.to_dict() for s in self.steps],
            "options": self.options.to_dict(),
            "notes": list(self.notes),
            "skipped_python": list(self.skipped_python),
            "refused": [p.to_dict() for p in self.refused],
            "skipped": [p.to_dict() for p in self.skipped],
            "left_out": [m.to_dict() for m in self.left_out],
            "diff": self.diff.to_json() if self.diff is not None else None,
        }


def _direction(old: str, new: str) -> str:
    from packaging.version import InvalidVersion, Version

    try:
        return "upgraded" if Version(new) > Version(old) else "downgraded"
    except InvalidVersion:
        return "upgraded"


def _install_params(w: PackState) -> dict[str, Any]:
    return {
        "name": w.name,
        "kind": w.kind,
        "url": w.url,
        "commit": w.commit,
        "branch": w.branch,
        "id": w.cnr_id or w.id,
        "version": w.version,
        "enabled": w.enabled,
    }


class _Builder:
    def __init__(self) -> None:
        self.steps: list[RestoreStep] = []
        self.notes: list[str] = []

    def add(self, step_kind: str, step_target: str, description: str, **params: Any) -> None:
        self.steps.append(
            RestoreStep(len(self.steps) + 1, step_kind, step_target, description, params, UNDO.get(step_kind, ""))
        )

    def unlisted(self, change: PackChange, mode: str) -> None:
        cur = change.current
        assert cur is not None
        if mode == "remove":
            self.add(
                "pack_remove",
                cur.name,
                f"remove {cur.describe()} (not in the snapshot)",
                name=cur.name,
                enabled=cur.enabled,
                key=change.key,
                version=cur.version,
            )
        elif mode == "disable" and cur.enabled:
            self.add("pack_disable", cur.name, f"disable {cur.name} (not in the snapshot)", name=cur.name)
        elif mode == "keep" or not cur.enabled:
            self.notes.append(f"{cur.describe()} is not in the snapshot; left as it is")

    def move(self, change: PackChange) -> None:
        cur, want = change.current, change.wanted
        assert cur is not None and want is not None
        if want.kind == "git":
            self.add(
                "pack_checkout",
                want.name,
                change.describe(),
                name=cur.name,
                url=want.url or cur.url,
                commit=want.commit,
                branch=want.branch,
            )
        elif want.kind == "cnr":
            self.add(
                "pack_switch",
                want.name,
                change.describe(),
                name=cur.name,
                id=want.cnr_id or want.id,
                version=want.version,
            )
        else:
            self.notes.append(
                f"{want.name}: its content differs from the snapshot, and a {want.kind} pack has "
                f"no recorded source to restore it from; reinstall it by hand"
            )

    def install(self, w: PackState) -> None:
        if w.kind == "git" and w.url:
            at = f" at {w.commit[:10]}" if w.commit else " (no commit recorded: default branch)"
            self.add("pack_install", w.name, f"install {w.name} from {w.url}{at}", **_install_params(w))
        elif w.kind == "cnr" and (w.cnr_id or w.id):
            self.add(
                "pack_install",
                w.name,
                f"install {w.cnr_id or w.id}@{w.version or 'latest'} from the registry",
                **_install_params(w),
            )
        else:
            self.notes.append(
                f"{w.name} ({w.kind}) is in the snapshot but not installed, and it has no recorded "
                f"source (repository or registry id); install it by hand"
            )
            return
        if not w.enabled:
            self.add("pack_disable", w.name, f"disable {w.name} (disabled in the snapshot)", name=w.name)


def python_requirements(changes: SnapshotDiff, kinds: frozenset[str]) -> tuple[list[PythonPackage], list[str]]:
    """(packages to put back, descriptions of differences left alone because of the flags)."""
    wanted: list[PythonPackage] = []
    skipped: list[str] = []
    flag = {"index": "--pip-non-url", "url": "--pip-non-local-url", "local": "--pip-local-url"}
    for change in changes.python:
        if change.wanted is None:
            continue
        if change.wanted.kind in kinds:
            wanted.append(change.wanted)
        else:
            skipped.append(f"{change.describe()} (pass {flag[change.wanted.kind]})")
    return wanted, skipped


def removable(changes: SnapshotDiff, protected: frozenset[str]) -> tuple[list[str], list[str]]:
    """(package names a restore may uninstall, names it keeps with the reason)."""
    names, kept = [], []
    for change in changes.python:
        if change.action != "remove":
            continue
        if change.name in KEEP_PACKAGES or change.name in protected:
            kept.append(f"{change.name} is not in the snapshot but is protected; kept")
        else:
            names.append(change.name)
    return names, kept


def build_plan(
    snapshot: Snapshot,
    changes: SnapshotDiff,
    options: RestoreOptions,
    *,
    where: str = "",
    protected: frozenset[str] = frozenset(),
    problems: tuple[EntryProblem, ...] = (),
) -> RestorePlan:
    """The ordered steps that turn the current state (as ``changes`` describes it) into ``snapshot``."""
    b = _Builder()
    if options.only != "pips":
        mode = options.unlisted_for(snapshot)
        per_pack: dict[str, list[PackChange]] = {}
        for change in changes.packs:
            if change.action == "remove":
                b.unlisted(change, mode)
            elif change.action != "add":
                per_pack.setdefault(change.key, []).append(change)
        for key in sorted(per_pack, key=lambda k: per_pack[k][0].name.lower()):
            acts = {c.action: c for c in per_pack[key]}
            moving = acts.get("move")
            if (
                moving is not None
                and moving.current is not None
                and not moving.current.enabled
                and "enable" not in acts
            ):
                # versions are changed on an enabled pack; it goes back to .disabled/ afterwards
                acts["enable"] = PackChange("enable", key, moving.current, moving.wanted)
                acts["disable"] = PackChange("disable", key, moving.current, moving.wanted)
            if "enable" in acts:
                c = acts["enable"]
                b.add(
                    "pack_enable",
                    c.name,
                    f"enable {c.name}",
                    name=c.current.name if c.current else c.name,
                    version=c.current.version if c.current else "",
                )
            if "move" in acts:
                b.move(acts["move"])
            if "disable" in acts:
                c = acts["disable"]
                b.add("pack_disable", c.name, f"disable {c.name}", name=c.current.name if c.current else c.name)
        for change in changes.packs:
            if change.action == "add" and change.wanted is not None:
                b.install(change.wanted)
    skipped: list[str] = []
    kinds = options.pip_kinds()
    if kinds and snapshot.python:
        wanted, skipped = python_requirements(changes, kinds)
        if wanted:
            shown = ", ".join(p.requirement for p in wanted[:8]) + (" ..." if len(wanted) > 8 else "")
            b.add(
                "pip_install",
                "python",
                f"install {len(wanted)} python package(s): {shown}",
                requirements=[p.requirement for p in wanted],
                kinds=sorted(kinds),
            )
        names, kept = removable(changes, protected)
        if options.remove_extra_pips:
            b.notes.extend(kept)
            if names:
                b.add(
                    "pip_uninstall",
                    "python",
                    f"uninstall {len(names)} python package(s) not in the snapshot: "
                    + ", ".join(names[:8])
                    + (" ..." if len(names) > 8 else ""),
                    names=names,
                )
        elif names:
            skipped.append(
                f"{len(names)} package(s) not in the snapshot are kept: {', '.join(names[:8])}"
                + (" ..." if len(names) > 8 else "")
                + " (pass remove_extra_pips to uninstall them)"
            )
    elif options.only != "nodes" and not snapshot.python and changes.python:
        b.notes.append("the snapshot recorded no python packages; the environment is left as it is")
    for m in changes.models:
        b.notes.append(
            f"{m.describe()}: a restore does not download models; install it from the Models panel "
            f"or `cm-cli.py install-model`"
        )
    b.notes.extend(changes.notes)
    return RestorePlan(where, tuple(b.steps), options, tuple(b.notes), tuple(skipped), changes, problems)
