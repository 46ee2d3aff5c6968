"""Snapshots: capture, store, compare and restore the state of a ComfyUI tree (docs/snapshots.md).

Modules: ``model`` (the document), ``capture``, ``store``, ``classic`` (the classic format),
``diff``, ``plan`` (restore options and steps), ``preflight`` (checks before any change),
``restore`` (execution). This package imports nothing heavy at load time and does no I/O.
"""

from __future__ import annotations

from typing import Any, Mapping

from .model import FORMAT, FORMAT_VERSION, ModelState, PackState, PythonPackage, Snapshot
from .store import SnapshotStore, StoredSnapshot

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelState", "PackState", "PythonPackage", "Snapshot", "SnapshotStore",
           "StoredSnapshot", "auto_snapshot", "build_runners", "store_of"]


def store_of(manager: Any) -> SnapshotStore:
    """The Manager's snapshots folder."""
    return SnapshotStore(manager.layout.snapshots_dir)


def _retention(manager: Any) -> int:
    return int(manager.config["snapshot_retention"])


def auto_snapshot(manager: Any, reason: str) -> StoredSnapshot:
    """Save the current state as ``<time>_auto-<reason>`` (before update-all, restore, ...) and apply
    ``snapshot_retention``. Returns what was stored; the caller reports its name so the change can be undone."""
    from .capture import capture

    store = store_of(manager)
    saved = store.save(capture(manager, reason=f"auto:{reason}"))
    store.prune_auto(_retention(manager))
    return saved


def _save_runner(manager: Any) -> Any:
    def run(ctx: Any) -> Mapping[str, Any]:
        from .capture import capture

        params = ctx.params
        name = params.get("name") or (ctx.target if ctx.target not in ("", "-", "new", "auto") else None)
        ctx.progress("capture", 10.0)
        snap = capture(manager, reason=str(params.get("reason") or "manual"),
                       hash_models=bool(params.get("hash_models", False)))
        ctx.progress("save", 80.0)
        saved = store_of(manager).save(snap, name, overwrite=bool(params.get("overwrite", False)))
        ctx.progress("done", 100.0, f"saved snapshot {saved.name}")
        return {"action": "snapshot_save", **saved.to_dict(), "notes": list(snap.notes)}
    return run


def _restore_runner(manager: Any, deps_step: Any = None) -> Any:
    def run(ctx: Any) -> Mapping[str, Any]:
        from ..operations.policy import parse_policy
        from .plan import RestoreOptions
        from .restore import failure_error, plan_restore, restore

        params = ctx.params
        options = RestoreOptions.from_params({k: v for k, v in params.items()
                                              if k not in ("policy", "dry_run")})
        snapshot, where = store_of(manager).load(ctx.target), ctx.target
        ctx.progress("plan", 5.0)
        if params.get("dry_run"):
            plan = plan_restore(manager, snapshot, options, where=where)
            ctx.progress("done", 100.0, f"{len(plan.steps)} step(s) planned (dry run)")
            return {"action": "snapshot_restore", "dry_run": True, **plan.to_json()}
        result = restore(manager, snapshot, options, where=where, ctx=ctx,
                         policy=parse_policy(params.get("policy")), deps_step=deps_step, raise_on_failure=False)
        if not result.ok:
            raise failure_error(result)
        return {"action": "snapshot_restore", "dry_run": False, **result.to_json()}
    return run


def build_runners(manager: Any, *, deps_step: Any = None) -> Mapping[str, Any]:
    """Task runners: ``snapshot_save`` (target: a name, or ``-`` for the default name; params: reason,
    hash_models, overwrite) and ``snapshot_restore`` (target: a stored name; params: the restore options,
    dry_run, policy). Only stored names are restored: a file is imported first (``SnapshotStore.import_file``),
    so a remote client can never hand in a document naming arbitrary sources."""
    return {"snapshot_save": _save_runner(manager), "snapshot_restore": _restore_runner(manager, deps_step)}
