"""Plan and submit: one request of any door becomes a decided, queued task.

``plan`` validates the parameters (the kind's dataclass), classifies the source, asks the security
policy and builds the ``TaskSpec`` whose params carry the allowing decision; ``submit`` checks a
whole batch before queueing any of it. Nothing here runs an operation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .. import security as sec
from ..errors import RequestInvalid
from ..events import TaskSpec
from .table import BY_NAME, TaskKind, kind_named

if TYPE_CHECKING:
    from ..context import CatalogView, Manager
    from ..records import PolicyDecision
    from ..tasks import Runner, Task, TaskContext


@dataclass(frozen=True)
class PlannedTask:
    """A request the policy decided: what to queue, under which id, and the decision it carries."""

    spec: TaskSpec
    decision: PolicyDecision
    task_id: str | None = None
    client_id: str | None = None

    def with_params(self, **extra: Any) -> PlannedTask:
        """The same task with door metadata added to its params (e.g. the 4.x identity)."""
        return replace(self, spec=replace(self.spec, params={**self.spec.params, **extra}))


def settings_for(manager: Manager, listen: str, peer: str | None = None, door: str = "") -> sec.SecuritySettings:
    """The policy's input for one request. ``peer`` None: a caller on this machine (the CLI, which
    is also the door when none is named); otherwise the request's address ("" if unknown)."""
    return sec.SecuritySettings.from_config(
        manager.config, listen, peer=peer, door=door or ("cli" if peer is None else "")
    )


def plan(
    manager: Manager,
    kind: str | TaskKind,
    target: str,
    params: Mapping[str, Any] | None = None,
    *,
    listen: str,
    peer: str | None = None,
    door: str = "",
    view: CatalogView | None = None,
    enforce: bool = True,
    task_id: str | None = None,
    client_id: str | None = None,
) -> PlannedTask:
    """Validate, classify and decide one request. ``listen`` is the address of the door's listener
    (policy input: loopback or not; the CLI is loopback). ``peer`` is the address the request came
    from (None: the CLI, a local caller; on a non-loopback listener only a peer inside
    ``trusted_networks`` may act); ``door`` names the door for the hints. ``enforce`` False returns a denying
    decision instead of raising ``security_denied`` (a dry-run plan is shown at any level).
    ``view`` is the loaded catalog, or None: installs then classify with nothing listed."""
    spec_kind = kind if isinstance(kind, TaskKind) else kind_named(kind)
    raw = dict(params or {})
    for key in ("policy",):
        raw.pop(key, None)  # a decision is made here, never taken from a client
    typed = spec_kind.params.from_mapping(raw)
    target = (target or "").strip() or spec_kind.default_target
    if spec_kind.needs_catalog and view is None:
        raise RequestInvalid(
            f"{spec_kind.name} needs the channel's catalog, which is not loaded",
            hint="Load the catalog first (cm-cli.py update-cache, or GET /offline-manager/v1/models).",
        )
    if not target and spec_kind.name != "install_pip":
        raise RequestInvalid(
            f"task {spec_kind.name!r} needs a target ({spec_kind.target})",
            hint="Give 'target' (v1) or 'id' (classic body).",
            details={"field": "target"},
        )
    settings = settings_for(manager, listen, peer, door)
    if spec_kind.fixed_risk is not None and enforce:  # a flag-gated route refuses before parsing anything
        sec.enforce(
            sec.decide(settings, spec_kind.operation, spec_kind.fixed_risk, source=target),
            {"target": target, "kind": spec_kind.name},
        )
    seen, typed = spec_kind.classify(manager, view, target, typed)
    decision = sec.decide(settings, spec_kind.operation, seen.risk, source=seen.source)
    if enforce:
        sec.enforce(decision, {"target": seen.target, "kind": spec_kind.name})
    spec = TaskSpec(spec_kind.queue_kind, seen.target, {**typed.to_dict(), "policy": decision.to_dict()})
    return PlannedTask(spec, decision, task_id, client_id)


