"""Read-only catalog handlers of the v1 API: packs, one pack, versions, installed, models, workflows.

Every handler is ``async def h(api, request)``; the route table binds ``api``. Nothing here
blocks the loop: bodies come pre-encoded from ``api.listing`` and scans run in threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import ManagerError, NotFound, RequestInvalid
from .door import DB_MODES, HttpDoor
from .envelope import dumps, envelope_prefix, json_bytes_response, ok, query, read_json
from .listing import Body, by_catalog_id, installed_dict

if TYPE_CHECKING:
    from ..context import CatalogView

log = logging.getLogger("offline_manager.api")
MODES = tuple(m for m in DB_MODES if m != "nickname")
WORKFLOW_MAX_BYTES = 32 * 1024 * 1024


def body_response(request: web.Request, body: Body) -> web.Response:
    """Pre-encoded bytes with an ETag; a matching ``If-None-Match`` gets 304 and no body."""
    headers = {"ETag": body.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if request.headers.get("If-None-Match") == body.etag:
        return web.Response(status=304, headers=headers)
    if body.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
        return json_bytes_response(body.gzipped, headers={**headers, "Content-Encoding": "gzip"})
    return json_bytes_response(body.data, headers=headers)


async def optional_view(api: HttpDoor) -> CatalogView | None:
    """The catalog view, or None when no channel data can be had (an offline box before its first
    cache, a refused channel): routes about what is on disk answer without it."""
    if api.loaded_view is not None:
        return api.loaded_view
    try:
        return await api.view()
    except ManagerError as exc:
        log.info("answering without a catalog: %s (%s)", exc.message, exc.code)
        return None


async def list_packs(api: HttpDoor, request: web.Request) -> web.Response:
    mode = query(request, "mode", default="cache", choices=MODES) or "cache"
    if mode in ("cache", "local") and api.loaded_view is None:  # the first request after a start
        first = await api.listing.first_packs("v1")
        if first is not None:
            return body_response(request, first)
    view = await api.view(mode)
    return body_response(request, await api.listing.packs("v1", view))


async def get_pack(api: HttpDoor, request: web.Request) -> web.Response:
    pack_id = request.match_info["id"]
    view = await api.view()
    pack = view.catalog.get(pack_id)
    _key, inv = await api.inventory()
    failed = await api.failed_import_names()
    matched, _ = by_catalog_id(inv)
    if pack is None:
        here = inv.find(pack_id)
        if not here:
            raise NotFound(
                f"no pack {pack_id!r} in channel {view.channel.name!r} and none installed",
                hint="List the packs with GET /offline-manager/v1/packs; check the channel "
                "(GET /offline-manager/v1/channels).",
                details={"id": pack_id},
            )
        return ok(
            {
                "pack": None,
                "installed": [installed_dict(p, failed) for p in here],
                "node_types": [],
                "issues": [],
                "stats": None,
            }
        )
    st = view.catalog.stats_for(pack.id)
    inst = matched.get(pack.id)
    return ok(
        {
            "pack": pack.to_dict(),
            "installed": [installed_dict(inst, failed)] if inst else [],
            "node_types": list(view.catalog.node_types(pack.id)),
            "issues": [i.to_dict() for i in view.catalog.issues_for(pack.id)],
            "stats": dataclasses.asdict(st) if st else None,
        }
    )


async def registry_versions(api: HttpDoor, node_id: str) -> list[dict[str, Any]]:
    """Registry versions of ``node_id`` through the gate and the cache (offline: cache only)."""
    versions = await api.manager.registry.versions(node_id)
    return [v.to_dict() for v in versions]


async def pack_versions(api: HttpDoor, request: web.Request) -> web.Response:
    pack_id = request.match_info["id"]
    view = await optional_view(api)
    pack = view.catalog.get(pack_id) if view else None
    node_id = (pack.cnr_id or pack.id) if pack else pack_id
    return ok({"id": node_id, "versions": await registry_versions(api, node_id)})


async def list_installed(api: HttpDoor, request: web.Request) -> web.Response:
    await optional_view(api)  # packs are matched against the catalog when there is one
    _key, inv = await api.inventory()
    return ok(inv.to_dict())


def model_listing(api: HttpDoor, view: CatalogView) -> Any:
    """The models module's listing (folders from the host, installed state from disk); blocking."""
    from ..models import list_models as map_models  # imported on first use
    from ..models import load_model_folders

    return map_models(view.catalog.models, load_model_folders(api.manager.host))


async def list_models(api: HttpDoor, request: web.Request) -> web.Response:
    view = await api.view(query(request, "mode", default="cache", choices=MODES) or "cache")

    def build(v: CatalogView) -> bytes:
        listing = model_listing(api, v)
        data = {"channel": v.channel.to_dict(), **listing.to_dict()}
        data["notices"] = [n.to_dict() for n in v.notices] + data["notices"]
        return envelope_prefix() + dumps(data) + b"}"

    return body_response(request, await api.listing.models("v1-models", view, build))


async def node_type(api: HttpDoor, request: web.Request) -> web.Response:
    name = request.match_info["name"]
    view = await api.view()
    packs = view.catalog.packs_for_node_type(name)
    _key, inv = await api.inventory()
    matched, _ = by_catalog_id(inv)
    return ok({"type": name, "packs": [dict(p.to_dict(), installed=p.id in matched) for p in packs]})


