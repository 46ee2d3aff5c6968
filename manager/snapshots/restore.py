"""Restore a snapshot: plan (shown by ``--dry-run``), check, then run step by step.

Every pack step goes through the operations engine (``manager.operations``: staged installs,
journalled renames, trash), every package step through the dependency installer, so a failed
step leaves no half pack. The first failing step stops the plan; the result (and the
``snapshot_restore_failed`` error) lists exactly the steps done, the one that failed and the
ones not started. An offline restore first lists everything missing locally and stops before
any change when something is.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..errors import ManagerError, SnapshotRestoreFailed
from ..records import PolicyDecision
from .capture import capture, python_environment, read_python_packages, target_python
from .diff import SnapshotDiff, diff
from .model import EntryProblem, PythonPackage, Snapshot, _Record
from .plan import RestoreOptions, RestorePlan, RestoreStep, build_plan, python_requirements, removable
from .prefetch import prefetch_clones
from .preflight import MissingSource, absent_pinned_commits, preflight
from .report import RestoreReport, report_after
from .validate import check_entries, refusal_error

__all__ = ["RestoreResult", "StepOutcome", "plan_restore", "execute_plan", "restore", "dependency_installer"]


@dataclass(frozen=True)
class StepOutcome(_Record):
    step: RestoreStep
    status: str  # done | failed | undone | not_undone
    seconds: float = 0.0
    result: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RestoreResult(_Record):
    snapshot: str
    ok: bool
    done: tuple[StepOutcome, ...] = ()
    failed: StepOutcome | None = None
    not_done: tuple[RestoreStep, ...] = ()
    auto_snapshot: str = ""
    restart_required: bool = False
    notes: tuple[str, ...] = ()
    skipped: tuple[EntryProblem, ...] = ()  # snapshot entries left alone (reported; the CLI exits non-zero)
    undone: tuple[StepOutcome, ...] = ()  # after a failure: done steps put back, in reverse order
    not_undone: tuple[StepOutcome, ...] = ()  # after a failure: done steps that could not be put back, and why
    report: RestoreReport | None = None  # the tree after the restore, entry by entry (a fresh capture)
    left_out: tuple[MissingSource, ...] = ()  # packs known unrestorable before the first change (commit absent)

    @property
    def partial(self) -> bool:
        """No step failed, yet some entries are not as the snapshot has them (each with its reason)."""
        return self.failed is None and self.report is not None and bool(self.report.counts.get("failed"))

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "ok": self.ok,
            "partial": self.partial,
            "report": self.report.to_json() if self.report is not None else None,
            "left_out": [m.to_dict() for m in self.left_out],
            "auto_snapshot": self.auto_snapshot,
            "restart_required": self.restart_required,
            "notes": list(self.notes),
            "skipped": [p.to_dict() for p in self.skipped],
            "done": [o.to_dict() for o in self.done],
            "failed": self.failed.to_dict() if self.failed else None,
            "not_done": [s.to_dict() for s in self.not_done],
            "undone": [o.to_dict() for o in self.undone],
            "not_undone": [o.to_dict() for o in self.not_undone],
        }


def dependency_installer(manager: Any) -> Any:
    """The dependency installer under the current config, for the ComfyUI python."""
    from ..deps.installer import installer_for

    return installer_for(manager)


def plan_restore(
    manager: Any,
    snapshot: Snapshot,
    options: RestoreOptions | None = None,
    *,
    where: str = "",
    current: Snapshot | None = None,
) -> RestorePlan:
    """The restore plan for ``snapshot`` against the tree now; reads only (the dry run). Every entry
    is checked first (``plan.refused``: the restore will not start; ``plan.skipped``: left alone)."""
    options = options or RestoreOptions()
    problems = tuple(check_entries(snapshot))
    want_python = bool(snapshot.python) and bool(options.pip_kinds())
    if current is None:
        current = capture(
            manager, include_python=want_python, include_models=bool(snapshot.models), strict_python=want_python
        )
    changes = diff(current, snapshot, python=want_python)
    protected: frozenset[str] = frozenset()
    if want_python and options.remove_extra_pips:
        protected = dependency_installer(manager).policy.protected
    plan = build_plan(snapshot, changes, options, where=where, protected=protected, problems=problems)
    if plan.refused or plan.empty:
        return plan
    absent = absent_pinned_commits(manager, plan)  # local reads only: known before the first change
    return plan.without_packs(tuple(absent)) if absent else plan


# --- python steps ------------------------------------------------------------------------------
def _live_python_changes(manager: Any, snapshot: Snapshot, environment: Any = None) -> SnapshotDiff:
    """The package differences now (packs installed earlier in the plan may have changed them);
    ``environment``: the installer's probe of that python, made just now (else probed here)."""
    if environment is not None:
        version, pips = environment.python_version, read_python_packages(environment.site_dirs)
    else:
        version, pips = python_environment(target_python(manager))
    now = Snapshot(created_at="", python=pips, python_version=version)
    return diff(now, dataclasses.replace(snapshot, packs=(), models=()), models=False)


