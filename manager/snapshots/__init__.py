"""Snapshots: capture, store, compare and restore the state of a ComfyUI tree (docs/snapshots.md).

Modules: ``model`` (the document), ``capture``, ``store``, ``classic`` (the classic format),
``diff``, ``plan`` (restore options and steps), ``preflight`` (checks before any change),
``restore`` (execution). This package imports nothing heavy at load time and does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .model import FORMAT, FORMAT_VERSION, ModelState, PackState, PythonPackage, Snapshot
from .store import SnapshotStore, StoredSnapshot

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelState",
    "PackState",
    "PythonPackage",
    "Snapshot",
    "SnapshotStore",
    "StoredSnapshot",
    "auto_snapshot",
    "check_stored",
    "restore_preview",
    "restore_stored",
    "save_now",
    "store_of",
]


def store_of(manager: Any) -> SnapshotStore:
    """The Manager's snapshots folder."""
    return SnapshotStore(manager.layout.snapshots_dir)


def _retention(manager: Any) -> int:
    return int(manager.config["snapshot_retention"])


def auto_snapshot(manager: Any, reason: str, captured: Any = None) -> StoredSnapshot:
    """Save the current state as ``<time>_auto-<reason>`` (before update-all, restore, ...) and apply
    ``snapshot_retention``. Returns what was stored; the caller reports its name so the change can be undone.
    ``captured``: a full capture the caller took just now, with nothing changed since."""
    from .capture import capture

    store = store_of(manager)
    saved = store.save(captured if captured is not None else capture(manager, reason=f"auto:{reason}"))
    store.prune_auto(_retention(manager))
    return saved


def save_now(
    manager: Any,
    name: str | None,
    *,
    reason: str = "manual",
    hash_models: bool = False,
    overwrite: bool = False,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """Capture the tree and store it as ``name`` (None: ``<time>_snapshot``); the ``snapshot_save`` task."""
    from .capture import capture

    report = progress or (lambda _stage, _percent: None)
    report("capture", 10.0)
    snap = capture(manager, reason=reason, hash_models=hash_models)
    report("save", 80.0)
    saved = store_of(manager).save(snap, name, overwrite=overwrite)
    report("done", 100.0)
    return {"action": "snapshot_save", **saved.to_dict(), "notes": list(snap.notes)}


# a submit-time check reads the stored file on the caller's thread (an HTTP door's event loop): only this big
SUBMIT_CHECK_BYTES = 2 << 20


def check_stored(manager: Any, name: str, *, max_bytes: int | None = None) -> Snapshot | None:
    """The stored snapshot ``name`` read and every entry checked, changing nothing: ``not_found``,
    ``snapshot_invalid`` (an unreadable file, or ``details.refused`` naming each unsafe entry).
    With ``max_bytes``, a larger file is left to the task (which checks it before its first change): None."""
    from .validate import check_entries, refusal_error, refused

    store = store_of(manager)
    path = store.path_of(name)
    if max_bytes is not None and path.stat().st_size > max_bytes:
        return None
    snapshot = store.load(name)
    problems = check_entries(snapshot)
    if refused(problems):
        raise refusal_error(name, problems)
    return snapshot


def restore_stored(
    manager: Any, name: str, options: Any, *, dry_run: bool, ctx: Any, policy: Any, installer: Any = None
) -> dict[str, Any]:
    """The ``snapshot_restore`` task: a stored snapshot (never a path a client names: a file is
    imported first with ``SnapshotStore.import_file``) planned, then restored under ``policy``.
    ``installer``: the task run's ``RunInstaller`` (its probe serves the undo record and the restore)."""
    from .restore import failure_error, plan_restore, restore

    snapshot = store_of(manager).load(name)
    ctx.progress("plan", 5.0)
    if dry_run:
        plan = plan_restore(manager, snapshot, options, where=name)
        ctx.progress("done", 100.0, f"{len(plan.steps)} step(s) planned (dry run)")
        return {"action": "snapshot_restore", "dry_run": True, **plan.to_json()}
    result = restore(
        manager,
        snapshot,
        options,
        where=name,
        ctx=ctx,
        policy=policy,
        deps_step=manager.deps_step,
        raise_on_failure=False,
        installer=installer,
    )
    if result.failed is not None:
        raise failure_error(result)
    return {"action": "snapshot_restore", "dry_run": False, **result.to_json()}


def restore_preview(manager: Any, name: str, options: Any, policy: Any) -> dict[str, Any]:
    """What restoring ``name`` would do, changing nothing: the plan, and what would stop it before
    its first change (offline sources, the policy) as blockers."""
    from ..errors import PolicyDenied, SnapshotSourcesMissing
    from .plan import python_requirements
    from .preflight import preflight
    from .restore import plan_restore
    from .validate import refusal_error

    plan = plan_restore(manager, store_of(manager).load(name), options, where=name)
    blockers: list[dict[str, Any]] = []
    if not plan.empty and not plan.refused:
        wanted: list[Any] = []
        if plan.diff is not None and any(s.kind == "pip_install" for s in plan.steps):
            wanted, _ = python_requirements(plan.diff, options.pip_kinds())
        try:
            preflight(manager, plan, [p.requirement for p in wanted], policy=policy)
        except (SnapshotSourcesMissing, PolicyDenied) as exc:
            blockers.append(exc.to_dict())
    if plan.refused:  # first: the restore refuses these before anything else is looked at
        blockers.insert(0, refusal_error(name, plan.problems).to_dict())
    return {"name": name, "dry_run": True, "plan": plan.to_json(), "blockers": blockers, "policy": policy.to_dict()}
