"""Update, update-all (plan, then run), fix, switch version.

- git packs: ``git fetch`` + fast-forward in place (local changes, divergence and detached
  HEADs are refused with the git module's coded errors), then the install scripts when the
  commit moved.
- registry packs: the new version is staged like an install; files the user added (not in
  the old ``.tracking``) are carried over, files the new zip dropped disappear; the old copy
  goes to the trash in the same rename transaction.
- switch version: a git pack moves to a commit/tag/branch in place; otherwise the current copy
  is disabled with the classic name and the wanted version is enabled from ``.disabled/`` when
  present there, else staged and renamed in.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InstallUnsupported, ManagerError, NotFound, PackConflict, UpdateAllIncomplete
from ..inventory import InstalledPack
from .git_state import CHECKOUT_BRANCH, assess
from .install import stage_and_place
from .installed import find_pack
from .names import version_token
from .ops import Ops
from .pack_scripts import run_pack_scripts
from .remove import trash_into
from .reporting import OpResult, Reporter, Step
from .sources import Source, catalog_pack, from_catalog, registry_source
from .staging import RenameTxn
from .toggle import enabled_target, move_to_disabled, refuse_linked_pack

__all__ = ["update", "fix", "switch_version", "plan_update_all", "run_update_all", "Plan", "PlanStep"]

if TYPE_CHECKING:
    from ..plans import Plan as SharedPlan

_HEX_RE = re.compile(r"^[0-9a-fA-F]{7,40}$")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


# --- update ------------------------------------------------------------------------------------
def _rolled_back(exc: ManagerError, pack: InstalledPack, before: str, *, failed: str) -> ManagerError:
    """``exc`` with the rollback said: the pack's code is back at ``before``."""
    exc.details = {**exc.details, "rolled_back_to": before, "pack": exc.details.get("pack", pack.name)}
    exc.hint = (
        f"{failed} failed, so {pack.name} was put back at its previous commit {before[:12]}; "
        f"Python packages the failed step installed stay. {exc.hint}"
    ).strip()
    return exc


def _update_git(ops: Ops, pack: InstalledPack, rep: Reporter, *, skip_deps: bool) -> OpResult:
    git = ops.manager.git
    path = Path(pack.path)
    before_reqs = _read(path / "requirements.txt")
    before = pack.commit
    moved, moved_was = "", ""
    with Step(rep, "fetch", pack.name):
        decision = assess(ops, pack, "update")  # odd states decided before anything changes
        for line in (decision.reason, *decision.notes) if decision.action != "proceed" else decision.notes:
            rep.stage("fetch", None, line)
        decision.raise_if_refused()
        try:
            if decision.action == CHECKOUT_BRANCH:
                moved = decision.branch
                moved_was = git.branch_head(path, moved, local_only=True)
                git.checkout(path, moved, progress=rep.line_fn("fetch"))
            res = git.update(path, progress=rep.line_fn("fetch"))
        except BaseException:
            if moved:  # back to the pinned commit: a failed update leaves the pack as it was
                git.restore_head(path, before, moved=moved, moved_was=moved_was)
            raise
    after = res.after
    changed = after != before
    deps = None
    if changed:
        reqs_changed = _read(path / "requirements.txt") != before_reqs
        try:
            deps = run_pack_scripts(ops, path, pack.name, rep, skip_deps=skip_deps or not reqs_changed)
        except ManagerError as exc:
            git.restore_head(path, before, branch="" if moved else pack.branch, moved=moved, moved_was=moved_was)
            raise _rolled_back(exc, pack, before, failed="the dependency step") from None
        rep.require_restart(f"{pack.name} was updated")
    rep.stage("done", 100.0)
    note = {
        "updated": "fast-forwarded",
        "up_to_date": "already up to date",
        "ahead": "local branch is ahead of the remote; nothing to fetch",
    }[res.status]
    if moved:
        note = f"checked out {moved} (was pinned to {before[:12]}), " + note
    return OpResult(
        "update",
        pack.name,
        path=str(path),
        source="git",
        commit=after,
        previous=before,
        changed=changed,
        restart_required=changed,
        deps=deps,
        notes=(note, *decision.notes),
        extra={"git": decision.to_dict()},
    )


