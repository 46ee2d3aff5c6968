"""THE route table: every route once, from which aiohttp RouteDefs and the OpenAPI file are made.

A ``Route`` names its method, path, handler (``async def h(api, request)``), the security
operation checked before the handler runs (``gate=False``: the handler decides, because the
risk depends on the request), and what the OpenAPI document says about it. Our own routes
live under ``/offline-manager/`` (the health probe, then ``v1``) and always mount; the classic
paths mount where free.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .. import security as sec
from ..kinds import BY_NAME, KINDS
from . import handlers_admin as admin
from . import handlers_catalog as cat
from . import handlers_classic_ui as ui
from . import handlers_doctor as doc
from . import handlers_models_verify as mv
from . import handlers_queue as q
from . import handlers_snapshots as snap
from . import handlers_startup as start
from . import handlers_trash as trash
from . import legacy as cl
from . import v2_routes as v2r
from .door import HttpDoor
from .envelope import Observer, guarded
from .origin import RequestGuard, changes_state

PREFIX = "/offline-manager/v1"
HEALTH = "/offline-manager/health"  # outside v1: probes and scripts keep it across API versions
ApiHandler = Callable[[HttpDoor, web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Param:
    name: str
    where: str = "query"  # query | path | header
    required: bool = False
    description: str = ""
    enum: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: ApiHandler
    operation: str  # a manager.security operation (documentation and the gate)
    name: str  # operationId; for v1 routes also the JS client's method name
    summary: str
    legacy: bool = False
    gate: bool = True  # False: the handler asks the policy with the request's risk
    params: tuple[Param, ...] = ()
    body: Mapping[str, Any] | None = None  # JSON schema of the request body
    response: str = "envelope"  # envelope | json | text | html | empty
    result: Mapping[str, Any] = field(default_factory=dict)  # JSON schema of data / the classic body
    statuses: tuple[int, ...] = ()  # notable non-error statuses besides 200 (201, 202, 204, 304)
    setter: str = ""  # a query parameter that makes this GET a write (classic share_option)


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {k: (v if isinstance(v, dict) else {"type": v}) for k, v in props.items()}}


def _req(schema: dict[str, Any], *names: str) -> dict[str, Any]:
    return dict(schema, required=list(names))


MODE = Param(
    "mode",
    enum=("cache", "local", "remote"),
    description="data source: cache (default), local "
    "(cached copy only, never the network), remote (revalidate through the network gate)",
)
CLASSIC_MODE = Param(
    "mode",
    enum=("cache", "local", "remote", "nickname"),
    description="classic data source; optional here (default cache)",
)
# one queued task: kind, its description and its params' schema all come from the task table
TASK_PROPERTIES: dict[str, Any] = {
    "kind": {
        "type": "string",
        "enum": [k.name for k in KINDS],
        "description": "; ".join(f"{k.name}: {k.summary} (target: {k.target})" for k in KINDS),
    },
    "target": {"type": "string"},
    "task_id": {"type": "string"},
    "client_id": {"type": "string"},
    "params": {"oneOf": [{"title": k.name, **k.params.schema()} for k in KINDS]},
}
TASK = {"type": "object", "required": ["kind"], "properties": TASK_PROPERTIES}
CLASSIC_ROW = _obj(
    id="string",
    version="string",
    selected_version="string",
    repository="string",
    files={"type": "array", "items": {"type": "string"}},
    channel="string",
    mode="string",
    ui_id="string",
    skip_post_install="boolean",
)
VALUE = _req(_obj(value="string"), "value")
TASK_RESULT = _obj(task={"type": "object"})
_D = sec  # short alias for operations in the table below

_get_db, _set_db = cl.setting_routes("db_mode")
_get_upd, _set_upd = cl.setting_routes("update_policy", {"stable": "stable-comfyui", "nightly": "nightly-comfyui"})
_get_comp, _set_comp = cl.setting_routes("component_policy")


def _v1(method: str, path: str, handler: ApiHandler, op: str, name: str, summary: str, **kw: Any) -> Route:
    return Route(method, PREFIX + path, handler, op, name, summary, **kw)


def _c(method: str, path: str, handler: ApiHandler, op: str, name: str, summary: str, **kw: Any) -> Route:
    return Route(method, path, handler, op, name, summary, legacy=True, **kw)


ROUTES: tuple[Route, ...] = (
    # --- our own prefix, always mounted; the panel uses only the v1 routes -------------------------
    Route(
        "GET",
        HEALTH,
        admin.health,
        _D.READ,
        "getHealth",
        "Liveness: our version and the ComfyUI root, answered without loading the Manager",
        result=_obj(version="string", comfyui_root="string"),
    ),
    _v1(
        "GET",
        "/status",
        admin.get_status,
        _D.READ,
        "getStatus",
        "Version, door, network mode, catalog and queue summary",
    ),
    _v1("GET", "/openapi.json", admin.get_openapi, _D.READ, "getOpenapi", "This document", response="json"),
    _v1(
        "GET",
        "/packs",
        cat.list_packs,
        _D.READ,
        "listPacks",
        "Every catalog pack with its installed state (pre-encoded; ETag/304)",
        params=(MODE,),
        statuses=(304,),
    ),
    _v1(
        "GET",
        "/packs/{id}",
        cat.get_pack,
        _D.READ,
        "getPack",
        "One pack: catalog entry, installed copies, node types",
        params=(Param("id", "path", True),),
    ),
    _v1(
        "GET",
        "/packs/{id}/versions",
        cat.pack_versions,
        _D.READ,
        "getPackVersions",
        "Registry versions of a pack (offline: from the cache)",
        params=(Param("id", "path", True),),
    ),
    _v1("GET", "/installed", cat.list_installed, _D.READ, "listInstalled", "What custom_nodes holds (inventory)"),
    _v1(
        "GET",
        "/node-types/{name}",
        cat.node_type,
        _D.READ,
        "findNodeType",
        "Packs that provide a node class",
        params=(Param("name", "path", True),),
    ),
    _v1(
        "POST",
        "/workflow/missing",
        cat.workflow_missing,
        _D.READ,
        "workflowMissing",
        "Node types of a workflow with every candidate pack, the batch to install, the types to choose "
        "for, and (called again after the install) the types still missing and why",
        body={
            "type": "object",
            "description": "a workflow (UI or API format), or {workflow, prefer?: [pack id or author], "
            "choices?: {node type: pack id}, known_types?: [node class names the page has]}",
        },
    ),
    _v1(
        "GET",
        "/models",
        cat.list_models,
        _D.READ,
        "listModels",
        "Catalog models with installed state",
        params=(MODE,),
        statuses=(304,),
    ),
    _v1(
        "GET",
        "/models/verify",
        mv.verify_models,
        _D.READ,
        "verifyModels",
        "Installed catalog models checked: size, and sha256 where the model list gives one (hash cache)",
        params=(Param("sha256", description="true: hash every installed model now (cached)", enum=("true", "false")),),
    ),
    _v1(
        "GET",
        "/queue",
        q.get_queue,
        _D.READ,
        "getQueue",
        "Queue status, running, pending and history",
        params=(Param("client_id"), Param("history", description="how many finished tasks (default 50)")),
    ),
    _v1(
        "POST",
        "/queue",
        q.post_queue,
        _D.INSTALL,
        "enqueue",
        "Queue one task or {tasks: [...]}; each is classified and decided by the policy, then the worker starts; "
        "dry_run: true queues nothing and answers {plans: [...]}, what each task would change (200)",
        gate=False,
        body={
            "oneOf": [
                {**TASK, "properties": {**TASK_PROPERTIES, "dry_run": {"type": "boolean"}}},
                _obj(tasks={"type": "array", "items": TASK}, start="boolean", client_id="string", dry_run="boolean"),
            ]
        },
        statuses=(202,),
    ),
    _v1("POST", "/queue/start", q.start_queue, _D.QUEUE_CONTROL, "startQueue", "Start the worker"),
    _v1(
        "POST",
        "/queue/reset",
        q.reset_queue,
        _D.QUEUE_CONTROL,
        "resetQueue",
        "Cancel queued tasks and clear the history (a running task finishes)",
    ),
    _v1("GET", "/tasks/{id}", q.get_task, _D.READ, "getTask", "One task", params=(Param("id", "path", True),)),
    _v1(
        "POST",
        "/tasks/{id}/cancel",
        q.cancel_task,
        _D.QUEUE_CONTROL,
        "cancelTask",
        "Cancel a queued or running task",
        params=(Param("id", "path", True),),
    ),
    _v1(
        "GET",
        "/trash",
        trash.list_trash,
        _D.READ,
        "listTrash",
        "Trashed packs that can be restored, newest first (restore_trash / empty_trash are queued kinds)",
        result=_obj(
            entries={
                "type": "array",
                "items": _obj(
                    id="string",
                    name="string",
                    original="string",
                    trashed_at="number",
                    reason="string",
                    kind="string",
                    pack_id="string",
                    version="string",
                    commit="string",
                    size_bytes="integer",
                ),
            },
            count="integer",
            total_bytes="integer",
            path="string",
        ),
    ),
    _v1("GET", "/snapshots", snap.list_snapshots, _D.READ, "listSnapshots", "Saved snapshots, newest first"),
    _v1(
        "POST",
        "/snapshots",
        snap.save_snapshot,
        _D.SNAPSHOT_SAVE,
        "saveSnapshot",
        "Save a snapshot of the tree now (default name <time>_snapshot)",
        body=_obj(name="string", overwrite="boolean", hash_models="boolean"),
    ),
    _v1(
        "GET",
        "/snapshots/current",
        snap.current_snapshot,
        _D.READ,
        "currentSnapshot",
        "The snapshot of the tree as it is now (not saved)",
    ),
    _v1(
        "GET",
        "/snapshots/{name}",
        snap.get_snapshot,
        _D.READ,
        "getSnapshot",
        "One saved snapshot",
        params=(Param("name", "path", True),),
    ),
    _v1(
        "GET",
        "/snapshots/{name}/diff",
        snap.diff_snapshot,
        _D.READ,
        "diffSnapshot",
        "What restoring the snapshot would change (against the tree now, or another snapshot)",
        params=(
            Param("name", "path", True),
            Param("against", description="'current' (default) or the name of another saved snapshot"),
        ),
    ),
    _v1(
        "POST",
        "/snapshots/{name}/restore",
        snap.restore_snapshot,
        _D.SNAPSHOT_RESTORE,
        "restoreSnapshot",
        "Restore a snapshot: queue it (202), or dry_run: only the plan, or at_next_start: before the next start",
        gate=False,
        params=(Param("name", "path", True),),
        body=_obj(
            dry_run="boolean", at_next_start="boolean", options={"type": "object"}, task_id="string", client_id="string"
        ),
        statuses=(202,),
    ),
    _v1(
        "POST",
        "/snapshots/{name}/remove",
        snap.remove_snapshot,
        _D.SNAPSHOT_REMOVE,
        "removeSnapshot",
        "Delete a saved snapshot",
        params=(Param("name", "path", True),),
    ),
    _v1(
        "GET",
        "/import-failures",
        start.import_failures,
        _D.READ,
        "listImportFailures",
        "Packs ComfyUI failed to import at its (last) start, with its message and traceback",
    ),
    _v1(
        "GET",
        "/startup",
        start.get_startup,
        _D.READ,
        "getStartup",
        "Operations scheduled for the next ComfyUI start, and what the last start applied",
    ),
    _v1(
        "POST",
        "/startup",
        start.schedule_startup,
        _D.UNINSTALL,
        "scheduleAtStartup",
        "Schedule uninstall/disable/enable of a pack or a snapshot restore for the next start (prestartup)",
        gate=False,
        body=_req(
            _obj(
                action={"type": "string", "enum": ["uninstall", "disable", "enable", "snapshot_restore"]},
                target="string",
                params={"type": "object"},
            ),
            "action",
            "target",
        ),
    ),
    _v1(
        "POST",
        "/startup/{id}/cancel",
        start.cancel_startup,
        _D.QUEUE_CONTROL,
        "cancelAtStartup",
        "Cancel an operation scheduled for the next start",
        params=(Param("id", "path", True),),
    ),
    _v1("GET", "/config", admin.get_config, _D.READ, "getConfig", "Every setting, its value and where it came from"),
    _v1(
        "GET",
        "/doctor",
        doc.get_doctor,
        _D.READ,
        "getDoctor",
        "The pre-deploy checklist: checks with pass/warn/fail and a fix each (cm-cli.py doctor)",
        params=(
            Param(
                "online",
                enum=("true", "false"),
                description="also probe remote channels when the network mode allows them (never in offline mode)",
            ),
        ),
        result=_obj(
            status={"type": "string", "enum": ["pass", "warn", "fail"]},
            ok="boolean",
            counts="object",
            comfyui_root="string",
            config_path="string",
            online="boolean",
            checks={
                "type": "array",
                "items": _obj(
                    id="string",
                    status={"type": "string", "enum": ["pass", "warn", "fail"]},
                    title="string",
                    detail="string",
                    fix="string",
                ),
            },
        ),
    ),
    _v1(
        "POST",
        "/config",
        admin.post_config,
        _D.CONFIG_WRITE,
        "setConfig",
        "Save plain settings to config.ini ({changes: {key: value}}); security keys are refused",
        gate=False,
        body=_req(_obj(changes={"type": "object"}), "changes"),
    ),
    _v1("GET", "/network", admin.get_network, _D.READ, "getNetwork", "The network mode in effect and its source"),
    _v1(
        "POST",
        "/network",
        admin.post_network,
        _D.NETWORK_MODE,
        "setNetwork",
        "Change network_mode (towards offline always; towards public needs normal level and loopback)",
        gate=False,
        body=_req(_obj(mode={"type": "string", "enum": ["offline", "private", "public"]}), "mode"),
    ),
    _v1("GET", "/channels", admin.get_channels, _D.READ, "getChannels", "channels.list and the active channel"),
    _v1(
        "POST",
        "/channels",
        admin.post_channels,
        _D.CHANNEL_SELECT,
        "setChannel",
        "Select the active channel by name (or URL, as the policy allows)",
        gate=False,
        body=_obj(name="string", url="string"),
    ),
    _v1("GET", "/cache", admin.get_cache, _D.READ, "getCache", "Channel cache health (age, fresh/stale, checksums)"),
    _v1(
        "POST",
        "/cache/refresh",
        admin.refresh_cache,
        _D.CACHE_REFRESH,
        "refreshCache",
        "Revalidate the channel files through the network gate",
    ),
    _v1(
        "GET",
        "/policy",
        admin.get_policy,
        _D.READ,
        "getPolicy",
        "Security settings and, per operation, whether it is allowed now (with the hint when not)",
    ),
    _v1("POST", "/reboot", admin.reboot, _D.REBOOT, "reboot", "Restart ComfyUI (answers first)"),
    # --- classic ComfyUI-Manager paths (mounted only where no other extension owns them) ---------
    _c(
        "GET",
        "/customnode/getlist",
        cl.getlist,
        _D.READ,
        "classicGetlist",
        "{channel, node_packs}; skip_update is accepted, git never runs",
        response="json",
        params=(CLASSIC_MODE, Param("skip_update")),
        statuses=(304,),
    ),
    _c(
        "GET",
        "/customnode/getmappings",
        cl.getmappings,
        _D.READ,
        "classicGetmappings",
        "{pack: [[node classes], {title_aux, nodename_pattern?}]}",
        response="json",
        params=(CLASSIC_MODE,),
    ),
    _c(
        "GET",
        "/customnode/alternatives",
        cl.alternatives,
        _D.READ,
        "classicAlternatives",
        "{id: alternative}",
        response="json",
        params=(CLASSIC_MODE,),
    ),
    _c(
        "GET",
        "/customnode/versions/{node_name}",
        cl.versions,
        _D.READ,
        "classicVersions",
        "Registry versions (offline: cached copy or a coded error)",
        response="json",
        params=(Param("node_name", "path", True),),
    ),
    _c(
        "GET",
        "/customnode/disabled_versions/{node_name}",
        cl.disabled_versions,
        _D.READ,
        "classicDisabledVersions",
        "[{version}] of disabled copies",
        response="json",
        params=(Param("node_name", "path", True),),
    ),
    _c(
        "GET",
        "/customnode/installed",
        cl.installed,
        _D.READ,
        "classicInstalled",
        "{dir: {ver, cnr_id, aux_id, enabled}}",
        response="json",
        params=(Param("mode", enum=("default", "imported")),),
    ),
    _c(
        "POST",
        "/customnode/fetch_updates",
        cl.fetch_updates,
        _D.CACHE_REFRESH,
        "classicFetchUpdates",
        "Revalidate channel data (no git fetch)",
        response="json",
    ),
    _c(
        "GET",
        "/customnode/get_node_types_in_workflows",
        cl.node_types_in_workflows,
        _D.READ,
        "classicWorkflowNodeTypes",
        "Node types per saved workflow of the user",
        response="json",
        params=(Param("comfy-user", "header"),),
        statuses=(204,),
    ),
    _c(
        "POST",
        "/customnode/install/git_url",
        cl.install_git_url,
        _D.INSTALL_GIT_URL,
        "classicInstallGitUrl",
        "Queue an install from a git URL (allow_git_url_install + loopback)",
        gate=False,
        body=_req(_obj(url="string"), "url"),
        result=TASK_RESULT,
    ),
    _c(
        "POST",
        "/customnode/install/pip",
        cl.install_pip,
        _D.INSTALL_PIP,
        "classicInstallPip",
        "Queue a pip install (allow_pip_install + loopback; URLs also allow_external_pip)",
        gate=False,
        body=_req(_obj(packages="string", index_url="string"), "packages"),
        result=TASK_RESULT,
    ),
    *(
        _c(
            "POST",
            f"/manager/queue/{kind}",
            cl.queue_route(kind),
            BY_NAME[kind].operation,
            f"classicQueue_{kind}",
            f"Queue {kind} (classic body; ui_id becomes the task id)",
            body=CLASSIC_ROW,
            result=TASK_RESULT,
        )
        for kind in ("install", "reinstall", "uninstall", "update", "fix", "disable")
    ),
    _c(
        "POST",
        "/manager/queue/install_model",
        cl.queue_route("install_model"),
        _D.INSTALL_MODEL,
        "classicQueue_install_model",
        "Queue a model download (must be in the channel's model list)",
        body=_obj(
            name="string",
            type="string",
            base="string",
            save_path="string",
            url="string",
            filename="string",
            ui_id="string",
        ),
        result=TASK_RESULT,
    ),
    _c(
        "POST",
        "/manager/queue/update_all",
        cl.queue_update_all,
        _D.UPDATE_ALL,
        "classicQueue_update_all",
        "Queue update-all (401 while tasks are queued or running)",
        body=_obj(mode="string"),
        result=TASK_RESULT,
    ),
    _c(
        "POST",
        "/manager/queue/start",
        cl.queue_start,
        _D.QUEUE_CONTROL,
        "classicQueueStart",
        "Start the worker: 200 started, 201 already running",
        statuses=(201,),
    ),
    _c("POST", "/manager/queue/reset", cl.queue_reset, _D.QUEUE_CONTROL, "classicQueueReset", "Cancel queued tasks"),
    _c(
        "GET",
        "/manager/queue/status",
        cl.queue_status,
        _D.READ,
        "classicQueueStatus",
        "{total_count, done_count, in_progress_count, is_processing, ...}",
        response="json",
        params=(Param("client_id"),),
    ),
    _c(
        "GET",
        "/snapshot/getlist",
        snap.classic_getlist,
        _D.READ,
        "classicSnapshotList",
        "{items: [names]}, newest first",
        response="json",
    ),
    _c(
        "GET",
        "/snapshot/get_current",
        snap.classic_get_current,
        _D.READ,
        "classicSnapshotCurrent",
        "The live state in the classic snapshot shape",
        response="json",
    ),
    _c("POST", "/snapshot/save", snap.classic_save, _D.SNAPSHOT_SAVE, "classicSnapshotSave", "Save <time>_snapshot"),
    _c(
        "POST",
        "/snapshot/restore",
        snap.classic_restore,
        _D.SNAPSHOT_RESTORE,
        "classicSnapshotRestore",
        "Restore a snapshot: at the next start inside ComfyUI (classic), queued now in the standalone server",
        body=_req(_obj(target="string"), "target"),
    ),
    _c(
        "POST",
        "/snapshot/remove",
        snap.classic_remove,
        _D.SNAPSHOT_REMOVE,
        "classicSnapshotRemove",
        "Delete a snapshot (200 also when absent)",
        body=_req(_obj(target="string"), "target"),
    ),
    _c(
        "POST",
        "/customnode/import_fail_info",
        start.classic_import_fail_info,
        _D.READ,
        "classicImportFailInfo",
        "{name, path, msg} of a pack that failed to import ({cnr_id} or {url})",
        body=_obj(cnr_id="string", url="string"),
        response="json",
    ),
    _c(
        "GET",
        "/externalmodel/getlist",
        cl.external_models,
        _D.READ,
        "classicModelList",
        "{models: [... installed: 'True'|'False']}",
        response="json",
        params=(CLASSIC_MODE,),
    ),
    _c(
        "GET",
        "/manager/channel_url_list",
        cl.get_channel_list,
        _D.READ,
        "classicChannelList",
        "{selected, list: ['name::url']}",
        response="json",
    ),
    _c(
        "POST",
        "/manager/channel_url_list",
        cl.post_channel_list,
        _D.CHANNEL_SELECT,
        "classicChannelSelect",
        "Select a channel by name ({value})",
        gate=False,
        body=VALUE,
    ),
    _c("GET", "/manager/db_mode", _get_db, _D.READ, "classicGetDbMode", "db_mode as text", response="text"),
    _c("POST", "/manager/db_mode", _set_db, _D.CONFIG_WRITE, "classicSetDbMode", "Save db_mode ({value})", body=VALUE),
    _c(
        "GET",
        "/manager/policy/update",
        _get_upd,
        _D.READ,
        "classicGetUpdatePolicy",
        "update_policy as text",
        response="text",
    ),
    _c(
        "POST",
        "/manager/policy/update",
        _set_upd,
        _D.CONFIG_WRITE,
        "classicSetUpdatePolicy",
        "Save update_policy ({value})",
        body=VALUE,
    ),
    _c(
        "GET",
        "/manager/policy/component",
        _get_comp,
        _D.READ,
        "classicGetComponentPolicy",
        "component_policy as text",
        response="text",
    ),
    _c(
        "POST",
        "/manager/policy/component",
        _set_comp,
        _D.CONFIG_WRITE,
        "classicSetComponentPolicy",
        "Save component_policy ({value})",
        body=VALUE,
    ),
    _c("GET", "/manager/version", cl.version, _D.READ, "classicVersion", "'V<version>' as text", response="text"),
    _c("POST", "/manager/reboot", admin.reboot, _D.REBOOT, "classicReboot", "Restart ComfyUI (answers first)"),
    _c(
        "GET",
        "/manager/notice",
        cl.notice,
        _D.READ,
        "classicNotice",
        "A local status notice (no network)",
        response="html",
    ),
    _c(
        "GET",
        "/manager/startup_alerts",
        cl.startup_alerts,
        _D.READ,
        "classicStartupAlerts",
        "[{message, level}] from loading config.ini",
        response="json",
    ),
    _c(
        "GET",
        "/manager/is_legacy_manager_ui",
        cl.is_legacy_ui,
        _D.READ,
        "classicIsLegacyUi",
        "{is_legacy_manager_ui: false}",
        response="json",
    ),
    # --- the rest of what the classic panel's JS calls (handlers_classic_ui.py) ------------------
    _c(
        "GET",
        "/manager/queue/reset",
        cl.queue_reset,
        _D.QUEUE_CONTROL,
        "classicQueueResetGet",
        "Cancel queued tasks (the classic JS calls it with GET too; cross-site guarded like a POST)",
    ),
    _c(
        "GET",
        "/manager/queue/start",
        cl.queue_start,
        _D.QUEUE_CONTROL,
        "classicQueueStartGet",
        "Start the worker (the classic JS calls it with GET too): 200 started, 201 already running",
        statuses=(201,),
    ),
    _c(
        "GET",
        "/manager/share_option",
        ui.share_option,
        _D.CONFIG_WRITE,
        "classicShareOption",
        "share_option as text; ?value= saves it first (the classic setter, guarded like a POST)",
        gate=False,
        setter="value",
        response="text",
        params=(Param("value", enum=("none", "openart", "youml", "matrix", "comfyworkflows", "copus", "all")),),
    ),
    _c(
        "GET",
        "/manager/preview_method",
        ui.get_preview_method,
        _D.READ,
        "classicGetPreviewMethod",
        "The preview method as text; DISABLED where ComfyUI has its own per-queue setting",
        response="text",
    ),
    _c(
        "POST",
        "/manager/preview_method",
        ui.set_preview_method,
        _D.CONFIG_WRITE,
        "classicSetPreviewMethod",
        "Save preview_method ({value}) and apply it now; 403 where ComfyUI owns the setting",
        body=_req(_obj(value={"type": "string", "enum": list(ui.PREVIEW_METHODS)}), "value"),
    ),
    _c(
        "POST",
        "/manager/component/loads",
        ui.component_loads,
        _D.READ,
        "classicComponentLoads",
        "{name: component} of every saved component (.json files, then .pack files)",
        response="json",
    ),
    _c(
        "POST",
        "/manager/component/save",
        ui.component_save,
        _D.USER_DATA_WRITE,
        "classicComponentSave",
        "Save one component ({name, workflow}); answers the file's path as text",
        response="text",
        body=_req(_obj(name="string", workflow={"type": "object"}), "name", "workflow"),
    ),
    _c(
        "GET",
        "/manager/get_openart_auth",
        ui.get_openart_auth,
        _D.READ,
        "classicGetOpenartAuth",
        "{openart_key} (empty when none is saved)",
        response="json",
    ),
    _c(
        "POST",
        "/manager/set_openart_auth",
        ui.set_openart_auth,
        _D.USER_DATA_WRITE,
        "classicSetOpenartAuth",
        "Save the OpenArt key ({openart_key})",
        body=_obj(openart_key="string"),
    ),
    _c(
        "GET",
        "/manager/get_matrix_auth",
        ui.get_matrix_auth,
        _D.READ,
        "classicGetMatrixAuth",
        "{homeserver, username, password}: always empty (Matrix sharing is not done here)",
        response="json",
    ),
    _c(
        "GET",
        "/manager/get_comfyworkflows_auth",
        ui.get_comfyworkflows_auth,
        _D.READ,
        "classicGetComfyworkflowsAuth",
        "{comfyworkflows_sharekey}: always empty (not shared from here)",
        response="json",
    ),
    _c(
        "GET",
        "/manager/youml/settings",
        ui.get_youml_settings,
        _D.READ,
        "classicGetYoumlSettings",
        "The saved YouML settings object ({} when none)",
        response="json",
    ),
    _c(
        "POST",
        "/manager/youml/settings",
        ui.set_youml_settings,
        _D.USER_DATA_WRITE,
        "classicSetYoumlSettings",
        "Save the YouML settings object",
        body={"type": "object"},
    ),
    _c(
        "POST",
        "/manager/set_esheep_workflow_and_images",
        ui.set_esheep,
        _D.USER_DATA_WRITE,
        "classicSetEsheep",
        "Keep the workflow and images handed to esheep",
        body={"type": "object"},
    ),
    _c(
        "GET",
        "/manager/get_esheep_workflow_and_images",
        ui.get_esheep,
        _D.READ,
        "classicGetEsheep",
        "The workflow and images last handed to esheep ({} before any)",
        response="json",
    ),
    _c(
        "POST",
        "/manager/share",
        ui.share,
        _D.READ,
        "classicShare",
        "Upload a workflow to comfyworkflows/Matrix: not done here (not_implemented, 501)",
        body={"type": "object"},
        statuses=(501,),
    ),
    _c(
        "POST",
        "/manager/queue/update_comfyui",
        ui.queue_update_comfyui,
        _D.READ,
        "classicQueueUpdateComfyui",
        "Update ComfyUI itself: not done here (not_implemented, 501)",
        statuses=(501,),
    ),
    _c(
        "GET",
        "/comfyui_manager/comfyui_versions",
        v2r.comfyui_versions,
        _D.READ,
        "classicComfyuiVersions",
        "{versions, current}: the local ComfyUI clone's tags (no git fetch); switching is not done here",
        response="json",
    ),
    _c(
        "POST",
        "/comfyui_manager/comfyui_switch_version",
        ui.comfyui_switch_version,
        _D.READ,
        "classicComfyuiSwitchVersion",
        "Switch ComfyUI's version: not done here (not_implemented, 501)",
        body=_obj(ver="string"),
        statuses=(501,),
    ),
    _c(
        "POST",
        "/customnode/toggle_active",
        ui.toggle_active,
        _D.ENABLE,
        "classicToggleActive",
        "Enable a disabled pack (cm-api.js; queued and started)",
        gate=False,
        body=CLASSIC_ROW,
        result=TASK_RESULT,
    ),
    _c(
        "POST",
        "/customnode/install",
        ui.install_row,
        _D.INSTALL,
        "classicInstallRow",
        "Install the pack of a catalog row (cm-api.js; queued and started)",
        gate=False,
        body=CLASSIC_ROW,
        result=TASK_RESULT,
    ),
    # --- the ComfyUI-Manager 4.x family under /v2 (v2_routes.py), mounted where free like classic --
    *v2r.v2_routes(_c, Param),
)


def _gate(api: HttpDoor, operation: str) -> Callable[[web.Request], None]:
    def before(_request: web.Request) -> None:
        api.require(operation)

    return before


def audited(route: Route) -> bool:
    """Routes that may change state: every one whose operation is not a read (POSTs, and the GETs
    the classic UI uses as writes); each such request is recorded in the audit log."""
    return route.operation != sec.READ


def _changes(route: Route, request: web.Request) -> bool:
    return changes_state(request.method, route.operation, sec.READ, setter=route.setter, request=request)


def _screen(guard: RequestGuard, route: Route) -> Callable[[web.Request], None]:
    """The door's request guard for one route: Host always, cross-site checks when it writes."""

    def screen(request: web.Request) -> None:
        guard.check(request, changes=_changes(route, request))

    return screen