def _req_line(pkg: PythonPackage, index: int, where: str, installer: Any) -> Any:
    from ..deps.errors import DepsSourceNotAllowed
    from ..deps.requirements import Origin, ReqLine

    text = pkg.requirement
    origin = Origin("snapshot", where or "snapshot", index, text)
    if pkg.kind == "index" or not pkg.source:
        return ReqLine(origin, "name", pkg.name, text, Requirement(text))
    if pkg.kind == "local":
        return ReqLine(origin, "path", pkg.name, str(installer.gate.local_path(pkg.source)))
    bare = pkg.source
    if not installer.policy.source_rules().url_allowed(bare):
        raise DepsSourceNotAllowed(
            f"snapshot package {pkg.name} comes from {bare}, outside allowed_pip_sources",
            hint="Add the URL prefix to allowed_pip_sources (or set allow_external_pip = true) in the [security] "
            "section of config.ini, or restore without --pip-non-local-url.",
            details={"package": pkg.name, "source": bare},
        )
    return ReqLine(origin, "url", pkg.name, text, Requirement(text), bare)


def _pip_install(
    manager: Any,
    snapshot: Snapshot,
    options: RestoreOptions,
    where: str,
    emit: Callable[[str], None],
    run: Any = None,
) -> dict[str, Any]:
    from ..deps.plan import DepsPlan, Planner

    installer = run.get() if run is not None else dependency_installer(manager)
    env = installer.environment  # one probe of ComfyUI's python: the live packages and the installer's facts
    wanted, skipped = python_requirements(_live_python_changes(manager, snapshot, env), options.pip_kinds())
    if not wanted:
        return {"installed": [], "note": "every package already matches the snapshot"}
    installed = env.installed()
    lines = [_req_line(p, i + 1, where, installer) for i, p in enumerate(wanted)]
    planner = Planner(installer.policy, env)
    deps = planner.plan_lines("snapshot", manager.layout.manager_dir, None, lines, (), (), installed)
    merged, conflicts, skips = planner.merge([deps], installed)
    result = installer.install_plan(DepsPlan((deps,), merged, conflicts, skips, installed), emit)
    return {"installed": [p.requirement for p in wanted], "skipped_by_flags": skipped, "deps": result.to_dict()}


def _pip_uninstall(manager: Any, snapshot: Snapshot, emit: Callable[[str], None]) -> dict[str, Any]:
    from ..deps.backends.base import RunOptions, run_streaming
    from ..deps.errors import DepsInstallFailed

    installer = dependency_installer(manager)
    names, kept = removable(_live_python_changes(manager, snapshot), installer.policy.protected)
    if not names:
        return {"uninstalled": [], "kept": kept}
    choice = installer.choice
    if choice.name == "uv":
        cmd = [*choice.command, "pip", "uninstall", "--python", choice.python, *names]
    else:
        cmd = [*choice.command, "uninstall", "-y", *names]
    res = run_streaming(cmd, emit, options=RunOptions())
    if not res.ok:
        raise DepsInstallFailed(
            f"{choice.name} failed to uninstall {', '.join(names)} (exit {res.returncode})",
            hint="Read the installer output; uninstall the packages by hand if needed.",
            details={"command": cmd, "output_tail": list(res.output_tail)},
        )
    return {"uninstalled": names, "kept": kept}