def _update_cnr(ops: Ops, pack: InstalledPack, rep: Reporter, *, version: str | None, skip_deps: bool) -> OpResult:
    with Step(rep, "resolve", pack.name):
        source = registry_source(ops, pack.cnr_id, version or "latest", pack.name)
    if source.version == pack.version:
        rep.stage("done", 100.0)
        return OpResult(
            "update",
            pack.name,
            path=pack.path,
            source="cnr",
            version=pack.version,
            previous=pack.version,
            changed=False,
            notes=(f"{pack.version} is the latest version",),
        )
    old = Path(pack.path)

    def to_trash(txn: RenameTxn) -> str:
        entry = trash_into(txn, old, reason="update", pack=pack)
        return f"version {pack.version} kept in the trash as {entry.name}"

    return stage_and_place(
        ops, source, rep, action="update", displace=to_trash, carry_from=old, skip_deps=skip_deps, previous=pack.version
    )


def update(ops: Ops, key: str, rep: Reporter, *, skip_deps: bool = False, version: str | None = None) -> OpResult:
    """Update one enabled pack (git: fast-forward; registry: latest or ``version``)."""
    with Step(rep, "resolve", key):
        ops.prepare_tree()
        pack = find_pack(ops.inventory(), key, enabled=True)
    if pack.kind == "git":
        return _update_git(ops, pack, rep, skip_deps=skip_deps)
    if pack.kind == "cnr" and pack.cnr_id:
        return _update_cnr(ops, pack, rep, version=version, skip_deps=skip_deps)
    raise InstallUnsupported(
        f"{pack.name} is a {pack.kind} pack and cannot be updated automatically",
        hint="Reinstall it from its source (reinstall with `spec`), or replace it by hand.",
        details={"pack": pack.name, "kind": pack.kind},
    )


def fix(ops: Ops, key: str, rep: Reporter, *, script_timeout: float | None = None) -> OpResult:
    """Run the pack's dependency installation (requirements.txt, install.py) again, in place."""
    with Step(rep, "resolve", key):
        ops.prepare_tree()
        pack = find_pack(ops.inventory(), key, enabled=True)
    path = Path(pack.path)
    if not path.is_dir():
        raise InstallUnsupported(f"{pack.name} is a single file; it has no dependencies to fix")
    deps = run_pack_scripts(ops, path, pack.name, rep, timeout=script_timeout)
    rep.stage("done", 100.0)
    rep.require_restart(f"dependencies of {pack.name} were reinstalled")
    return OpResult(
        "fix",
        pack.name,
        path=str(path),
        source=pack.kind,
        version=pack.version,
        commit=pack.commit,
        restart_required=True,
        deps=deps,
    )


# --- switch version ------------------------------------------------------------------------------
def _nightly_source(ops: Ops, pack: InstalledPack) -> Source:
    ident = pack.cnr_id or pack.catalog_id or pack.pack_id
    entry, _err = catalog_pack(ops, ident)
    if entry is not None and entry.install_type == "git-clone":
        return from_catalog(entry, name=pack.name, ref="", nightly=True)
    if pack.repository:  # [project.urls] Repository of the registry pack
        return Source("git", pack.name, ident, "nightly", url=pack.repository)
    raise NotFound(
        f"no repository is known for {pack.name}, so it has no nightly version",
        hint="Install the nightly version by its git URL instead.",
        details={"pack": pack.name},
    )


