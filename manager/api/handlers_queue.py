"""v1 queue handlers: read the request, hand ``(kind, target, params)`` to the task table
(``HttpDoor.plan`` -> ``Manager.plan``: validated, classified and decided there), queue, answer.
Nothing runs here; the worker thread runs the operation; the answer is the queued task (202).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..errors import QueueBusy, RequestInvalid
from .door import HttpDoor
from .envelope import field, ok, read_json
from .handlers_catalog import optional_view
from .handlers_startup import schedule_planned

MAX_BATCH = 500


def _one(
    body: Mapping[str, Any], default_client: str | None
) -> tuple[str, str, dict[str, Any], str | None, str | None]:
    kind = field(dict(body), "kind")
    target = body.get("target") or body.get("id") or ""
    if not isinstance(target, str):
        raise RequestInvalid(
            "field 'target' must be a string",
            details={"field": "target"},
            hint="Give the pack id, URL or model id as a string.",
        )
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise RequestInvalid(
            "field 'params' must be an object",
            details={"field": "params"},
            hint='Give params as a JSON object, e.g. {"version": "latest"}, or leave it out.',
        )
    task_id = field(dict(body), "task_id", str, required=False)
    client_id = field(dict(body), "client_id", str, required=False, default=default_client)
    return kind, target, params, task_id, client_id


async def post_queue(api: HttpDoor, request: web.Request) -> web.Response:
    """POST /v1/queue: one task ``{kind, target, params, task_id?, client_id?}`` or ``{tasks: [...]}``.
    With ``dry_run: true`` nothing is queued: the answer is ``{plans: [...]}``, one shared plan
    record (``manager.plans``) per task, shown at any security level (a denial is a blocker)."""
    body = await read_json(request)
    dry_run = field(dict(body), "dry_run", bool, required=False, default=False)
    items = body.get("tasks") if "tasks" in body else [body]
    if not isinstance(items, list) or not items or len(items) > MAX_BATCH:
        raise RequestInvalid(
            f"'tasks' must be a non-empty list of at most {MAX_BATCH} task objects",
            details={"field": "tasks"},
            hint="Split a larger batch into several requests.",
        )
    if any(not isinstance(i, dict) for i in items):
        raise RequestInvalid(
            "every entry of 'tasks' must be an object",
            details={"field": "tasks"},
            hint='Each task is {"kind": ..., "target": ..., "params": {...}}.',
        )
    from ..kinds import kind_named  # the task table loads on first use (or the prewarm), not at mount
    from ..kinds.planner import preview_plan

    # Only models need the catalog; pack operations go on without one (an offline box's first day).
    models = any(kind_named(str(i.get("kind"))).needs_catalog for i in items if isinstance(i.get("kind"), str))
    view = await api.view() if models else await optional_view(api)
    client = body.get("client_id") if isinstance(body.get("client_id"), str) else None
    planned = []
    for item in items:
        kind, target, params, task_id, client_id = _one(item, client)
        planned.append(
            api.plan(kind, target, params, view=view, task_id=task_id, client_id=client_id, enforce=not dry_run)
        )
    if dry_run:
        plans = [await asyncio.to_thread(preview_plan, api.manager, p) for p in planned]
        return ok({"dry_run": True, "plans": plans})
    later = [p for p in planned if await _loaded_pack(api, p)]
    scheduled = [await asyncio.to_thread(schedule_planned, api, p) for p in later]
    now = [p for p in planned if p not in later]
    tasks = await api.submit(now) if now else []
    started = api.queue.start() if now and body.get("start", True) is not False else False
    out: dict[str, Any] = {"tasks": tasks, "started": started}
    if scheduled:
        out["scheduled"] = scheduled
        out["after_restart"] = (
            f"{len(scheduled)} operation(s) on packs this ComfyUI has loaded will run after restart "
            "(before the packs load); restart ComfyUI to apply them"
        )
    return ok(out, status=202)


async def _loaded_pack(api: HttpDoor, planned: Any) -> str:
    """Inside ComfyUI: the folder of the enabled pack ``planned`` would replace files of, when that
    pack was loaded by this ComfyUI (enabled when the door first read the tree), else "".
    Such a task is scheduled for the next start instead (docs/decisions.md)."""
    from ..errors import ManagerError
    from ..operations.installed import find_pack
    from ..startup import LOADED_PACK_KINDS, check_target

    if api.door != "comfyui" or api.restart is None or planned.spec.kind not in LOADED_PACK_KINDS:
        return ""
    try:
        check_target(planned.spec.kind, planned.spec.target)
        loaded = {name for name, row in (await api.imported()).items() if row.get("enabled")}
        _key, inv = await api.inventory()
        pack = find_pack(inv, planned.spec.target, enabled=True)
    except ManagerError:  # not one installed pack (a new install, a URL): it runs now
        return ""
    key = pack.name[:-4] if pack.name.endswith(".git") else pack.name
    return pack.name if key in loaded else ""


async def get_queue(api: HttpDoor, request: web.Request) -> web.Response:
    queue = api.queue
    client = request.query.get("client_id") or None
    try:
        limit = int(request.query.get("history", "50"))
    except ValueError:
        raise RequestInvalid(  # noqa: B904  (the client's text, not our exception, is the cause)
            "query parameter history must be a whole number",
            details={"parameter": "history"},
            hint="Use ?history=50 (how many finished tasks to list).",
        )
    return ok(
        {
            "status": queue.status(client),
            "worker_alive": queue.worker_alive,
            "running": [t.to_dict() for t in queue.running()],
            "pending": [t.to_dict() for t in queue.pending()],
            "history": [t.to_dict() for t in queue.history(client_id=client, limit=max(0, limit))],
        }
    )


async def start_queue(api: HttpDoor, request: web.Request) -> web.Response:
    return ok({"started": api.queue.start()})


async def reset_queue(api: HttpDoor, request: web.Request) -> web.Response:
    return ok({"cancelled": api.queue.reset()})


async def get_task(api: HttpDoor, request: web.Request) -> web.Response:
    return ok(api.queue.get(request.match_info["id"]).to_dict())


async def cancel_task(api: HttpDoor, request: web.Request) -> web.Response:
    return ok(api.queue.cancel(request.match_info["id"]).to_dict())


def ensure_idle(api: HttpDoor) -> None:
    """``queue_busy`` unless nothing is queued or running (update all needs a quiet tree)."""
    status = api.queue.status()
    if status["in_progress_count"] or status["pending_count"]:
        raise QueueBusy("tasks are still queued or running", details=status)