def _observer(api: HttpDoor, route: Route) -> Observer:
    """The audit hook of one route: opens the request's note, writes its line at the end."""

    def observe(request: web.Request) -> Callable[[int, str], None]:
        if not _changes(route, request):
            return lambda _status, _code: None  # a plain read of a route that can also write
        started = time.perf_counter()
        api.begin_request(request.remote, request.headers.get("User-Agent"))

        def finish(status: int, code: str) -> None:
            note = api.end_request()
            if not note.get("targets") and request.match_info:
                note["targets"] = [str(v) for v in request.match_info.values()]
            api.audit_request(
                method=request.method,
                route=route.path,
                operation=route.operation,
                status=status,
                code=code,
                seconds=time.perf_counter() - started,
                remote=request.remote,
                user_agent=request.headers.get("User-Agent"),
                note=note,
            )

        return finish

    return observe


def route_defs(api: HttpDoor, routes: tuple[Route, ...] = ROUTES, *, legacy: bool = True) -> list[web.RouteDef]:
    """aiohttp RouteDefs of ``routes`` bound to ``api`` (bare paths; hosts add the ``/api`` mirror)."""
    out: list[web.RouteDef] = []
    guard = RequestGuard(api.listen, lambda: api.manager.config["allowed_hosts"])
    for r in routes:
        if r.legacy and not legacy:
            continue
        before = _gate(api, r.operation) if r.gate and r.operation != sec.READ else None
        handler = guarded(
            functools.partial(r.handler, api),
            label=r.name,
            before=before,
            observe=_observer(api, r) if audited(r) else None,
            screen=_screen(guard, r),
        )
        out.append(web.route(r.method, r.path, handler))
    return out


def with_api_mirror(defs: list[web.RouteDef]) -> list[web.RouteDef]:
    """Each route twice, under ``/api`` first and bare, the way ComfyUI mounts extension routes."""
    return [web.route(d.method, "/api" + d.path, d.handler) for d in defs] + list(defs)