def switch_version(
    ops: Ops, key: str, rep: Reporter, *, version: str = "", commit: str = "", skip_deps: bool = False
) -> OpResult:
    """Move a pack to a registry ``version`` (or ``latest``), to ``nightly`` (git), or to a ``commit``."""
    with Step(rep, "resolve", key):
        ops.prepare_tree()
        inv = ops.inventory()
        pack = find_pack(inv, key, enabled=True)
        wanted = (commit or version or "").strip()
        if not wanted:
            raise InstallUnsupported(
                "switch_version needs a version (x.y.z, latest, nightly) or a commit", details={"pack": pack.name}
            )
    ident = pack.cnr_id or pack.pack_id
    registry_like = bool(re.match(r"^v?\d+(\.\d+)*([.+-].*)?$", wanted)) and bool(pack.cnr_id)
    if registry_like and pack.kind == "git" and wanted in ops.manager.git.list_tags(Path(pack.path)):
        registry_like = False  # a tag of the checkout wins over a registry version
    if pack.kind == "git" and (commit or not (registry_like or wanted in ("latest",))):
        if wanted == "nightly":
            wanted = pack.branch or ""
            if not wanted:
                raise InstallUnsupported(
                    f"{pack.name} is pinned to a commit; name the branch to switch to", details={"pack": pack.name}
                )
        with Step(rep, "checkout", pack.name):
            decision = assess(ops, pack, "switch_version", ref=wanted)
            for line in decision.notes:
                rep.stage("checkout", None, line)
            decision.raise_if_refused()
            state = ops.manager.git.checkout(Path(pack.path), wanted, progress=rep.line_fn("checkout"))
        changed = state.commit != pack.commit
        deps = None
        if changed:
            try:
                deps = run_pack_scripts(ops, Path(pack.path), pack.name, rep, skip_deps=skip_deps)
            except ManagerError as exc:
                ops.manager.git.restore_head(Path(pack.path), pack.commit, branch=pack.branch)
                raise _rolled_back(exc, pack, pack.commit, failed="the dependency step") from None
        rep.stage("done", 100.0)
        if changed:
            rep.require_restart(f"{pack.name} switched to {wanted}")
        return OpResult(
            "switch_version",
            pack.name,
            path=pack.path,
            source="git",
            commit=state.commit,
            version=wanted,
            previous=pack.commit,
            changed=changed,
            restart_required=changed,
            deps=deps,
            notes=decision.notes,
            extra={"git": decision.to_dict()},
        )
    if commit or (_HEX_RE.match(wanted) and not registry_like):
        raise InstallUnsupported(
            f"{pack.name} is a {pack.kind} pack; switch it to nightly first, then to a commit",
            details={"pack": pack.name},
        )
    refuse_linked_pack(ops.layout, pack)  # the current copy would be parked in .disabled/: never a link
    # the wanted copy may already sit in .disabled/: swap the two
    token = "nightly" if wanted == "nightly" else (version_token(wanted.lstrip("v")) if wanted != "latest" else "")
    parked = [
        p for p in inv.disabled if token and p.disabled_style == "dir" and p.name.lower() == f"{ident}@{token}".lower()
    ]
    if parked:
        target = parked[0]
        dest = enabled_target(ops.layout, target)
        if dest.name != pack.name and dest.exists():
            raise PackConflict(f"cannot switch: {dest} exists", details={"destination": str(dest)})
        with Step(rep, "move", pack.name):
            with RenameTxn(ops.layout, label=f"switch {pack.name}") as txn:
                parked_at = move_to_disabled(txn, pack)
                txn.move(Path(target.path), ops.layout.custom_nodes / pack.name)
        rep.stage("done", 100.0)
        rep.require_restart(f"{pack.name} switched to {wanted}")
        return OpResult(
            "switch_version",
            pack.name,
            path=str(ops.layout.custom_nodes / pack.name),
            source=target.kind,
            version=target.version,
            commit=target.commit,
            previous=pack.version or pack.commit,
            restart_required=True,
            notes=(f"enabled the disabled copy {target.name}; the previous copy is now {parked_at.name}",),
        )
    with Step(rep, "resolve", pack.name):
        if wanted == "nightly":
            source = _nightly_source(ops, pack)
        else:
            if not pack.cnr_id:
                raise InstallUnsupported(
                    f"{pack.name} has no registry id, so it has no registry versions", details={"pack": pack.name}
                )
            source = registry_source(
                ops, pack.cnr_id, wanted.lstrip("v") if wanted != "latest" else "latest", pack.name
            )
            if source.version == pack.version and pack.kind == "cnr":
                rep.stage("done", 100.0)
                return OpResult(
                    "switch_version",
                    pack.name,
                    path=pack.path,
                    source="cnr",
                    version=pack.version,
                    previous=pack.version,
                    changed=False,
                    notes=("already at that version",),
                )

    def park(txn: RenameTxn) -> str:
        return f"the previous copy is now disabled as {move_to_disabled(txn, pack).name}"

    return stage_and_place(
        ops,
        source,
        rep,
        action="switch_version",
        displace=park,
        skip_deps=skip_deps,
        previous=pack.version or pack.commit,
    )


# --- update-all ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanStep:
    """One change update-all will make."""

    pack: str
    kind: str  # git | cnr
    action: str  # update
    from_version: str
    to_version: str

    def to_dict(self) -> dict[str, str]:
        return {
            "pack": self.pack,
            "kind": self.kind,
            "action": self.action,
            "from": self.from_version,
            "to": self.to_version,
        }