# --- pack steps --------------------------------------------------------------------------------
def _pack_step(
    ops: Any, step: RestoreStep, rep: Any, snapshot: Snapshot, options: RestoreOptions, policy: PolicyDecision | None
) -> dict[str, Any]:
    from ..operations.install import install
    from ..operations.remove import uninstall
    from ..operations.toggle import disable, enable
    from ..operations.update import switch_version

    p = step.params
    name = str(p.get("name") or step.target)
    if step.kind == "pack_remove":
        return uninstall(ops, name, rep, enabled=bool(p.get("enabled")), version=None).to_dict()
    if step.kind == "pack_disable":
        return disable(ops, name, rep).to_dict()
    if step.kind == "pack_enable":
        return enable(ops, name, rep, version=str(p.get("version") or "") or None).to_dict()
    if step.kind == "pack_checkout":
        return switch_version(ops, name, rep, commit=str(p["commit"]), skip_deps=options.no_deps).to_dict()
    if step.kind == "pack_switch":
        result = switch_version(ops, name, rep, version=str(p["version"]), skip_deps=options.no_deps)
        return {**result.to_dict(), **_drop_parked(ops, rep, snapshot, str(p.get("id") or name), result.previous)}
    if step.kind == "pack_install":
        if p.get("kind") == "git":
            allow = PolicyDecision.allow(
                "snapshot_restore", "git_url", f"restoring a snapshot ({policy.reason if policy else 'allowed'})"
            )
            ref = str(p.get("commit") or p.get("branch") or "") or None
            return install(
                ops, str(p["url"]), rep, name=name, ref=ref, policy=allow, skip_deps=options.no_deps
            ).to_dict()
        version = str(p.get("version") or "") or "latest"
        return install(
            ops, str(p.get("id") or name), rep, version=version, name=name, skip_deps=options.no_deps
        ).to_dict()
    raise ValueError(f"unknown restore step kind {step.kind!r}")


def _drop_parked(ops: Any, rep: Any, snapshot: Snapshot, ident: str, previous: str) -> dict[str, Any]:
    """A version switch parks the old copy in .disabled/; unless the snapshot has it, it goes to the trash."""
    from ..operations.remove import uninstall

    if not previous or any(not s.enabled and (s.cnr_id or s.id).lower() == ident.lower() for s in snapshot.packs):
        return {}
    parked = [
        x
        for x in ops.inventory().disabled
        if (x.cnr_id or x.pack_id).lower() == ident.lower() and previous in (x.version, x.cnr_version)
    ]
    if len(parked) != 1:
        return {}
    res = uninstall(ops, parked[0].name, rep, enabled=False, version=previous)
    return {"parked_copy_trashed": res.to_dict()}


# --- undoing done steps --------------------------------------------------------------------------
def _disabled_names(ops: Any) -> set[str]:
    return {p.name for p in ops.inventory().disabled}


