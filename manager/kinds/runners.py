"""What the worker runs for each kind: typed parameters in, a JSON-able result out.

Every runner takes a ``Job``: the Manager, the queue's ``TaskContext`` (progress, cancel), the
kind's parameters re-read from the planned task, and the door's policy decision. The engine
modules are imported when a task runs, so building the queue imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import params as kp

if TYPE_CHECKING:
    from ..context import Manager
    from ..deps.installer import RunInstaller
    from ..operations import Ops
    from ..records import PolicyDecision
    from ..tasks import TaskContext

P = TypeVar("P", bound=kp.KindParams)


@dataclass(frozen=True)
class Job(Generic[P]):
    """One running task as its runner sees it."""

    manager: Manager
    ctx: TaskContext
    params: P
    policy: PolicyDecision | None
    installer: RunInstaller | None = None  # the run's dependency installer, shared with the undo record

    @property
    def target(self) -> str:
        return self.ctx.target

    def ops(self) -> Ops:
        from ..operations import Ops

        return Ops(self.manager, deps_step=self.manager.deps_step, installer=self.installer)

    def reporter(self) -> Any:
        from ..operations import Reporter

        return Reporter(self.ctx)


def _opt(text: str) -> str | None:
    return text or None


def _result(out: Any) -> dict[str, Any]:
    from ..operations import OpResult

    return out.to_dict() if isinstance(out, OpResult) else dict(out)


# --- packs ----------------------------------------------------------------------------------------------
def install(job: Job[kp.InstallParams]) -> dict[str, Any]:
    from ..operations import install as inst

    p = job.params
    return _result(
        inst.install(
            job.ops(),
            job.target,
            job.reporter(),
            version=_opt(p.version),
            name=_opt(p.name),
            ref=_opt(p.ref),
            policy=job.policy,
            skip_deps=p.skip_deps,
            script_timeout=p.script_timeout,
        )
    )


def reinstall(job: Job[kp.ReinstallParams]) -> dict[str, Any]:
    from ..operations import install as inst

    p = job.params
    return _result(
        inst.reinstall(
            job.ops(),
            job.target,
            job.reporter(),
            spec=_opt(p.spec),
            policy=job.policy,
            skip_deps=p.skip_deps,
            script_timeout=p.script_timeout,
        )
    )


def uninstall(job: Job[kp.UninstallParams]) -> dict[str, Any]:
    from ..operations import remove

    return _result(
        remove.uninstall(
            job.ops(), job.target, job.reporter(), version=_opt(job.params.version), enabled=job.params.enabled
        )
    )


def update(job: Job[kp.UpdateParams]) -> dict[str, Any]:
    from ..operations import update as upd

    return _result(
        upd.update(
            job.ops(), job.target, job.reporter(), skip_deps=job.params.skip_deps, version=_opt(job.params.version)
        )
    )


def update_all(job: Job[kp.UpdateAllParams]) -> dict[str, Any]:
    from ..operations import update as upd

    ops, rep, p = job.ops(), job.reporter(), job.params
    plan = upd.Plan.from_dict(p.plan) if p.plan is not None else upd.plan_update_all(ops, rep)
    undo = None
    if plan.steps and p.auto_snapshot:
        from ..snapshots import auto_snapshot  # so an update-all can be undone by a restore

        rep.stage("snapshot", 0.0, "saving an auto-snapshot before the update")
        undo = auto_snapshot(job.manager, "update_all").name
    result = dict(upd.run_update_all(ops, plan, rep, skip_deps=p.skip_deps))
    result["plan"] = plan.to_dict()
    result["auto_snapshot"] = undo
    return result


def fix(job: Job[kp.FixParams]) -> dict[str, Any]:
    from ..operations import update as upd

    return _result(upd.fix(job.ops(), job.target, job.reporter(), script_timeout=job.params.script_timeout))


def disable(job: Job[kp.KindParams]) -> dict[str, Any]:
    from ..operations import toggle

    return _result(toggle.disable(job.ops(), job.target, job.reporter()))


def enable(job: Job[kp.EnableParams]) -> dict[str, Any]:
    from ..operations import toggle

    return _result(toggle.enable(job.ops(), job.target, job.reporter(), version=_opt(job.params.version)))


def switch_version(job: Job[kp.SwitchVersionParams]) -> dict[str, Any]:
    from ..operations import update as upd

    p = job.params
    return _result(
        upd.switch_version(
            job.ops(), job.target, job.reporter(), version=p.version, commit=p.commit, skip_deps=p.skip_deps
        )
    )


def restore_trash(job: Job[kp.KindParams]) -> dict[str, Any]:
    from ..operations import remove

    return _result(remove.restore_trash(job.ops(), job.target, job.reporter()))


def empty_trash(job: Job[kp.EmptyTrashParams]) -> dict[str, Any]:
    from ..operations import remove

    p = job.params
    return _result(
        remove.empty_trash(
            job.ops(), job.reporter(), older_than_days=p.older_than_days, entries=list(p.entries) or None
        )
    )


# --- models, python packages ------------------------------------------------------------------------------
def install_model(job: Job[kp.InstallModelParams]) -> dict[str, Any]:
    from ..models import install_requested

    return install_requested(job.manager, job.ctx, job.params.to_dict())


def install_pip(job: Job[kp.InstallPipParams]) -> dict[str, Any]:
    """The given specs as a requirements file, installed by the dependency installer under the same
    rules as a pack's requirements.txt."""
    import uuid

    from ..deps.installer import installer_for
    from ..fsops import atomic_write_text

    manager, p = job.manager, job.params
    lines = ([f"--index-url {p.index_url}"] if p.index_url else []) + list(p.packages)
    path = manager.layout.manager_dir / "tmp" / f"pip-request-{uuid.uuid4().hex[:8]}.txt"
    atomic_write_text(path, "\n".join(lines) + "\n")
    try:
        installer = installer_for(manager)  # ComfyUI's python, never the Manager's own
        result = installer.install_requirements_file(
            path, lambda line: job.ctx.progress("pip", None, str(line)), label="pip request"
        )
    finally:
        path.unlink(missing_ok=True)
    return dict(result.to_dict())


