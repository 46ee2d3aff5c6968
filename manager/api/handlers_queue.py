"""Queue handlers: validate, classify the source, ask the policy, enqueue. Nothing runs here.

``plan_task`` turns one request (v1 or classic) into a ``TaskSpec`` whose params carry the
``PolicyDecision`` (``params["policy"]``): operations run only sources somebody approved. The
worker thread runs the operation; the answer is the queued task (202 on v1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from aiohttp import web

from .. import security as sec
from ..errors import ManagerError, NotFound, QueueBusy, RequestInvalid
from .envelope import field, ok, read_json
from .handlers_catalog import optional_view
from .service import Api

if TYPE_CHECKING:
    from ..context import CatalogView
    from ..events import TaskSpec
    from ..records import ModelEntry, PolicyDecision

# Task kinds the API knows how to classify, and the policy operation of each.
KIND_OPERATION: Mapping[str, str] = {
    "install": sec.INSTALL, "reinstall": sec.REINSTALL, "uninstall": sec.UNINSTALL, "update": sec.UPDATE,
    "update_all": sec.UPDATE_ALL, "fix": sec.FIX, "disable": sec.DISABLE, "enable": sec.ENABLE,
    "switch_version": sec.SWITCH_VERSION, "install_model": sec.INSTALL_MODEL,
}
MAX_BATCH = 500
SEMVER_RE = re.compile(r"^v?\d+(\.\d+)*([-+][0-9A-Za-z.\-]+)?$")


@dataclass(frozen=True)
class PlannedTask:
    spec: "TaskSpec"
    task_id: str | None
    client_id: str | None
    decision: "PolicyDecision"


def spec_kind(text: str) -> str:
    """``id``, ``url`` or ``path``: how the install operation will read ``text`` (its own parser)."""
    from ..operations.sources import parse_spec
    return parse_spec(strip_ref(text)).kind


def classify_install(view: "CatalogView | None", target: str, params: Mapping[str, Any]) -> tuple[str, str, str]:
    """(target, risk, source) of an install: a catalog pack, a registry id, or a URL/path.

    The target is read with the operations' own spec parser, so the policy classifies exactly
    what the install will fetch: a URL or path (``params.url``, or the target itself) is
    ``catalog`` risk only when the catalog lists it, else ``git_url``/``local_path``. Client
    file lists are never consulted. Without a catalog (``view`` None) nothing is listed.
    """
    from ..operations.sources import parse_spec

    url = params.get("url")
    raw = url.strip() if isinstance(url, str) and url.strip() else target.strip()
    spec = parse_spec(strip_ref(raw))
    if spec.kind in ("url", "path"):
        pack = view.catalog.by_reference(strip_ref(raw)) if view else None
        if pack is not None:
            return pack.id, sec.RISK_CATALOG, raw
        return strip_ref(raw), (sec.RISK_LOCAL_PATH if spec.kind == "path" else sec.RISK_GIT_URL), raw
    pack = view.catalog.get(spec.id) if view else None
    version = str(params.get("version") or spec.version or "latest")
    if pack is None or pack.install_type == "cnr" or (pack.cnr_id and SEMVER_RE.match(version)):
        return raw, sec.RISK_REGISTRY, ""
    return pack.id + (f"@{spec.version}" if spec.version else ""), sec.RISK_CATALOG, pack.reference


def strip_ref(url: str) -> str:
    """``https://host/repo@<commit>`` -> ``https://host/repo`` (the classic git_url form)."""
    base, sep, ref = url.rpartition("@")
    if sep and base and "/" not in ref and ":" not in ref and "/" in base:
        return base
    return url


def url_params(url: str) -> dict[str, Any]:
    """Task params of a URL install: the URL, and ``ref`` when it ends in ``@<commit or tag>``."""
    base = strip_ref(url)
    return {"url": base, "ref": url[len(base) + 1:]} if base != url else {"url": url}


