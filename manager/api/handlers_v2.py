"""The 4.x task model on our queue: ``POST /v2/manager/queue/task`` and the routes that queue.

A 4.x ``QueueTaskItem`` (``{ui_id, client_id, kind, params}``) becomes the same planned task
the classic and v1 routes make (``HttpDoor.plan``: the task table validates, classifies and decides,
and the task carries the decision), with its 4.x identity in ``params["v2"]`` for
the history, the batch record and the events (``v2_history``). ``ui_id`` is the task id.

What we do differently from 4.x (docs/api.md, "/v2 family"): a task the policy refuses is
answered 403 ``security_denied`` with the hint, not 200 and a "failed" history entry; a bad item
is 400 ``request_invalid`` naming the field; ``update-comfyui`` is 501 ``not_implemented``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import ManagerError, NotImplementedYet, RequestInvalid, SecurityDenied
from .door import HttpDoor
from .envelope import field, ok, raw_json, read_json
from .handlers_catalog import optional_view
from .legacy import dry_run_asked, model_lookup, plan_classic_row, plans_of
from .v2_history import journal_of
from .v2_records import V2_PARAM, system_state

if TYPE_CHECKING:
    from ..context import CatalogView
    from ..inventory import Inventory
    from ..kinds import PlannedTask

# 4.x OperationType -> our task kind (manager/kinds declares its parameters and policy operation)
KIND_NAMES: Mapping[str, str | None] = {
    "install": "install",
    "uninstall": "uninstall",
    "update": "update",
    "update-comfyui": None,
    "fix": "fix",
    "disable": "disable",
    "enable": "enable",
    "install-model": "install_model",
}
V2_KINDS = tuple(KIND_NAMES)
# the legacy /v2/manager/queue/batch keys that take lists of classic rows
BATCH_KINDS = ("install", "reinstall", "uninstall", "update", "fix", "disable", "install_model")
_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")
_NO_COMFYUI_UPDATE = (
    "Update ComfyUI itself with git (git pull in the ComfyUI folder) or its launcher "
    "(comfy-cli, the desktop app); this manager changes custom nodes and models only."
)


@dataclass(frozen=True)
class V2Task:
    """A validated 4.x ``QueueTaskItem``."""

    ui_id: str
    client_id: str
    kind: str
    params: Mapping[str, Any]

    def meta(self) -> dict[str, Any]:
        return {"ui_id": self.ui_id, "client_id": self.client_id, "kind": self.kind, "params": dict(self.params)}


def parse_item(body: Mapping[str, Any]) -> V2Task:
    """``request_invalid`` naming the field for anything 4.x's pydantic model would refuse."""
    body = dict(body)
    ui_id = field(body, "ui_id")
    client_id = field(body, "client_id")
    kind = field(body, "kind")
    if kind not in KIND_NAMES:
        raise RequestInvalid(
            f"unknown task kind {kind!r}",
            details={"field": "kind", "kind": kind},
            hint="kind is one of " + ", ".join(V2_KINDS) + "; for update-all use POST /v2/manager/queue/update_all.",
        )
    params = body.get("params") if body.get("params") is not None else {}
    if not isinstance(params, dict):
        raise RequestInvalid(
            "field 'params' must be an object",
            details={"field": "params"},
            hint='Send params as a JSON object, e.g. {"id": "<pack>", "selected_version": "latest"}.',
        )
    return V2Task(ui_id, client_id, kind, params)


def _param(item: V2Task, name: str, *, required: bool = True) -> Any:
    try:
        return field(dict(item.params), name, required=required)
    except RequestInvalid as err:
        raise RequestInvalid(
            f"{item.kind}: params.{name} is missing or not a non-empty string",
            details={"field": f"params.{name}", "kind": item.kind},
            hint=f"A {item.kind} task needs params.{name} (4.x QueueTaskItem).",
        ) from err


