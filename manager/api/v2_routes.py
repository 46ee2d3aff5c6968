"""The 4.x route family under ``/v2/...``: thin adapters over the classic and v1 handlers.

``v2_routes(route, param)`` returns the table rows (built by ``routes.py`` with its own ``_c``
factory, so they get the same gate, audit log, OpenAPI entry and ``web.route`` mounting as every
other route). Most rows reuse the classic handler as is (same operation, same policy, same
shape); the rest are here (history, mappings with a required mode, the bulk import-failure
lookup, ComfyUI versions, the deprecated fetch_updates) or in ``handlers_v2`` (the task model).

Paths, parameters and success shapes follow ComfyUI-Manager 4.3's ``glob`` server, plus the
routes only its legacy server has. Where 4.x misbehaves we answer a coded error instead; every
difference is listed in docs/api.md, "/v2 family".
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import security as sec
from ..envelope import envelope_error
from ..errors import ManagerError, RequestInvalid
from . import handlers_admin as admin
from . import handlers_snapshots as snap
from . import handlers_startup as start
from . import handlers_v2 as v2
from . import legacy as cl
from .door import HttpDoor
from .envelope import dumps, json_bytes_response, raw_json, read_json
from .v2_history import V2Journal, existing_journal
from .v2_records import list_batches, read_batch

if TYPE_CHECKING:
    from ..context import Manager
    from .routes import Route

V2 = "/v2"
_SEMVER_TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


class RouteGone(ManagerError):
    """A route 4.x keeps only to say it is gone (``GET /v2/customnode/fetch_updates``)."""

    code = "route_gone"
    http_status = 410


def _existing_journal(api: HttpDoor) -> V2Journal | None:
    """The journal if a /v2 task was ever queued here (reads never build the queue for it)."""
    return existing_journal(api.manager.queue) if api.queue_built else None


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise RequestInvalid(
            f"query parameter {name}={raw!r} is not a whole number",
            details={"parameter": name},
            hint=f"Use {name}=<integer>.",
        ) from None


# --- history -------------------------------------------------------------------------------------
async def history_list(api: HttpDoor, request: web.Request) -> web.Response:
    """``{"ids": [batch ids]}``, newest record first."""
    journal = _existing_journal(api)
    if journal is not None:
        await asyncio.to_thread(journal.settle, 5.0)  # a batch that just ended is being written
    return raw_json({"ids": await asyncio.to_thread(list_batches, api.manager.layout)})


async def history(api: HttpDoor, request: web.Request) -> web.Response:
    """``?id=<batch>``: the stored batch record. Else ``{"history": {ui_id: item}}`` of this session,
    filtered by ``client_id``; ``ui_id`` gives ``{"history": item}`` (or ``{}``); ``max_items``
    keeps that many, the newest unless ``offset`` (>= 0) says where to start."""
    journal = _existing_journal(api)
    if "id" in request.query:
        if journal is not None:
            await asyncio.to_thread(journal.settle, 5.0)
        return json_bytes_response(await asyncio.to_thread(read_batch, api.manager.layout, request.query["id"]))
    max_items, offset = _int(request, "max_items"), _int(request, "offset", -1)
    if journal is None:
        return raw_json({"history": {}})
    journal.reconcile()
    items = journal.history(request.query.get("client_id") or None)
    ui_id = request.query.get("ui_id")
    if ui_id:
        hit = next((i for i in reversed(items) if i.ui_id == ui_id), None)
        return raw_json({"history": hit.to_dict() if hit is not None else {}})
    if offset is not None and offset >= 0:
        items = items[offset:] if max_items is None else items[offset : offset + max(0, max_items)]
    elif max_items is not None:
        items = items[-max_items:] if max_items > 0 else []
    return raw_json({"history": {i.ui_id: i.to_dict() for i in items}})


# --- catalog and import failures ---------------------------------------------------------------------
async def getmappings(api: HttpDoor, request: web.Request) -> web.Response:
    """4.x requires ``mode`` (a missing one was a 500 there); then the classic mappings."""
    if not request.query.get("mode"):
        raise RequestInvalid(
            "query parameter mode is required",
            details={"parameter": "mode"},
            hint="Use mode=cache, local, remote or nickname.",
        )
    return await cl.getmappings(api, request)


async def fetch_updates(api: HttpDoor, request: web.Request) -> web.Response:
    err = RouteGone(
        "GET /v2/customnode/fetch_updates is deprecated and does nothing",
        hint="Updates are found by the pack list (update-state) and applied with the queue's update "
        "tasks; to revalidate the channel data use POST /offline-manager/v1/cache/refresh.",
    )
    # our failure envelope, plus the flag 4.x clients look for
    body = dict(envelope_error(err), deprecated=True)
    return json_bytes_response(dumps(body), status=err.http_status)


def _strings(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestInvalid(
            f"'{name}' must be a list of strings",
            details={"field": name},
            hint='Send {"cnr_ids": ["<pack id>", ...]} and/or {"urls": ["<repository URL>", ...]}.',
        )
    return value


async def import_fail_info_bulk(api: HttpDoor, request: web.Request) -> web.Response:
    """``{"cnr_ids"?, "urls"?}`` -> ``{key: {"error", "traceback"} | null}``."""
    body = await read_json(request)
    cnr_ids, urls = _strings(body, "cnr_ids"), _strings(body, "urls")
    if not cnr_ids and not urls:
        raise RequestInvalid(
            "give a non-empty 'cnr_ids' or 'urls' list",
            details={"field": "cnr_ids"},
            hint='Send {"cnr_ids": ["<pack id>"]} or {"urls": ["<repository URL>"]}.',
        )
    report = await asyncio.to_thread(api.import_failures)
    _key, inv = await api.inventory()
    out: dict[str, Any] = {}
    for key, cnr_id, url in [(c, c, "") for c in cnr_ids] + [(u, "", u) for u in urls]:
        pack = start._pack_for(inv.packs, cnr_id, url)
        failure = report.find((pack.name,)) if pack is not None else report.find((cnr_id,) if cnr_id else ())
        out[key] = (
            {"error": failure.message or failure.traceback, "traceback": failure.traceback}
            if failure is not None
            else None
        )
    return raw_json(out)


# --- ComfyUI versions (read only) ------------------------------------------------------------------
def comfyui_version_list(manager: Manager) -> dict[str, Any]:
    """``{"versions": [nightly, current, newest tags...] (at most 6), "current"}`` from the local
    clone's tags; never fetches (4.x ran git fetch here, whatever the network mode)."""
    raw = manager.host.comfyui_version() or "unknown"
    current = f"v{raw}" if re.match(r"^\d+\.\d+", raw) else raw
    tags: list[str] = []
    root = manager.layout.comfyui_root
    if manager.git is not None and (root / ".git").exists():
        try:
            tags = manager.git.list_tags(root)
        except ManagerError:
            tags = []
    numbered = [(m, t) for t in tags if (m := _SEMVER_TAG.match(t))]
    semver = [t for m, t in sorted(numbered, key=lambda mt: tuple(int(x) for x in mt[0].groups()), reverse=True)]
    versions = list(dict.fromkeys(["nightly", current, *semver]))[:6]
    return {"versions": versions, "current": current}