@dataclass(frozen=True)
class Plan:
    """What update-all will change (``steps``), and what it leaves alone and why."""

    steps: tuple[PlanStep, ...]
    up_to_date: tuple[str, ...] = ()
    skipped: tuple[Mapping[str, str], ...] = ()
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [s.to_dict() for s in self.steps],
            "up_to_date": list(self.up_to_date),
            "skipped": [dict(s) for s in self.skipped],
            "created_at": self.created_at,
        }

    def to_plan(self, *, skip_deps: bool = False) -> SharedPlan:
        """The shared plan record (``manager.plans``): one changed pack per step; packs it
        cannot check are notes (update-all goes on without them)."""
        from ..plans import PackChange
        from ..plans import Plan as Shared

        return Shared(
            "update_all",
            "all",
            packs=tuple(PackChange("changed", s.pack, s.from_version, s.to_version, s.kind) for s in self.steps),
            notes=(
                *(f"up to date: {name}" for name in self.up_to_date),
                *(f"skipped {s.get('pack', '?')}: {s.get('reason', '')}" for s in self.skipped),
            ),
            skip_deps=skip_deps,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        steps = tuple(
            PlanStep(
                str(s["pack"]),
                str(s["kind"]),
                str(s.get("action", "update")),
                str(s.get("from", "")),
                str(s.get("to", "")),
            )
            for s in data.get("steps", [])
        )
        return cls(
            steps,
            tuple(data.get("up_to_date", ())),
            tuple(dict(s) for s in data.get("skipped", ())),
            float(data.get("created_at") or time.time()),
        )


def _skip(pack: InstalledPack, reason: str) -> dict[str, str]:
    return {"pack": pack.name, "reason": reason}


def plan_update_all(ops: Ops, rep: Reporter | None = None, *, tidy: bool = True) -> Plan:
    """Ask each enabled git/registry pack's source for its newest state; changes nothing.

    git: ``git ls-remote`` of the pack's remote (through the gate) against its branch head;
    registry: the latest version. Unreachable sources (offline, errors) become ``skipped``.
    ``tidy`` False (a dry run) leaves the staging folder and journals to the next real operation.
    """
    rep = rep or Reporter()
    rep.stage("plan")
    if tidy:
        ops.prepare_tree()
    steps: list[PlanStep] = []
    current: list[str] = []
    skipped: list[dict[str, str]] = []
    packs = [p for p in ops.inventory().enabled if p.kind in ("git", "cnr")]
    for i, pack in enumerate(packs):
        rep.stage("plan", 100.0 * i / max(1, len(packs)), pack.name)
        try:
            if pack.kind == "git":
                if pack.detached or not pack.branch:
                    skipped.append(_skip(pack, f"pinned to {pack.commit[:12]} (detached HEAD)"))
                    continue
                if not pack.remote_url:
                    skipped.append(_skip(pack, "no remote"))
                    continue
                refs = ops.manager.git.remote_refs(pack.remote_url)
                head = refs.get(f"refs/heads/{pack.branch}", "")
                if not head:
                    skipped.append(_skip(pack, f"branch {pack.branch} not found on the remote"))
                elif head == pack.commit:
                    current.append(pack.name)
                else:
                    steps.append(PlanStep(pack.name, "git", "update", pack.commit[:12], head[:12]))
            elif pack.cnr_id:
                latest = registry_source(ops, pack.cnr_id, "latest", pack.name).version
                if latest == pack.version:
                    current.append(pack.name)
                else:
                    steps.append(PlanStep(pack.name, "cnr", "update", pack.version, latest))
            else:
                skipped.append(_skip(pack, "registry pack without an id in pyproject.toml"))
        except ManagerError as exc:
            skipped.append({"pack": pack.name, "reason": f"{exc.code}: {exc.message}", "hint": exc.hint})
    return Plan(tuple(steps), tuple(current), tuple(skipped))


def run_update_all(ops: Ops, plan: Plan, rep: Reporter, *, skip_deps: bool = False) -> dict[str, Any]:
    """Execute ``plan`` step by step; the first failure stops it (``update_all_incomplete``
    with ``done``/``failed``/``not_done`` in details)."""
    done: list[dict[str, Any]] = []
    total = len(plan.steps)
    for i, step in enumerate(plan.steps):
        rep.check_cancelled()
        rep.stage(
            "step",
            100.0 * i / max(1, total),
            f"[{i + 1}/{total}] {step.pack}: {step.from_version} -> {step.to_version}",
        )
        try:
            version = step.to_version if step.kind == "cnr" else None
            result = update(ops, step.pack, rep, skip_deps=skip_deps, version=version)
        except ManagerError as exc:
            not_done = [s.to_dict() for s in plan.steps[i + 1 :]]
            raise UpdateAllIncomplete(
                f"update-all stopped at {step.pack} (step {i + 1} of {total}): {exc.message}",
                hint=f"{len(done)} step(s) were done, {len(not_done)} not started. {exc.hint}".strip(),
                details={"done": done, "failed": {**step.to_dict(), "error": exc.to_dict()}, "not_done": not_done},
            ) from exc
        done.append({**step.to_dict(), "result": result.to_dict()})
    rep.stage("done", 100.0)
    return {
        "action": "update_all",
        "done": done,
        "not_done": [],
        "up_to_date": list(plan.up_to_date),
        "skipped": [dict(s) for s in plan.skipped],
        "restart_required": bool(done),
    }