def _undo_step(ops: Any, rep: Any, done: StepOutcome, disabled_before: set[str] | None) -> dict[str, Any]:
    """Put one done pack step back (``StepOutcome.step.undo`` says how); raises when it cannot."""
    from ..operations.remove import restore_trash, uninstall
    from ..operations.toggle import disable, enable
    from ..operations.update import switch_version

    step, res = done.step, dict(done.result or {})
    name = str(res.get("pack") or step.params.get("name") or step.target)
    if step.kind == "pack_remove":
        return restore_trash(ops, str(res["trash_entry"]), rep).to_dict()
    if step.kind == "pack_disable":
        back = str(res.get("from") or step.params.get("name") or name)
        return enable(ops, back, rep, version=str(res.get("version") or "") or None).to_dict()
    if step.kind == "pack_enable":
        return disable(ops, name, rep).to_dict()
    if step.kind == "pack_install":
        return uninstall(ops, name, rep, enabled=True).to_dict()
    if step.kind == "pack_checkout":
        if not res.get("changed", True) or not res.get("previous"):
            return {"note": "the checkout did not move; nothing to put back"}
        return switch_version(ops, name, rep, commit=str(res["previous"]), skip_deps=True).to_dict()
    if step.kind == "pack_switch":
        out: dict[str, Any] = {}
        trashed = res.get("parked_copy_trashed")
        if isinstance(trashed, Mapping) and trashed.get("trash_entry"):
            out["parked_copy_restored"] = restore_trash(ops, str(trashed["trash_entry"]), rep).to_dict()
        if res.get("changed", True) and res.get("previous"):
            out["switched_back"] = switch_version(
                ops, name, rep, version=str(res["previous"]), skip_deps=True
            ).to_dict()
        if disabled_before is not None:  # the copy parked by switching back was not there before the step
            for extra in sorted(_disabled_names(ops) - disabled_before):
                out.setdefault("trashed", []).append(uninstall(ops, extra, rep, enabled=False).to_dict())
        return out
    raise ValueError(f"no undo for restore step kind {step.kind!r}")


def _undo(
    ops: Any, rep: Any, done: list[StepOutcome], disabled_before: Mapping[int, set[str]], ctx: Any
) -> tuple[list[StepOutcome], list[StepOutcome]]:
    """Undo ``done`` in reverse order; (undone, not undone with the reason)."""
    undone: list[StepOutcome] = []
    kept: list[StepOutcome] = []
    for outcome in reversed(done):
        step = outcome.step
        if ctx is not None:
            ctx.progress("undo", None, f"undo [{step.index}] {step.description}")
        if not step.undoable:
            kept.append(StepOutcome(step, "not_undone", error={"code": "not_undoable", "message": step.undo}))
            continue
        started = time.monotonic()
        try:
            result = _undo_step(ops, rep, outcome, disabled_before.get(step.index))
        except ManagerError as exc:
            kept.append(StepOutcome(step, "not_undone", round(time.monotonic() - started, 3), error=exc.to_dict()))
            continue
        undone.append(StepOutcome(step, "undone", round(time.monotonic() - started, 3), result=result))
    return undone, kept


# --- running the plan --------------------------------------------------------------------------
def _pip_texts(manager: Any, snapshot: Snapshot, plan: RestorePlan) -> list[str]:
    if not any(s.kind == "pip_install" for s in plan.steps):
        return []
    assert plan.diff is not None
    wanted, _ = python_requirements(plan.diff, plan.options.pip_kinds())
    return [p.requirement for p in wanted]


def execute_plan(
    manager: Any,
    snapshot: Snapshot,
    plan: RestorePlan,
    *,
    ctx: Any = None,
    policy: PolicyDecision | None = None,
    deps_step: Any = None,
    auto_snapshot_name: str = "",
    checked: bool = False,
    installer: Any = None,
) -> RestoreResult:
    """Run ``plan``'s steps in order; stop at the first failure and undo the steps done, in reverse
    order (``result.undone``; what could not be undone, with why, in ``result.not_undone``). Checks
    (unsafe entries, policy, offline sources) run first and raise before anything changes.
    ``installer``: the restore's ``RunInstaller`` (one probe of ComfyUI's python, one read of each
    wheel's metadata for the whole restore); a fresh one when not given."""
    from ..deps.installer import RunInstaller
    from ..operations.ops import Ops
    from ..operations.reporting import Reporter

    if plan.refused:
        raise refusal_error(plan.snapshot, plan.problems)
    installer = installer if installer is not None else RunInstaller(manager)
    if not checked:
        texts = _pip_texts(manager, snapshot, plan)
        preflight(manager, plan, texts, policy=policy, left_out=plan.left_out, installer=installer)
    with prefetch_clones(manager, plan) as ready:
        keep = (ready.root,) if ready.root else ()
        ops = Ops(manager, deps_step=deps_step, installer=installer, prefetched=ready.clones, keep=keep)
        return _execute(manager, snapshot, plan, ops, Reporter(ctx), ctx, policy, auto_snapshot_name)