# --- snapshots ----------------------------------------------------------------------------------------------
def snapshot_save(job: Job[kp.SnapshotSaveParams]) -> dict[str, Any]:
    from ..snapshots import save_now

    p = job.params
    name = p.name or (job.target if job.target not in ("", "-", "new", "auto") else None)
    return save_now(
        job.manager,
        name,
        reason=p.reason or "manual",
        hash_models=p.hash_models,
        overwrite=p.overwrite,
        progress=job.ctx.progress,
    )


def snapshot_restore(job: Job[kp.SnapshotRestoreParams]) -> dict[str, Any]:
    from ..snapshots import restore_stored

    return restore_stored(
        job.manager,
        job.target,
        restore_options(job.params),
        dry_run=job.params.dry_run,
        ctx=job.ctx,
        policy=job.policy,
        installer=job.installer,  # the run's: the undo record's probe serves the restore too
    )


def snapshot_restore_preview(
    manager: Manager, target: str, params: kp.SnapshotRestoreParams, decision: PolicyDecision
) -> dict[str, Any]:
    from ..snapshots import restore_preview

    return restore_preview(manager, target, restore_options(params), decision)


def restore_options(params: kp.SnapshotRestoreParams) -> Any:
    """The snapshot engine's ``RestoreOptions`` of validated restore parameters."""
    from ..snapshots.plan import RestoreOptions

    return RestoreOptions.from_params({k: v for k, v in params.to_dict().items() if k != "dry_run"})


# --- undo ---------------------------------------------------------------------------------------------------
def undo(job: Job[kp.UndoParams]) -> dict[str, Any]:
    """Put back the package set (and the pack) a finished task changed: resolved first, then applied."""
    from ..undo import run_undo

    p = job.params
    return run_undo(job.manager, job.target, job.ctx, include_torch=p.include_torch, dry_run=p.dry_run)


def undo_preview(manager: Manager, target: str, params: kp.UndoParams, decision: PolicyDecision) -> dict[str, Any]:
    from ..undo import run_undo

    return run_undo(manager, target, None, include_torch=params.include_torch, dry_run=True)


# --- offline bundles ------------------------------------------------------------------------------------------
def bundle_import(job: Job[kp.BundleImportParams]) -> dict[str, Any]:
    """Verify the bundle, fill the offline stores atomically, then (``apply``) restore its snapshot offline."""
    from pathlib import Path

    from ..bundles import import_bundle, preview_import
    from ..snapshots import restore_stored
    from ..snapshots.plan import RestoreOptions

    path = Path(job.target)
    if job.params.dry_run:
        return {"action": "bundle_import", "dry_run": True, **preview_import(job.manager, path).to_dict()}

    def restore(name: str) -> dict[str, Any]:
        options = RestoreOptions.from_params({"pip_non_url": True})
        return restore_stored(job.manager, name, options, dry_run=False, ctx=job.ctx, policy=job.policy)

    result = import_bundle(
        job.manager,
        path,
        apply=job.params.apply,
        progress=lambda line: job.ctx.progress("bundle", None, line),
        restore=restore,
    )
    return {"action": "bundle_import", "dry_run": False, **result.to_dict()}


def bundle_import_preview(
    manager: Manager, target: str, params: kp.BundleImportParams, decision: PolicyDecision
) -> dict[str, Any]:
    """What the import would add (verified first): a plan of the stores, packs listed as added."""
    from pathlib import Path

    from ..bundles import preview_import

    preview = preview_import(manager, Path(target))
    return {"action": "bundle_import", "dry_run": True, **preview.to_dict(), "shared_plan": preview.to_plan().to_dict()}
