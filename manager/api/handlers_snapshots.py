"""Snapshot routes, v1 and classic, on ``manager/snapshots``.

Reads (list, show, current, diff, the restore plan) and a save run in a worker thread (a
capture walks the tree and probes the python once); a restore is a ``snapshot_restore`` task
carrying the door's allowing security decision, so the worker runs it inside the operations
lock. Every name is checked by the store's own rule (``invalid_name``) before anything is read
or queued. The classic ``/snapshot/restore`` keeps its classic meaning inside ComfyUI (applied
at the next start, by ``prestartup_script.py``); the standalone server, which restarts no
ComfyUI, queues it at once.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Mapping

from aiohttp import web

from .. import security as sec
from ..errors import PolicyDenied, RequestInvalid, SnapshotSourcesMissing
from .envelope import field, ok, raw_json, read_json
from .handlers_queue import PlannedTask, enqueue
from .service import Api

if TYPE_CHECKING:
    from ..records import PolicyDecision
    from ..snapshots import SnapshotStore
    from ..snapshots.plan import RestoreOptions

RESTORE_OPTIONS = ("pip_non_url", "pip_non_local_url", "pip_local_url", "no_deps", "only", "unlisted",
                   "remove_extra_pips", "auto_snapshot")
_SAVE_FIELDS = ("name", "overwrite", "hash_models")


def _store(api: Api) -> "SnapshotStore":
    from ..snapshots import store_of
    return store_of(api.manager)


def checked_name(api: Api, name: Any) -> str:
    """The stored name ``name`` means; ``invalid_name`` for anything path-like (nothing read)."""
    from ..snapshots.store import check_name
    stored = check_name(name)
    api.note(target=stored)
    return stored


def restore_options(body: Mapping[str, Any]) -> "RestoreOptions":
    """Restore options from a JSON body (``options`` object or top-level keys); unknown keys refused."""
    from ..snapshots.plan import RestoreOptions
    raw = body.get("options")
    if raw is None:
        raw = {k: v for k, v in body.items() if k in RESTORE_OPTIONS}
    if not isinstance(raw, dict):
        raise RequestInvalid("'options' must be an object", details={"field": "options"},
                             hint="Send {\"options\": {\"pip_non_url\": true, ...}} or leave it out.")
    unknown = sorted(set(raw) - set(RESTORE_OPTIONS))
    if unknown:
        raise RequestInvalid(f"unknown restore option(s): {', '.join(unknown)}", details={"options": unknown},
                             hint="Restore options: " + ", ".join(RESTORE_OPTIONS) + " (docs/snapshots.md).")
    return RestoreOptions.from_params(raw)


# --- v1 -----------------------------------------------------------------------------------------
async def list_snapshots(api: Api, request: web.Request) -> web.Response:
    entries = await asyncio.to_thread(_store(api).entries)
    return ok({"folder": str(_store(api).folder), "snapshots": [e.to_dict() for e in entries]})


async def save_snapshot(api: Api, request: web.Request) -> web.Response:
    """Body ``{name?, overwrite?, hash_models?}``; answers the stored entry."""
    body = await read_json(request, default={})
    name = body.get("name")             # absent or null: the default name; "" is refused like any bad name
    if name is not None:
        name = checked_name(api, name)
    overwrite = field(body, "overwrite", bool, required=False, default=False)
    hash_models = field(body, "hash_models", bool, required=False, default=False)
    stored = await asyncio.to_thread(_save, api, name, overwrite=overwrite, hash_models=hash_models)
    api.note(target=stored["name"])
    return ok(stored)


def _save(api: Api, name: str | None, *, overwrite: bool = False, hash_models: bool = False) -> dict[str, Any]:
    from ..snapshots.capture import capture
    snap = capture(api.manager, reason="manual", hash_models=hash_models)
    saved = _store(api).save(snap, name, overwrite=overwrite)
    return {**saved.to_dict(), "notes": list(snap.notes)}


def _current(api: Api) -> dict[str, Any]:
    from ..snapshots.capture import capture
    return capture(api.manager).to_json()


async def current_snapshot(api: Api, request: web.Request) -> web.Response:
    return ok(await asyncio.to_thread(_current, api))


async def get_snapshot(api: Api, request: web.Request) -> web.Response:
    name = checked_name(api, request.match_info["name"])
    store = _store(api)

    def load() -> dict[str, Any]:
        snap = store.load(name)
        return {"name": name, "path": str(store.path_of(name)), "summary": snap.summary(),
                "snapshot": snap.to_json()}
    return ok(await asyncio.to_thread(load))


async def diff_snapshot(api: Api, request: web.Request) -> web.Response:
    """What restoring ``name`` would change: against the tree now, or ``?against=<other snapshot>``."""
    name = checked_name(api, request.match_info["name"])
    against = request.query.get("against") or "current"
    other = None if against == "current" else checked_name(api, against)
    store = _store(api)

    def compute() -> dict[str, Any]:
        from ..snapshots.diff import diff, diff_current
        wanted = store.load(name)
        changes = diff_current(api.manager, wanted) if other is None else diff(store.load(other), wanted)
        return {"name": name, "against": other or "current", "diff": changes.to_json()}
    return ok(await asyncio.to_thread(compute))


def restore_decision(api: Api, name: str) -> "PolicyDecision":
    """The allowing decision a restore carries (``security_denied`` otherwise). A restore may
    install git packs: the operation refuses those without this decision."""
    return api.require(sec.SNAPSHOT_RESTORE, details={"snapshot": name})


def _plan(api: Api, name: str, options: "RestoreOptions", decision: "PolicyDecision") -> dict[str, Any]:
    from ..snapshots.plan import python_requirements
    from ..snapshots.preflight import preflight
    from ..snapshots.restore import plan_restore

    snapshot = _store(api).load(name)
    plan = plan_restore(api.manager, snapshot, options, where=name)
    blockers: list[dict[str, Any]] = []
    if not plan.empty:
        wanted: list[Any] = []
        if plan.diff is not None and any(s.kind == "pip_install" for s in plan.steps):
            wanted, _ = python_requirements(plan.diff, options.pip_kinds())
        try:   # what would stop the restore before its first change (offline sources, policy)
            preflight(api.manager, plan, [p.requirement for p in wanted], policy=decision)
        except (SnapshotSourcesMissing, PolicyDenied) as exc:
            blockers.append(exc.to_dict())
    return {"name": name, "dry_run": True, "plan": plan.to_json(), "blockers": blockers,
            "policy": decision.to_dict()}


def restore_spec(name: str, options: "RestoreOptions", decision: "PolicyDecision") -> Any:
    from ..events import TaskSpec
    params = {k: v for k, v in options.to_dict().items() if v not in ("",)}
    return TaskSpec("snapshot_restore", name, {**params, "policy": decision.to_dict()})


async def restore_snapshot(api: Api, request: web.Request) -> web.Response:
    """``{dry_run?, options?, at_next_start?, task_id?, client_id?}``: the plan (dry run, nothing
    changes), a queued ``snapshot_restore`` task (202), or an entry applied at the next start."""
    name = checked_name(api, request.match_info["name"])
    body = await read_json(request, default={})
    dry_run = field(body, "dry_run", bool, required=False, default=False)
    at_next_start = field(body, "at_next_start", bool, required=False, default=False)
    options = restore_options(body)
    store = _store(api)
    await asyncio.to_thread(store.path_of, name)           # not_found before anything is decided
    if dry_run:
        decision = api.decide(sec.SNAPSHOT_RESTORE)         # a plan changes nothing: shown at any level
        return ok(await asyncio.to_thread(_plan, api, name, options, decision))
    decision = restore_decision(api, name)
    if at_next_start:
        return ok({"scheduled": await asyncio.to_thread(_schedule, api, name, options, decision)})
    task_id = field(body, "task_id", str, required=False)
    client_id = field(body, "client_id", str, required=False)
    (task,) = enqueue(api, [PlannedTask(restore_spec(name, options, decision), task_id, client_id, decision)])
    started = api.queue.start()
    return ok({"task": task, "tasks": [task], "started": started}, status=202)


def _schedule(api: Api, name: str, options: "RestoreOptions", decision: "PolicyDecision") -> dict[str, Any]:
    from ..startup import PendingStore
    op = PendingStore(api.manager.layout).schedule(
        "snapshot_restore", name, params={k: v for k, v in options.to_dict().items() if v != ""},
        policy=decision.to_dict(), origin=f"api:{api.door}")
    return op.to_dict()


async def remove_snapshot(api: Api, request: web.Request) -> web.Response:
    name = checked_name(api, request.match_info["name"])
    removed = await asyncio.to_thread(_store(api).remove, name)
    return ok({"removed": removed.to_dict()})


# --- classic --------------------------------------------------------------------------------------
async def classic_getlist(api: Api, request: web.Request) -> web.Response:
    """``{"items": [names]}``, newest first."""
    entries = await asyncio.to_thread(_store(api).entries)
    return raw_json({"items": [e.name for e in entries]})


async def classic_get_current(api: Api, request: web.Request) -> web.Response:
    """The live state in the classic snapshot shape (comfyui, git/cnr/file custom nodes, pips)."""
    def build() -> dict[str, Any]:
        from ..snapshots.capture import capture
        from ..snapshots.classic import to_classic
        return to_classic(capture(api.manager))
    return raw_json(await asyncio.to_thread(build))


async def classic_save(api: Api, request: web.Request) -> web.Response:
    """Saves ``<YYYY-mm-dd_HH-MM-SS>_snapshot`` (no body, as the classic UI sends)."""
    stored = await asyncio.to_thread(_save, api, None)
    api.note(target=stored["name"])
    return ok(stored)


async def _classic_target(api: Api, request: web.Request) -> str:
    body = await read_json(request, default={})
    target = body.get("target", request.query.get("target"))   # the older classic sent it as a query
    return checked_name(api, target)


async def classic_remove(api: Api, request: web.Request) -> web.Response:
    """Deletes ``<target>``; like the classic route, an absent snapshot still answers 200."""
    from ..errors import NotFound
    name = await _classic_target(api, request)
    try:
        removed = await asyncio.to_thread(_store(api).remove, name)
    except NotFound:
        return ok({"removed": None})
    return ok({"removed": removed.to_dict()})


async def classic_restore(api: Api, request: web.Request) -> web.Response:
    """Inside ComfyUI: scheduled for the next start (the classic meaning; reboot applies it). In the
    standalone server: queued now. The route's gate already decided ``snapshot_restore``."""
    name = await _classic_target(api, request)
    await asyncio.to_thread(_store(api).path_of, name)
    from ..snapshots.plan import RestoreOptions
    decision = restore_decision(api, name)
    options = RestoreOptions()
    if api.restart is not None:
        return ok({"scheduled": await asyncio.to_thread(_schedule, api, name, options, decision)})
    (task,) = enqueue(api, [PlannedTask(restore_spec(name, options, decision), None, None, decision)])
    api.queue.start()
    return ok({"task": task})