def _execute(
    manager: Any,
    snapshot: Snapshot,
    plan: RestorePlan,
    ops: Any,
    rep: Any,
    ctx: Any,
    policy: PolicyDecision | None,
    auto_snapshot_name: str,
) -> RestoreResult:
    total = len(plan.steps)
    done: list[StepOutcome] = []
    disabled_before: dict[int, set[str]] = {}
    restart = False
    for i, step in enumerate(plan.steps):
        if ctx is not None:
            ctx.check_cancelled()
            ctx.progress("step", 100.0 * i / max(1, total), f"[{i + 1}/{total}] {step.description}")
        started = time.monotonic()
        try:
            if step.kind == "pip_install":
                result = _pip_install(
                    manager, snapshot, plan.options, plan.snapshot, rep.line_fn("deps"), ops.installer
                )
            elif step.kind == "pip_uninstall":
                result = _pip_uninstall(manager, snapshot, rep.line_fn("deps"))
            else:
                if step.kind == "pack_switch":
                    disabled_before[step.index] = _disabled_names(ops)
                result = _pack_step(ops, step, rep, snapshot, plan.options, policy)
                restart = restart or bool(result.get("restart_required", True))
        except ManagerError as exc:
            failed = StepOutcome(step, "failed", time.monotonic() - started, error=exc.to_dict())
            undone, kept = _undo(ops, rep, done, disabled_before, ctx)
            return _with_report(
                manager,
                snapshot,
                plan,
                RestoreResult(
                    plan.snapshot,
                    False,
                    tuple(done),
                    failed,
                    plan.steps[i + 1 :],
                    auto_snapshot_name,
                    restart,
                    plan.notes,
                    plan.skipped,
                    tuple(undone),
                    tuple(kept),
                    left_out=plan.left_out,
                ),
                ops.installer,
            )
        done.append(StepOutcome(step, "done", round(time.monotonic() - started, 3), result=result))
    if ctx is not None:
        ctx.progress("done", 100.0, f"restored {plan.snapshot or 'the snapshot'}: {total} step(s)")
        if restart:
            ctx.require_restart("a snapshot was restored")
    finished = RestoreResult(
        plan.snapshot,
        True,
        tuple(done),
        None,
        (),
        auto_snapshot_name,
        restart,
        plan.notes,
        plan.skipped,
        left_out=plan.left_out,
    )
    return _with_report(manager, snapshot, plan, finished, ops.installer)


def _installed_names(done: tuple[StepOutcome, ...]) -> set[str]:
    out: set[str] = set()
    for o in done:
        if o.step.kind == "pip_install":
            for text in (o.result or {}).get("installed") or ():
                out.add(str(canonicalize_name(Requirement(str(text)).name)))
    return out


def _differed(plan: RestorePlan) -> set[str]:
    """Packages that differed from the snapshot before the restore (a pack step may have put them back)."""
    return {c.name for c in plan.diff.python} if plan.diff is not None else set()


def _with_report(
    manager: Any, snapshot: Snapshot, plan: RestorePlan, result: RestoreResult, installer: Any = None
) -> RestoreResult:
    """``result`` with the report read from a fresh capture of the tree (after the last step, or the undo);
    ``ok`` only when no step failed and every entry is as the snapshot has it. ``installer``: the
    restore's, whose probe of the python gives the site folders read now (no second probe)."""
    options = plan.options
    want_python = bool(snapshot.python) and bool(options.pip_kinds())
    environment = _environment(installer) if want_python and installer is not None else None
    after = capture(
        manager, reason="restore-report", include_python=want_python, include_models=False, environment=environment
    )
    failed = (result.failed.step, dict(result.failed.error or {})) if result.failed is not None else None
    report = report_after(
        snapshot,
        after,
        options,
        planned=plan.steps,
        done=[o.step for o in result.done],
        failed=failed,
        not_done=result.not_done,
        undone=[o.step for o in result.undone],
        left_out=plan.left_out,
        pip_installed=_installed_names(result.done) | _differed(plan),
        notes=plan.notes,
    )
    ok = result.failed is None and not report.counts.get("failed")
    return dataclasses.replace(result, ok=ok, report=report)


