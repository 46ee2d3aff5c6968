"""The operations engine: one module per verb, and the task runners the queue calls.

``build_runners(manager)`` maps task kinds to runners (register with
``manager.add_runners(build_runners)``). Task targets and params (see docs/operations.md):

==============  ============================  ====================================================
kind            target                        params
==============  ============================  ====================================================
install         node spec (id, id@ver, URL,   version, name, ref, policy, skip_deps, script_timeout
                absolute path, file:// URL)
reinstall       installed pack key            spec, policy, skip_deps, script_timeout
uninstall       installed pack key            version, enabled
update          installed pack key            version (registry), skip_deps
update_all      anything (e.g. "all")         plan (a shown ``Plan.to_dict()``), skip_deps
fix             installed pack key            script_timeout
disable         enabled pack key              -
enable          disabled pack key             version
switch_version  enabled pack key              version (x.y.z | latest | nightly | tag), commit
restore_trash   trash entry id                -
empty_trash     anything (e.g. "trash")       older_than_days, entries
==============  ============================  ====================================================

Runners never take the operations lock: the queue holds it around each task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

from .ops import DepsStep, Ops
from .policy import parse_policy
from .reporting import OpResult, Reporter

if TYPE_CHECKING:                                   # pragma: no cover
    from ..context import Manager
    from ..tasks import Runner, TaskContext

__all__ = ["build_runners", "Ops", "Reporter", "OpResult", "DepsStep", "KINDS"]

KINDS = ("install", "reinstall", "uninstall", "update", "update_all", "fix", "disable", "enable",
         "switch_version", "restore_trash", "empty_trash")


def _opt_str(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    return str(value) if value not in (None, "") else None


def _opt_float(params: Mapping[str, Any], key: str) -> float | None:
    value = params.get(key)
    return float(value) if value not in (None, "") else None


def build_runners(manager: "Manager", *, deps_step: DepsStep | None = None) -> dict[str, "Runner"]:
    """Task runners for every operation kind, bound to ``manager``."""
    from . import install as inst, remove, toggle, update as upd

    ops = Ops(manager, deps_step=deps_step)

    def runner(fn: Callable[["TaskContext", Reporter, Mapping[str, Any]], Any]) -> "Runner":
        def run(ctx: "TaskContext") -> dict[str, Any]:
            rep = Reporter(ctx)
            out = fn(ctx, rep, ctx.params)
            return out.to_dict() if isinstance(out, OpResult) else dict(out)
        return run

    def install(ctx: "TaskContext", rep: Reporter, p: Mapping[str, Any]) -> Any:
        return inst.install(ops, ctx.target, rep, version=_opt_str(p, "version"), name=_opt_str(p, "name"),
                            ref=_opt_str(p, "ref"), policy=parse_policy(p.get("policy")),
                            skip_deps=bool(p.get("skip_deps")), script_timeout=_opt_float(p, "script_timeout"))

    def reinstall(ctx: "TaskContext", rep: Reporter, p: Mapping[str, Any]) -> Any:
        return inst.reinstall(ops, ctx.target, rep, spec=_opt_str(p, "spec"), policy=parse_policy(p.get("policy")),
                              skip_deps=bool(p.get("skip_deps")), script_timeout=_opt_float(p, "script_timeout"))

    def uninstall(ctx: "TaskContext", rep: Reporter, p: Mapping[str, Any]) -> Any:
        enabled = p.get("enabled")
        return remove.uninstall(ops, ctx.target, rep, version=_opt_str(p, "version"),
                                enabled=None if enabled is None else bool(enabled))

    def update(ctx: "TaskContext", rep: Reporter, p: Mapping[str, Any]) -> Any:
        return upd.update(ops, ctx.target, rep, skip_deps=bool(p.get("skip_deps")), version=_opt_str(p, "version"))

    def update_all(ctx: "TaskContext", rep: Reporter, p: Mapping[str, Any]) -> Any:
        raw = p.get("plan")
        plan = upd.Plan.from_dict(raw) if isinstance(raw, Mapping) else upd.plan_update_all(ops, rep)
        undo = None
        if plan.steps and p.get("auto_snapshot", True):
            from ..snapshots import auto_snapshot   # so an update-all can be undone by a restore
            rep.stage("snapshot", 0.0, "saving an auto-snapshot before the update")
            undo = auto_snapshot(manager, "update_all").name
        result = upd.run_update_all(ops, plan, rep, skip_deps=bool(p.get("skip_deps")))
        result["plan"] = plan.to_dict()
        result["auto_snapshot"] = undo
        return result

    def fix(ctx: "TaskContext", rep: Reporter, p: Mapping[str, Any]) -> Any:
        return upd.fix(ops, ctx.target, rep, script_timeout=_opt_float(p, "script_timeout"))

    def disable(ctx: "TaskContext", rep: Reporter, p: Mapping[str, Any]) -> Any:
        return toggle.disable(ops, ctx.target, rep)

    def enable(ctx: "TaskContext", rep: Reporter, p: Mapping[str, Any]) -> Any:
        return toggle.enable(ops, ctx.target, rep, version=_opt_str(p, "version"))

    def switch_version(ctx: "TaskContext", rep: Reporter, p: Mapping[str, Any]) -> Any:
        return upd.switch_version(ops, ctx.target, rep, version=_opt_str(p, "version") or "",
                                  commit=_opt_str(p, "commit") or "", skip_deps=bool(p.get("skip_deps")))

    def restore_trash(ctx: "TaskContext", rep: Reporter, p: Mapping[str, Any]) -> Any:
        return remove.restore_trash(ops, ctx.target, rep)

    def empty_trash(ctx: "TaskContext", rep: Reporter, p: Mapping[str, Any]) -> Any:
        entries = p.get("entries")
        return remove.empty_trash(ops, rep, older_than_days=_opt_float(p, "older_than_days"),
                                  entries=[str(e) for e in entries] if isinstance(entries, list) else None)

    table = {"install": install, "reinstall": reinstall, "uninstall": uninstall, "update": update,
             "update_all": update_all, "fix": fix, "disable": disable, "enable": enable,
             "switch_version": switch_version, "restore_trash": restore_trash, "empty_trash": empty_trash}
    return {kind: runner(fn) for kind, fn in table.items()}