async def comfyui_versions(api: HttpDoor, request: web.Request) -> web.Response:
    return raw_json(await asyncio.to_thread(comfyui_version_list, api.manager))


# --- the table -------------------------------------------------------------------------------------
def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {k: (v if isinstance(v, dict) else {"type": v}) for k, v in props.items()}}


def v2_routes(route: Callable[..., Route], param: Callable[..., Any]) -> tuple[Route, ...]:
    """The /v2 rows; ``route`` is the route table's classic-row factory (``routes._c``)."""
    get_db, set_db = cl.setting_routes("db_mode")
    get_upd, set_upd = cl.setting_routes("update_policy", {"stable": "stable-comfyui", "nightly": "nightly-comfyui"})
    value = {**_obj(value="string"), "required": ["value"]}
    ids = (param("client_id", required=True), param("ui_id", required=True))
    task = {
        **_obj(
            ui_id="string",
            client_id="string",
            kind={"type": "string", "enum": list(v2.V2_KINDS)},
            params={"type": "object"},
        ),
        "required": ["ui_id", "client_id", "kind", "params"],
    }
    queued = _obj(task={"type": "object"})
    target = (param("target", description="snapshot name (the JSON body's target is read too)"),)
    mode = param("mode", enum=("cache", "local", "remote", "nickname"))
    node = (param("node_name", "path", True),)
    dry = param(
        "dry_run",
        enum=("true", "false"),
        description="true: answer {dry_run, plans} (one shared plan record "
        "per task, as POST /v1/queue dry_run) and queue nothing",
    )
    r = route
    return (
        # --- the 4.x glob server (ComfyUI-Manager 4.3, the frontend's built-in manager UI) ----------
        r(
            "POST",
            V2 + "/manager/queue/task",
            v2.post_task,
            sec.INSTALL,
            "v2QueueTask",
            "Queue a 4.x QueueTaskItem (eight kinds); decided by the policy now (403 with the hint when refused); "
            "queue/start runs it; ?dry_run=true: only the plan",
            gate=False,
            params=(dry,),
            body=task,
            result=queued,
        ),
        r(
            "GET",
            V2 + "/manager/queue/history_list",
            history_list,
            sec.READ,
            "v2HistoryList",
            "{ids: [batch ids]}, newest record first",
            response="json",
        ),
        r(
            "GET",
            V2 + "/manager/queue/history",
            history,
            sec.READ,
            "v2History",
            "A batch record by id, or {history: {ui_id: TaskHistoryItem}} of this session",
            response="json",
            params=(
                param("id", description="batch id: answers the stored batch record"),
                param("client_id"),
                param("ui_id"),
                param("max_items"),
                param("offset", description="-1 (default): the newest"),
            ),
        ),
        r(
            "GET",
            V2 + "/customnode/getmappings",
            getmappings,
            sec.READ,
            "v2Getmappings",
            "{pack: [[node classes], {title_aux, nodename_pattern?}]}; mode is required",
            response="json",
            params=(param("mode", required=True, enum=("cache", "local", "remote", "nickname")),),
        ),
        r(
            "GET",
            V2 + "/customnode/fetch_updates",
            fetch_updates,
            sec.READ,
            "v2FetchUpdates",
            "Deprecated in 4.x: 410 route_gone (with deprecated: true)",
            response="json",
            statuses=(410,),
        ),
        r(
            "POST",
            V2 + "/manager/queue/update_all",
            v2.update_all,
            sec.UPDATE_ALL,
            "v2QueueUpdateAll",
            "Queue update-all (one task, id ui_id: plan, auto-snapshot, update every enabled pack)",
            params=(*ids, param("mode", enum=("remote", "local", "cache")), dry),
            result=queued,
        ),
        r(
            "GET",
            V2 + "/manager/is_legacy_manager_ui",
            cl.is_legacy_ui,
            sec.READ,
            "v2IsLegacyUi",
            "{is_legacy_manager_ui: false}",
            response="json",
        ),
        r(
            "GET",
            V2 + "/customnode/installed",
            cl.installed,
            sec.READ,
            "v2Installed",
            "{dir: {ver, cnr_id, aux_id, enabled}}",
            response="json",
            params=(param("mode", enum=("default", "imported")),),
        ),
        r(
            "GET",
            V2 + "/snapshot/getlist",
            snap.classic_getlist,
            sec.READ,
            "v2SnapshotList",
            "{items: [names]}, newest first",
            response="json",
        ),
        r(
            "POST",
            V2 + "/snapshot/remove",
            snap.classic_remove,
            sec.SNAPSHOT_REMOVE,
            "v2SnapshotRemove",
            "Delete a snapshot (?target=; 200 also when absent)",
            params=target,
        ),
        r(
            "POST",
            V2 + "/snapshot/restore",
            snap.classic_restore,
            sec.SNAPSHOT_RESTORE,
            "v2SnapshotRestore",
            "Restore a snapshot (?target=): at the next start inside ComfyUI, queued now standalone",
            params=target,
        ),
        r(
            "GET",
            V2 + "/snapshot/get_current",
            snap.classic_get_current,
            sec.READ,
            "v2SnapshotCurrent",
            "The live state in the classic snapshot shape",
            response="json",
        ),
        r(
            "POST",
            V2 + "/snapshot/save",
            snap.classic_save,
            sec.SNAPSHOT_SAVE,
            "v2SnapshotSave",
            "Save <time>_snapshot",
        ),
        r(
            "POST",
            V2 + "/customnode/import_fail_info",
            start.classic_import_fail_info,
            sec.READ,
            "v2ImportFailInfo",
            "{name, path, msg} of a pack that failed to import ({cnr_id} or {url})",
            body=_obj(cnr_id="string", url="string"),
            response="json",
        ),
        r(
            "POST",
            V2 + "/customnode/import_fail_info_bulk",
            import_fail_info_bulk,
            sec.READ,
            "v2ImportFailInfoBulk",
            "{key: {error, traceback} | null} for {cnr_ids?, urls?}",
            body=_obj(
                cnr_ids={"type": "array", "items": {"type": "string"}},
                urls={"type": "array", "items": {"type": "string"}},
            ),
            response="json",
        ),
        r(
            "POST",
            V2 + "/manager/queue/reset",
            cl.queue_reset,
            sec.QUEUE_CONTROL,
            "v2QueueReset",
            "Cancel queued tasks (running tasks and the history stay)",
        ),
        r(
            "GET",
            V2 + "/manager/queue/status",
            cl.queue_status,
            sec.READ,
            "v2QueueStatus",
            "{total_count, done_count, in_progress_count, pending_count, is_processing, client_id?}",
            response="json",
            params=(param("client_id"),),
        ),
        r(
            "POST",
            V2 + "/manager/queue/start",
            cl.queue_start,
            sec.QUEUE_CONTROL,
            "v2QueueStart",
            "Start the worker: 200 started, 201 already running",
            statuses=(201,),
        ),
        r(
            "POST",
            V2 + "/manager/queue/update_comfyui",
            v2.update_comfyui,
            sec.READ,
            "v2UpdateComfyui",
            "Not an operation here: 501 not_implemented (update ComfyUI with git or its launcher)",
            params=(*ids, param("stable")),
        ),
        r(
            "GET",
            V2 + "/comfyui_manager/comfyui_versions",
            comfyui_versions,
            sec.READ,
            "v2ComfyuiVersions",
            "{versions: [nightly, current, local tags], current} (no git fetch)",
            response="json",
        ),
        r(
            "POST",
            V2 + "/comfyui_manager/comfyui_switch_version",
            v2.switch_comfyui_version,
            sec.READ,
            "v2ComfyuiSwitchVersion",
            "Not an operation here: 501 not_implemented",
            body={**_obj(ver="string", client_id="string", ui_id="string"), "required": ["ver", "client_id", "ui_id"]},
        ),
        r(
            "POST",
            V2 + "/manager/queue/install_model",
            v2.install_model,
            sec.INSTALL_MODEL,
            "v2QueueInstallModel",
            "Queue a model download (ModelMetadata + client_id, ui_id; must be in the channel's model list)",
            body=_obj(
                name="string",
                type="string",
                base="string",
                save_path="string",
                url="string",
                filename="string",
                client_id="string",
                ui_id="string",
            ),
            result=queued,
        ),
        r("GET", V2 + "/manager/db_mode", get_db, sec.READ, "v2GetDbMode", "db_mode as text", response="text"),
        r(
            "POST",
            V2 + "/manager/db_mode",
            set_db,
            sec.CONFIG_WRITE,
            "v2SetDbMode",
            "Save db_mode ({value})",
            body=value,
        ),
        r(
            "GET",
            V2 + "/manager/policy/update",
            get_upd,
            sec.READ,
            "v2GetUpdatePolicy",
            "update_policy as text",
            response="text",
        ),
        r(
            "POST",
            V2 + "/manager/policy/update",
            set_upd,
            sec.CONFIG_WRITE,
            "v2SetUpdatePolicy",
            "Save update_policy ({value})",
            body=value,
        ),
        r(
            "GET",
            V2 + "/manager/channel_url_list",
            cl.get_channel_list,
            sec.READ,
            "v2ChannelList",
            "{selected, list: ['name::url']}",
            response="json",
        ),
        r(
            "POST",
            V2 + "/manager/channel_url_list",
            cl.post_channel_list,
            sec.CHANNEL_SELECT,
            "v2ChannelSelect",
            "Select a channel by name ({value})",
            gate=False,
            body=value,
        ),
        r("POST", V2 + "/manager/reboot", admin.reboot, sec.REBOOT, "v2Reboot", "Restart ComfyUI (answers first)"),
        r("GET", V2 + "/manager/version", cl.version, sec.READ, "v2Version", "'V<version>' as text", response="text"),
        # --- only in 4.x's legacy server (--enable-manager-legacy-ui) ---------------------------------
        r(
            "GET",
            V2 + "/customnode/getlist",
            cl.getlist,
            sec.READ,
            "v2Getlist",
            "{channel, node_packs}; skip_update is accepted, git never runs",
            response="json",
            params=(mode, param("skip_update")),
            statuses=(304,),
        ),
        r(
            "POST",
            V2 + "/manager/queue/batch",
            v2.queue_batch,
            sec.INSTALL,
            "v2QueueBatch",
            "Queue {install: [rows], uninstall: [...], ..., update_all: mode}; {failed: [ids]}; starts the worker; "
            "?dry_run=true: {failed, errors, plans}, nothing queued",
            gate=False,
            params=(dry,),
            body={"type": "object"},
            response="json",
        ),
        r(
            "GET",
            V2 + "/externalmodel/getlist",
            cl.external_models,
            sec.READ,
            "v2ModelList",
            "{models: [... installed: 'True'|'False']}",
            response="json",
            params=(mode,),
        ),
        r(
            "GET",
            V2 + "/customnode/versions/{node_name}",
            cl.versions,
            sec.READ,
            "v2Versions",
            "Registry versions (offline: cached copy or a coded error)",
            response="json",
            params=node,
        ),
        r(
            "GET",
            V2 + "/customnode/disabled_versions/{node_name}",
            cl.disabled_versions,
            sec.READ,
            "v2DisabledVersions",
            "[{version}] of disabled copies",
            response="json",
            params=node,
        ),
        r(
            "GET",
            V2 + "/customnode/alternatives",
            cl.alternatives,
            sec.READ,
            "v2Alternatives",
            "{id: alternative} (the legacy JS calls this path)",
            response="json",
            params=(mode,),
        ),
        r(
            "POST",
            V2 + "/customnode/install/git_url",
            cl.install_git_url,
            sec.INSTALL_GIT_URL,
            "v2InstallGitUrl",
            "Queue an install from a git URL (allow_git_url_install + loopback)",
            gate=False,
            body={**_obj(url="string"), "required": ["url"]},
            result=queued,
        ),
        r(
            "POST",
            V2 + "/customnode/install/pip",
            cl.install_pip,
            sec.INSTALL_PIP,
            "v2InstallPip",
            "Queue a pip install (allow_pip_install + loopback)",
            gate=False,
            body={**_obj(packages="string", index_url="string"), "required": ["packages"]},
            result=queued,
        ),
        r(
            "GET",
            V2 + "/manager/notice",
            cl.notice,
            sec.READ,
            "v2Notice",
            "A local status notice (no network)",
            response="html",
        ),
    )


__all__ = ["RouteGone", "comfyui_version_list", "v2_routes"]