def failure_error(result: RestoreResult) -> SnapshotRestoreFailed:
    """The coded error for a failed restore, carrying the whole report in ``details``."""
    assert result.failed is not None
    cause = dict(result.failed.error or {})
    step = result.failed.step
    return SnapshotRestoreFailed(
        f"restore of {result.snapshot or 'the snapshot'} stopped at step {step.index} ({step.description}): "
        f"{cause.get('message', 'failed')}",
        hint=(
            f"{len(result.done)} step(s) were done and {len(result.undone)} of them undone"
            + (
                f" ({len(result.not_undone)} could not be: "
                + "; ".join(
                    f"{o.step.index}. {o.step.kind}: {(o.error or {}).get('message', '')}" for o in result.not_undone
                )
                + ")"
                if result.not_undone
                else ""
            )
            + f"; {len(result.not_done)} not started. {cause.get('hint', '')} "
            + (
                f"The state before the restore is saved as snapshot {result.auto_snapshot}."
                if result.auto_snapshot
                else ""
            )
        ).strip(),
        details={**result.to_json(), "cause": cause},
    )


def _environment(installer: Any) -> Any:
    """The installer's probe of ComfyUI's python, or ``None`` when it cannot be made (a policy file
    that does not parse, a python that does not run): the capture then probes and reports it."""
    try:
        deps = installer.get()
        return deps.environment if deps.policy.python == target_python(installer.manager) else None
    except ManagerError:
        return None


def restore(
    manager: Any,
    snapshot: Snapshot,
    options: RestoreOptions | None = None,
    *,
    where: str = "",
    ctx: Any = None,
    policy: PolicyDecision | None = None,
    deps_step: Any = None,
    raise_on_failure: bool = True,
    installer: Any = None,
) -> RestoreResult:
    """Plan, check, auto-snapshot (when there is something to do), then execute.

    Raises ``snapshot_invalid`` (an unsafe entry), ``snapshot_sources_missing`` / ``policy_denied``
    before any change, and
    ``snapshot_restore_failed`` (the full report in details) when a step fails, unless
    ``raise_on_failure`` is false.
    """
    from ..deps.installer import RunInstaller
    from . import auto_snapshot

    options = options or RestoreOptions()
    problems = check_entries(snapshot)  # before anything is read from the tree: no probe, no git, no change
    if any(p.status == "refused" for p in problems):
        raise refusal_error(where, problems)
    current = None
    # the restore's (or the task run's, given): one probe of ComfyUI's python for all its parts
    installer = installer if installer is not None else RunInstaller(manager)
    if options.auto_snapshot:  # one capture for the plan and the auto-snapshot (nothing changes in between)
        want_python = bool(snapshot.python) and bool(options.pip_kinds())
        environment = _environment(installer) if want_python else None
        current = capture(manager, reason="auto:restore", strict_python=want_python, environment=environment)
    plan = plan_restore(manager, snapshot, options, where=where, current=current)
    if plan.refused:
        raise refusal_error(plan.snapshot, plan.problems)
    if plan.empty and not plan.left_out:
        return RestoreResult(plan.snapshot, True, notes=plan.notes + ("nothing to do",), skipped=plan.skipped)
    texts = _pip_texts(manager, snapshot, plan)
    preflight(manager, plan, texts, policy=policy, left_out=plan.left_out, installer=installer)
    auto_name = auto_snapshot(manager, "restore", current).name if options.auto_snapshot and not plan.empty else ""
    result = execute_plan(
        manager,
        snapshot,
        plan,
        ctx=ctx,
        policy=policy,
        deps_step=deps_step,
        auto_snapshot_name=auto_name,
        checked=True,
        installer=installer,
    )
    if result.failed is not None and raise_on_failure:
        raise failure_error(result)
    return result