def vet(manager: Manager, planned: Sequence[PlannedTask]) -> None:
    """The submit-time checks that need disk or the cache (the kinds' ``vet``); blocking: the
    HTTP doors call it from a worker thread, ``submit`` runs it itself unless told it ran."""
    for p in planned:
        kind = BY_NAME[p.spec.kind]
        if kind.vet is not None:
            kind.vet(manager, p.spec)


def submit(manager: Manager, planned: Sequence[PlannedTask], *, vetted: bool = False) -> list[Task]:
    """Queue planned tasks in order. The batch is checked first (every decision allows, every kind
    has a runner, task ids are distinct), so a refused batch queues nothing."""
    queue = manager.queue
    denied = [p for p in planned if not p.decision.allowed]
    if denied:
        sec.enforce(denied[0].decision, {"target": denied[0].spec.target, "kind": denied[0].spec.kind})
    missing = sorted({p.spec.kind for p in planned} - set(queue.kinds))
    if missing:
        raise RequestInvalid(
            f"no runner for task kind {', '.join(missing)} in this build",
            hint="Kinds available here: " + ", ".join(queue.kinds),
            details={"kinds": missing},
        )
    if not vetted:
        vet(manager, planned)
    ids = [p.task_id for p in planned if p.task_id]
    if len(ids) != len(set(ids)):
        raise RequestInvalid(
            "two tasks of the batch have the same task_id",
            details={"field": "task_id"},
            hint="Give each task its own task_id, or leave task_id out.",
        )
    return [queue.enqueue(p.spec, client_id=p.client_id, task_id=p.task_id) for p in planned]


def preview(manager: Manager, planned: PlannedTask) -> Mapping[str, Any]:
    """What a planned task would change, changing nothing (blocking: call from a worker thread)."""
    kind = BY_NAME[planned.spec.kind]
    if kind.preview is None:
        raise RequestInvalid(
            f"{kind.name} has no dry run yet",
            details={"kind": kind.name},
            hint="Run it without dry_run, or save a snapshot first so it can be undone.",
        )
    typed = kind.params.from_mapping(planned.spec.params, lenient=True)
    return kind.preview(manager, planned.spec.target, typed, planned.decision)


def preview_plan(manager: Manager, planned: PlannedTask) -> dict[str, Any]:
    """The shared plan record (``manager.plans.Plan.to_dict()``) of a planned task's dry run; a
    denying decision is its first blocker (a plan is shown at any security level)."""
    answer = preview(manager, planned)
    if "shared_plan" in answer:
        record = dict(answer["shared_plan"])
    else:  # a preview that answers its own shape: carried whole, beside an empty record
        from ..plans import Plan

        record = {**Plan(planned.spec.kind, planned.spec.target).to_dict(), "details": dict(answer)}
    if not planned.decision.allowed:
        denied = {"code": "security_denied", "message": planned.decision.reason, "details": planned.decision.to_dict()}
        record = {**record, "ok": False, "blockers": [denied, *record.get("blockers", [])]}
    return record


def queue_runners(manager: Manager) -> dict[str, Runner]:
    """The queue's runner of every kind: the kind's parameters re-read from the planned task."""
    out: dict[str, Runner] = {}
    for kind in BY_NAME.values():
        if kind.runs_as:
            continue  # shares the runner of the kind it runs as
        out[kind.name] = _bind(manager, kind)
    return out


def _bind(manager: Manager, kind: TaskKind) -> Runner:
    from ..undo import RECORDED
    from .runners import Job

    def run(ctx: TaskContext) -> Mapping[str, Any]:
        from ..operations import parse_policy

        raw = ctx.params
        typed = kind.params.from_mapping(raw, lenient=True)
        if kind.name in RECORDED and not raw.get("dry_run"):
            from ..deps.installer import RunInstaller
            from ..undo import recorded  # the package set before and after, for `undo TASK`

            # one installer per run: its first probe of ComfyUI's python gives the record's
            # "before" and the environment the deps step plans with (one subprocess, not two)
            installer = RunInstaller(manager)
            job = Job(manager, ctx, typed, parse_policy(raw.get("policy")), installer)
            return recorded(manager, ctx, lambda: kind.run(job), first_probe=installer.package_set)
        return kind.run(Job(manager, ctx, typed, parse_policy(raw.get("policy"))))

    run.__name__ = f"run_{kind.name}"
    return run
