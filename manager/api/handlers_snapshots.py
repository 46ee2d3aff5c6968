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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import RequestInvalid
from .door import HttpDoor
from .envelope import field, ok, raw_json, read_json
from .handlers_startup import schedule_planned

if TYPE_CHECKING:
    from ..snapshots import SnapshotStore


def _store(api: HttpDoor) -> SnapshotStore:
    from ..snapshots import store_of

    return store_of(api.manager)


def checked_name(api: HttpDoor, name: Any) -> str:
    """The stored name ``name`` means; ``invalid_name`` for anything path-like (nothing read)."""
    from ..snapshots.store import check_name

    stored = check_name(name)
    api.note(target=stored)
    return stored


def restore_params(body: Mapping[str, Any]) -> dict[str, Any]:
    """The restore options of a JSON body (an ``options`` object, or top-level option keys); the
    task table validates them (unknown keys and wrong types refused before anything runs)."""
    from ..kinds.params import SnapshotRestoreParams

    raw = body.get("options")
    if raw is None:
        names = {f.name for f in SnapshotRestoreParams.fields()} - {"dry_run"}
        raw = {k: v for k, v in body.items() if k in names}
    if not isinstance(raw, dict):
        raise RequestInvalid(
            "'options' must be an object",
            details={"field": "options"},
            hint='Send {"options": {"pip_non_url": true, ...}} or leave it out.',
        )
    return dict(raw)


# --- v1 -----------------------------------------------------------------------------------------
async def list_snapshots(api: HttpDoor, request: web.Request) -> web.Response:
    entries = await asyncio.to_thread(_store(api).entries)
    return ok({"folder": str(_store(api).folder), "snapshots": [e.to_dict() for e in entries]})


async def save_snapshot(api: HttpDoor, request: web.Request) -> web.Response:
    """Body ``{name?, overwrite?, hash_models?}``; answers the stored entry."""
    body = await read_json(request, default={})
    name = body.get("name")  # absent or null: the default name; "" is refused like any bad name
    if name is not None:
        name = checked_name(api, name)
    overwrite = field(body, "overwrite", bool, required=False, default=False)
    hash_models = field(body, "hash_models", bool, required=False, default=False)
    stored = await asyncio.to_thread(_save, api, name, overwrite=overwrite, hash_models=hash_models)
    api.note(target=stored["name"])
    return ok(stored)


def _save(api: HttpDoor, name: str | None, *, overwrite: bool = False, hash_models: bool = False) -> dict[str, Any]:
    from ..snapshots import save_now

    saved = save_now(api.manager, name, reason="manual", hash_models=hash_models, overwrite=overwrite)
    return {k: v for k, v in saved.items() if k != "action"}


def _current(api: HttpDoor) -> dict[str, Any]:
    from ..snapshots.capture import capture

    return capture(api.manager).to_json()


async def current_snapshot(api: HttpDoor, request: web.Request) -> web.Response:
    return ok(await asyncio.to_thread(_current, api))


async def get_snapshot(api: HttpDoor, request: web.Request) -> web.Response:
    name = checked_name(api, request.match_info["name"])
    store = _store(api)

    def load() -> dict[str, Any]:
        snap = store.load(name)
        return {"name": name, "path": str(store.path_of(name)), "summary": snap.summary(), "snapshot": snap.to_json()}

    return ok(await asyncio.to_thread(load))


async def diff_snapshot(api: HttpDoor, request: web.Request) -> web.Response:
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