# --- workflows ---------------------------------------------------------------------------------
def workflow_node_types(workflow: Any) -> list[str]:
    """Node class names used by a workflow in the UI format (``nodes``, subgraphs) or API format."""
    found: dict[str, None] = {}

    def ui_nodes(nodes: Iterable[Any]) -> None:
        for node in nodes:
            if isinstance(node, dict) and isinstance(node.get("type"), str) and node["type"]:
                found.setdefault(node["type"])

    if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list):
        ui_nodes(workflow["nodes"])
        defs = workflow.get("definitions")
        for sub in (defs.get("subgraphs") if isinstance(defs, dict) else None) or []:
            if isinstance(sub, dict) and isinstance(sub.get("nodes"), list):
                ui_nodes(sub["nodes"])
    elif isinstance(workflow, dict):
        for node in workflow.values():
            if isinstance(node, dict) and isinstance(node.get("class_type"), str):
                found.setdefault(node["class_type"])
    else:
        raise RequestInvalid(
            "a workflow must be a JSON object (UI format with 'nodes', or API format)",
            hint="Send the workflow file's JSON as the request body.",
        )
    # subgraph instances use their uuid as type; they are not node classes
    return [t for t in found if not (len(t) == 36 and t.count("-") == 4)]


def missing_packs(view: CatalogView, inv: Any, types: list[str]) -> dict[str, Any]:
    """Which node types no installed pack provides, and the catalog packs that would."""
    matched, _ = by_catalog_id(inv)
    enabled_ids = {pid for pid, p in matched.items() if p.enabled}
    rows: list[dict[str, Any]] = []
    to_install: dict[str, Any] = {}
    for name in types:
        providers = view.catalog.packs_for_node_type(name)
        if not providers:
            rows.append({"type": name, "state": "unknown", "packs": []})
            continue
        ids = [p.id for p in providers]
        if any(i in enabled_ids for i in ids):
            state = "installed"
        elif any(i in matched for i in ids):
            state = "disabled"
        else:
            state = "missing"
            to_install.setdefault(ids[0], providers[0].title)
        rows.append({"type": name, "state": state, "packs": ids})
    return {"node_types": rows, "install": [{"id": k, "title": v} for k, v in to_install.items()]}


def _str_list(body: dict[str, Any], name: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestInvalid(
            f"field {name!r} must be a list of strings", details={"field": name}, hint=f'Send {name!r} as ["..."].'
        )
    return value


def _host_node_types(api: HttpDoor) -> list[str] | None:
    """Inside ComfyUI: the node classes it registered (``nodes.NODE_CLASS_MAPPINGS``); else None."""
    import sys

    if api.door != "comfyui":
        return None
    mapping = getattr(sys.modules.get("nodes"), "NODE_CLASS_MAPPINGS", None)
    return list(mapping) if isinstance(mapping, dict) else None


async def workflow_missing(api: HttpDoor, request: web.Request) -> web.Response:
    """A workflow, or ``{workflow, prefer?, choices?, known_types?}``: every node type with all its
    candidate packs, the batch that may be installed (``requests``: post them to ``/v1/queue`` as
    one ``tasks`` batch), the types that need a choice, and, after an install, the types still
    missing and why (``manager/missing_nodes.py``). Call it again after the batch ran: that is the
    re-check."""
    from ..missing_nodes import analyse, preference_of, row_json

    body = await read_json(request, max_bytes=WORKFLOW_MAX_BYTES)
    prefer: list[str] = []
    choices: dict[str, str] = {}
    known: list[str] | None = None
    workflow: Any = body
    if isinstance(body.get("workflow"), dict):  # {"workflow": {...}, options} wrapper
        workflow = body["workflow"]
        prefer = _str_list(body, "prefer") or []
        known = _str_list(body, "known_types")
        raw_choices = body.get("choices") or {}
        if not isinstance(raw_choices, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw_choices.items()
        ):
            raise RequestInvalid(
                "field 'choices' must map node types to pack ids",
                details={"field": "choices"},
                hint='Send {"choices": {"NodeType": "pack-id"}}.',
            )
        choices = raw_choices
    view = await api.view()
    _key, inv = await api.inventory()
    if known is None:
        known = _host_node_types(api)
    # the packs enabled when this door first read the tree: what the ComfyUI running now loaded at
    # most (inside ComfyUI: what it loaded); a pack installed since needs a restart
    loaded = [name for name, row in (await api.imported()).items() if row.get("enabled")]
    failures = await asyncio.to_thread(api.import_failures)
    report = await asyncio.to_thread(
        lambda: analyse(
            workflow,
            catalog=view.catalog,
            inventory=inv,
            known_types=known,
            loaded=loaded,
            import_failures=failures,
            preference=preference_of(api.manager.config, prefer),
            choices=choices,
        )
    )
    out = report.to_json()
    out["node_types"] = [
        {**row_json(r), "packs": [c.id for c in r.candidates]} for r in report.rows
    ]  # the older answer's rows, each now with its candidates, choice and reason
    out["install"] = [{"id": c.pack_id, "title": c.title} for c in report.chosen]
    out["requests"] = [{"kind": k, "target": t, "params": p} for k, t, p in report.requests()]
    out["applies_at_restart"] = api.door == "comfyui"
    return ok(out)