def find_model(view: "CatalogView", target: str, params: Mapping[str, Any]) -> "ModelEntry":
    """The catalog model a request names: by id (save_path/filename), name, URL or file name, or
    by the classic body (url + filename, or filename + save_path/base). The client's URL is
    only used to look the entry up, never to download."""
    models = view.catalog.models
    url, filename = str(params.get("url") or ""), str(params.get("filename") or "")
    if url and filename:
        for m in models:
            if m.url == url and m.filename == filename:
                return m
    if filename:
        hits = [m for m in models if m.filename == filename
                and params.get("save_path") in (None, m.save_path) and params.get("base") in (None, m.base)]
        if len(hits) == 1:
            return hits[0]
    from ..models import model_id
    for key in (model_id, lambda m: m.name, lambda m: m.url, lambda m: m.filename):
        hits = [m for m in models if target and key(m) == target]
        if len(hits) == 1:
            return hits[0]
    raise NotFound(f"model {target or filename or url!r} is not (or not uniquely) in the model list of channel "
                   f"{view.channel.name!r}",
                   hint="Only models listed in the channel's model-list.json can be installed through the API; "
                        "use the model id (save_path/filename) from GET /offline-manager/v1/models.",
                   details={"target": target, "filename": filename})


def model_risk(view: "CatalogView", model: "ModelEntry") -> str:
    # classic: a file that is not .safetensors must come from the default channel's list
    if model.filename.lower().endswith(".safetensors") or view.channel.name == "default":
        return sec.RISK_MODEL_CATALOG
    return sec.RISK_MODEL_URL


def plan_task(api: Api, view: CatalogView | None, kind: str, target: str, params: Mapping[str, Any], *,
              task_id: str | None = None, client_id: str | None = None) -> PlannedTask:
    """Classify, decide (raising ``security_denied``) and build the TaskSpec of one request."""
    operation = KIND_OPERATION.get(kind)
    if operation is None:
        raise RequestInvalid(f"unknown task kind {kind!r}", hint="Use one of: " + ", ".join(KIND_OPERATION),
                             details={"kind": kind})
    params = dict(params)
    risk, source = "", ""
    if kind in ("install", "reinstall"):
        raw = params["url"].strip() if isinstance(params.get("url"), str) and params["url"].strip() else target
        if raw and spec_kind(raw) != "id":
            params.update(url_params(raw.strip()))
        target, risk, source = classify_install(view, target, params)
    elif kind == "install_model":
        from ..models import model_id   # the models package is imported when a model is queued
        if view is None:                # callers load the catalog for models (its error says why)
            raise RequestInvalid("a model install needs the channel's model list, which is not loaded",
                                 hint="Load the catalog first (GET /offline-manager/v1/models).")
        model = find_model(view, target, params)
        risk = model_risk(view, model)
        target = model_id(model)
        params = {**{k: v for k, v in params.items() if k in ("sha256", "force")},
                  **model.to_dict()}             # the catalog's URL, not the client's
    elif kind == "update_all":
        target = target or "all"
    if not target:
        raise RequestInvalid(f"task {kind!r} needs a target (pack id, URL or model file name)",
                             hint="Give 'target' (v1) or 'id' (classic body).", details={"field": "target"})
    decision = api.require(operation, risk, source=source, details={"target": target, "kind": kind})
    params["policy"] = decision.to_dict()
    from ..events import TaskSpec
    return PlannedTask(TaskSpec(kind, target, params), task_id, client_id, decision)


def enqueue(api: Api, planned: list[PlannedTask]) -> list[dict[str, Any]]:
    """Enqueue planned tasks in order. Every task was decided by the policy and the batch is
    checked (kinds with a runner, distinct ids) first, so a refused batch queues nothing."""
    queue = api.queue
    missing = sorted({p.spec.kind for p in planned} - set(queue.kinds))
    if missing:
        raise RequestInvalid(f"no runner for task kind {', '.join(missing)} in this build",
                             hint="Kinds available here: " + ", ".join(queue.kinds), details={"kinds": missing})
    ids = [p.task_id for p in planned if p.task_id]
    if len(ids) != len(set(ids)):
        raise RequestInvalid("two tasks of the batch have the same task_id", details={"field": "task_id"},
                             hint="Give each task its own task_id, or leave task_id out.")
    tasks = [queue.enqueue(p.spec, client_id=p.client_id, task_id=p.task_id).to_dict() for p in planned]
    for task in tasks:
        api.note(target=task["target"], task_ids=[task["id"]])
    return tasks