def _plan_install(
    api: HttpDoor, view: CatalogView | None, inv: Inventory, item: V2Task, *, enforce: bool = True
) -> PlannedTask:
    pack_id = _param(item, "id")
    selected = str(item.params.get("selected_version") or item.params.get("version") or "latest")
    found = item.params.get("repository")
    repository = found if isinstance(found, str) else ""
    kw: dict[str, Any] = {"task_id": item.ui_id, "client_id": item.client_id, "enforce": enforce}
    if selected == "unknown" or "/" in pack_id:
        # a pack the registry does not know: installed from its repository URL (an aux id
        # "owner/repo" names a GitHub repository); the policy classifies the URL
        url = repository.strip() or (f"https://github.com/{pack_id.strip('/')}" if "/" in pack_id else "")
        if not url:
            raise RequestInvalid(
                f"install {pack_id!r} at version 'unknown' needs params.repository",
                details={"field": "params.repository"},
                hint="Give the git URL of the pack as params.repository.",
            )
        from ..kinds.classify import url_params  # the task table loads on first use, not at mount

        return api.plan("install", url, url_params(url), view=view, **kw)
    copies = inv.find(pack_id)
    if copies and not any(p.enabled for p in copies):
        return api.plan("enable", pack_id, view=view, **kw)  # as 4.x: installing a disabled pack enables it
    params: dict[str, Any] = {"skip_deps": bool(item.params.get("skip_post_install"))}
    if _COMMIT.match(selected):
        params["ref"] = selected
    else:
        params["version"] = selected
    return api.plan("install", pack_id, params, view=view, **kw)


def plan_item(
    api: HttpDoor, view: CatalogView | None, inv: Inventory, item: V2Task, *, enforce: bool = True
) -> PlannedTask:
    """The planned task of one 4.x item (policy decided: ``security_denied`` raises here, unless
    ``enforce`` is false: a dry run, where the denial is the plan's blocker)."""
    kind = KIND_NAMES[item.kind]
    kw: dict[str, Any] = {"task_id": item.ui_id, "client_id": item.client_id, "enforce": enforce}
    if kind is None:
        raise NotImplementedYet(
            "update-comfyui is not an operation of this manager", hint=_NO_COMFYUI_UPDATE, details={"kind": item.kind}
        )
    if kind == "install":
        planned = _plan_install(api, view, inv, item, enforce=enforce)
    elif kind == "install_model":
        filename = item.params.get("filename")
        planned = api.plan(
            kind, str(filename or item.params.get("name") or ""), model_lookup(item.params), view=view, **kw
        )
    else:
        from ..kinds.classify import SEMVER_RE

        target = _param(item, "cnr_id" if kind == "enable" else "node_name")
        version = item.params.get("node_ver")
        params = (
            {"version": version} if kind == "update" and isinstance(version, str) and SEMVER_RE.match(version) else {}
        )
        planned = api.plan(kind, target, params, view=view, **kw)
    return with_meta(planned, item)


def with_meta(planned: PlannedTask, item: V2Task) -> PlannedTask:
    return planned.with_params(**{V2_PARAM: item.meta()})


async def queue_planned(api: HttpDoor, planned: list[PlannedTask]) -> list[dict[str, Any]]:
    """Enqueue, opening the batch first with the tree as it is now (the batch's state before)."""
    journal = journal_of(api)
    _key, inv = await api.inventory()
    journal.open_batch(lambda: system_state(api.manager, inv))
    return await api.submit(planned)


async def _context(api: HttpDoor, kind: str) -> tuple[CatalogView | None, Inventory]:
    # only a model needs the catalog; pack operations go on without one (an offline box's first day)
    view = await api.view() if kind == "install-model" else await optional_view(api)
    _key, inv = await api.inventory()
    return view, inv


# --- routes ----------------------------------------------------------------------------------------
async def post_task(api: HttpDoor, request: web.Request) -> web.Response:
    """``POST /v2/manager/queue/task``: queue one item; the worker is started by queue/start (4.x)."""
    dry = dry_run_asked(request)
    item = parse_item(await read_json(request))
    view, inv = await _context(api, item.kind)
    if dry:  # ?dry_run=true: the plan (our shared record, with the item's 4.x names); nothing queued
        planned = plan_item(api, view, inv, item, enforce=False)
        return ok({"dry_run": True, "plans": await plans_of(api, [planned], **_v2_names(item))})
    (task,) = await queue_planned(api, [plan_item(api, view, inv, item)])
    return ok({"task": task})


def _v2_names(item: V2Task) -> dict[str, str]:
    return {"ui_id": item.ui_id, "client_id": item.client_id, "v2_kind": item.kind}


def _query_ids(request: web.Request) -> tuple[str, str]:
    out = []
    for name in ("client_id", "ui_id"):
        value = request.query.get(name, "")
        if not value.strip():
            raise RequestInvalid(
                f"missing query parameter {name}",
                details={"parameter": name},
                hint="Send ?client_id=<your socket id>&ui_id=<request id> (4.x requires both).",
            )
        out.append(value)
    return out[0], out[1]