async def restore_snapshot(api: HttpDoor, request: web.Request) -> web.Response:
    """``{dry_run?, options?, at_next_start?, task_id?, client_id?}``: the plan (dry run, nothing
    changes), a queued ``snapshot_restore`` task (202), or an entry applied at the next start."""
    name = checked_name(api, request.match_info["name"])
    body = await read_json(request, default={})
    dry_run = field(body, "dry_run", bool, required=False, default=False)
    at_next_start = field(body, "at_next_start", bool, required=False, default=False)
    params = restore_params(body)
    if dry_run:  # a plan changes nothing: shown at any level, with its decision (unsafe entries as blockers)
        await asyncio.to_thread(_store(api).path_of, name)  # not_found before anything is decided
        planned = api.plan("snapshot_restore", name, {**params, "dry_run": True}, enforce=False)
        return ok(await asyncio.to_thread(api.manager.preview, planned))
    await asyncio.to_thread(_checked_snapshot, api, name)  # not_found / snapshot_invalid (4xx) before a task
    task_id = field(body, "task_id", str, required=False)
    client_id = field(body, "client_id", str, required=False)
    planned = api.plan("snapshot_restore", name, params, task_id=task_id, client_id=client_id)
    if at_next_start:
        return ok({"scheduled": await asyncio.to_thread(schedule_planned, api, planned)})
    (task,) = await api.submit([planned])
    started = api.queue.start()
    return ok({"task": task, "tasks": [task], "started": started}, status=202)


def _checked_snapshot(api: HttpDoor, name: str) -> None:
    """Every entry of the stored snapshot checked off the event loop, whatever its size: an unsafe
    entry answers ``snapshot_invalid`` (400) at once, never a queued task that fails."""
    from ..snapshots import check_stored

    check_stored(api.manager, name)


async def remove_snapshot(api: HttpDoor, request: web.Request) -> web.Response:
    name = checked_name(api, request.match_info["name"])
    removed = await asyncio.to_thread(_store(api).remove, name)
    return ok({"removed": removed.to_dict()})


# --- classic --------------------------------------------------------------------------------------
async def classic_getlist(api: HttpDoor, request: web.Request) -> web.Response:
    """``{"items": [names]}``, newest first."""
    entries = await asyncio.to_thread(_store(api).entries)
    return raw_json({"items": [e.name for e in entries]})


async def classic_get_current(api: HttpDoor, request: web.Request) -> web.Response:
    """The live state in the classic snapshot shape (comfyui, git/cnr/file custom nodes, pips)."""

    def build() -> dict[str, Any]:
        from ..snapshots.capture import capture
        from ..snapshots.classic import to_classic

        return to_classic(capture(api.manager))

    return raw_json(await asyncio.to_thread(build))


async def classic_save(api: HttpDoor, request: web.Request) -> web.Response:
    """Saves ``<YYYY-mm-dd_HH-MM-SS>_snapshot`` (no body, as the classic UI sends)."""
    stored = await asyncio.to_thread(_save, api, None)
    api.note(target=stored["name"])
    return ok(stored)


async def _classic_target(api: HttpDoor, request: web.Request) -> str:
    body = await read_json(request, default={})
    target = body.get("target", request.query.get("target"))  # the older classic sent it as a query
    return checked_name(api, target)


async def classic_remove(api: HttpDoor, request: web.Request) -> web.Response:
    """Deletes ``<target>``; like the classic route, an absent snapshot still answers 200."""
    from ..errors import NotFound

    name = await _classic_target(api, request)
    try:
        removed = await asyncio.to_thread(_store(api).remove, name)
    except NotFound:
        return ok({"removed": None})
    return ok({"removed": removed.to_dict()})


async def classic_restore(api: HttpDoor, request: web.Request) -> web.Response:
    """Inside ComfyUI: scheduled for the next start (the classic meaning; reboot applies it). In the
    standalone server: queued now. The route's gate already decided ``snapshot_restore``."""
    name = await _classic_target(api, request)
    await asyncio.to_thread(_checked_snapshot, api, name)
    planned = api.plan("snapshot_restore", name)
    if api.restart is not None:
        return ok({"scheduled": await asyncio.to_thread(schedule_planned, api, planned)})
    (task,) = await api.submit([planned])
    api.queue.start()
    return ok({"task": task})