def _one(body: Mapping[str, Any], default_client: str | None) -> tuple[str, str, dict[str, Any], str | None, str | None]:
    kind = field(dict(body), "kind")
    target = body.get("target") or body.get("id") or ""
    if not isinstance(target, str):
        raise RequestInvalid("field 'target' must be a string", details={"field": "target"},
                             hint="Give the pack id, URL or model id as a string.")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise RequestInvalid("field 'params' must be an object", details={"field": "params"},
                             hint='Give params as a JSON object, e.g. {"version": "latest"}, or leave it out.')
    task_id = field(dict(body), "task_id", str, required=False)
    client_id = field(dict(body), "client_id", str, required=False, default=default_client)
    return kind, target, params, task_id, client_id


async def post_queue(api: Api, request: web.Request) -> web.Response:
    """POST /v1/queue: one task ``{kind, target, params, task_id?, client_id?}`` or ``{tasks: [...]}``."""
    body = await read_json(request)
    items = body.get("tasks") if "tasks" in body else [body]
    if not isinstance(items, list) or not items or len(items) > MAX_BATCH:
        raise RequestInvalid(f"'tasks' must be a non-empty list of at most {MAX_BATCH} task objects",
                             details={"field": "tasks"}, hint="Split a larger batch into several requests.")
    if any(not isinstance(i, dict) for i in items):
        raise RequestInvalid("every entry of 'tasks' must be an object", details={"field": "tasks"},
                             hint='Each task is {"kind": ..., "target": ..., "params": {...}}.')
    # Only models need the catalog; pack operations go on without one (an offline box's first day).
    models = any(i.get("kind") == "install_model" for i in items)
    view = await api.view() if models else await optional_view(api)
    client = body.get("client_id") if isinstance(body.get("client_id"), str) else None
    planned = []
    for item in items:
        kind, target, params, task_id, client_id = _one(item, client)
        planned.append(plan_task(api, view, kind, target, params, task_id=task_id, client_id=client_id))
    tasks = enqueue(api, planned)
    started = api.queue.start() if body.get("start", True) is not False else False
    return ok({"tasks": tasks, "started": started}, status=202)


async def get_queue(api: Api, request: web.Request) -> web.Response:
    queue = api.queue
    client = request.query.get("client_id") or None
    try:
        limit = int(request.query.get("history", "50"))
    except ValueError:
        raise RequestInvalid("query parameter history must be a whole number", details={"parameter": "history"},
                             hint="Use ?history=50 (how many finished tasks to list).")
    return ok({"status": queue.status(client), "worker_alive": queue.worker_alive,
               "running": [t.to_dict() for t in queue.running()],
               "pending": [t.to_dict() for t in queue.pending()],
               "history": [t.to_dict() for t in queue.history(client_id=client, limit=max(0, limit))]})


async def start_queue(api: Api, request: web.Request) -> web.Response:
    return ok({"started": api.queue.start()})


async def reset_queue(api: Api, request: web.Request) -> web.Response:
    return ok({"cancelled": api.queue.reset()})


async def get_task(api: Api, request: web.Request) -> web.Response:
    return ok(api.queue.get(request.match_info["id"]).to_dict())


async def cancel_task(api: Api, request: web.Request) -> web.Response:
    return ok(api.queue.cancel(request.match_info["id"]).to_dict())


def ensure_idle(api: Api) -> None:
    """``queue_busy`` unless nothing is queued or running (update all needs a quiet tree)."""
    status = api.queue.status()
    if status["in_progress_count"] or status["pending_count"]:
        raise QueueBusy("tasks are still queued or running", details=status)


def error_text(err: ManagerError) -> str:
    return f"{err.message} ({err.hint})" if err.hint else err.message