async def update_all(api: HttpDoor, request: web.Request) -> web.Response:
    """``POST /v2/manager/queue/update_all?client_id&ui_id&mode``: one ``update_all`` task (our
    operation: plan, auto-snapshot, update every enabled pack) whose id is ``ui_id``."""
    client_id, ui_id = _query_ids(request)
    mode = request.query.get("mode") or "remote"
    if mode not in ("remote", "local", "cache"):
        raise RequestInvalid(
            f"query parameter mode={mode!r} is not remote, local or cache",
            details={"parameter": "mode"},
            hint="Use mode=remote (default), local or cache.",
        )
    dry = dry_run_asked(request)
    view = await optional_view(api)
    item = V2Task(ui_id, client_id, "update", {"mode": mode, "ui_id": ui_id})
    planned = with_meta(
        api.plan("update_all", "all", {"mode": mode}, view=view, task_id=ui_id, client_id=client_id, enforce=not dry),
        item,
    )
    if dry:
        return ok({"dry_run": True, "plans": await plans_of(api, [planned], **_v2_names(item))})
    (task,) = await queue_planned(api, [planned])
    return ok({"task": task})


async def install_model(api: HttpDoor, request: web.Request) -> web.Response:
    """``POST /v2/manager/queue/install_model``: 4.x ``ModelMetadata`` plus ``client_id``/``ui_id``."""
    body = await read_json(request)
    item = V2Task(
        field(body, "ui_id"),
        field(body, "client_id"),
        "install-model",
        {k: v for k, v in body.items() if k not in ("ui_id", "client_id")},
    )
    view, inv = await _context(api, item.kind)
    (task,) = await queue_planned(api, [plan_item(api, view, inv, item)])
    return ok({"task": task})


async def update_comfyui(api: HttpDoor, request: web.Request) -> web.Response:
    _query_ids(request)
    raise NotImplementedYet("updating ComfyUI is not an operation of this manager", hint=_NO_COMFYUI_UPDATE)


async def switch_comfyui_version(api: HttpDoor, request: web.Request) -> web.Response:
    body = await read_json(request)
    for name in ("ver", "client_id", "ui_id"):
        field(body, name)
    raise NotImplementedYet(
        "switching the ComfyUI version is not an operation of this manager",
        hint=_NO_COMFYUI_UPDATE,
        details={"ver": body["ver"]},
    )


# --- the legacy 4.x batch ------------------------------------------------------------------------
async def queue_batch(api: HttpDoor, request: web.Request) -> web.Response:
    """``POST /v2/manager/queue/batch`` (4.x legacy server): ``{install: [rows], ..., update_all:
    mode}`` -> ``{"failed": [ids]}``; queues what is valid and starts the worker. A policy refusal
    refuses the whole batch (403 with the hint, nothing queued), as the v1 batch does."""
    dry = dry_run_asked(request)
    body = await read_json(request)
    view = await api.view() if body.get("install_model") else await optional_view(api)
    planned: list[PlannedTask] = []
    failed: list[str] = []
    errors: dict[str, Any] = {}
    for kind in BATCH_KINDS:
        rows = body.get(kind) or []
        if not isinstance(rows, list):
            raise RequestInvalid(
                f"'{kind}' must be a list of rows",
                details={"field": kind},
                hint=f'Send {{"{kind}": [{{"id": ..., "ui_id": ...}}]}}.',
            )
        for row in rows:
            key = (
                str(row.get("ui_id") or row.get("id") or row.get("filename") or kind) if isinstance(row, dict) else kind
            )
            try:
                if not isinstance(row, dict):
                    raise RequestInvalid(f"an entry of '{kind}' is not an object", details={"field": kind})
                planned.append(await plan_classic_row(api, view, kind, row, enforce=not dry))
            except SecurityDenied:
                raise
            except ManagerError as err:
                failed.append(key)
                errors[key] = err.to_dict()
    if body.get("update_all"):
        mode = body["update_all"] if body["update_all"] in ("remote", "local", "cache") else "cache"
        planned.append(api.plan("update_all", "all", {"mode": mode}, view=view, enforce=not dry))
    if "update_comfyui" in body:
        failed.append("comfyui")
        errors["comfyui"] = NotImplementedYet(
            "updating ComfyUI is not an operation of this manager", hint=_NO_COMFYUI_UPDATE
        ).to_dict()
    if dry:  # ?dry_run=true: one plan per valid row, the invalid ones in failed/errors; nothing queued
        plans = [{**p, "ui_id": t.task_id or ""} for p, t in zip(await plans_of(api, planned), planned, strict=True)]
        return raw_json({"dry_run": True, "failed": failed, "errors": errors, "plans": plans})
    tasks = await queue_planned(api, planned) if planned else []
    started = api.queue.start()
    return raw_json({"failed": failed, "errors": errors, "tasks": tasks, "started": started})
