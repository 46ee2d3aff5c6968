"""The classic ComfyUI-Manager paths, parameters and success shapes, on the same core.

Scripts written for the classic manager keep working: same methods, same query/body keys,
same answers on success (bare JSON or text). Failures answer the shared error envelope with a
coded error instead of a bare 500 or a text 403. Differences are deliberate and listed in
docs/api.md (no git work in list handlers, risk denials are 403 not 404, reinstall answers).
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import __version__
from ..errors import ManagerError, NotFound, QueueBusy, RequestInvalid
from .door import DB_MODES, HttpDoor, installed_map
from .envelope import dumps, error_response, field, ok, query, raw_json, read_json
from .handlers_admin import _channels_data, select_channel
from .handlers_catalog import body_response, model_listing, optional_view, registry_versions
from .handlers_queue import ensure_idle

if TYPE_CHECKING:
    from ..context import CatalogView
    from ..kinds import PlannedTask

CLASSIC_MODES = tuple(DB_MODES)


def _mode(request: web.Request) -> str:
    return query(request, "mode", default="cache", choices=CLASSIC_MODES) or "cache"


def _text(value: str, *, status: int = 200, content_type: str = "text/plain") -> web.Response:
    return web.Response(text=value, status=status, content_type=content_type)


# --- catalog reads -------------------------------------------------------------------------------
async def getlist(api: HttpDoor, request: web.Request) -> web.Response:
    """``{"channel", "node_packs": {id: pack}}``; ``skip_update`` is accepted and no git ever runs."""
    mode = _mode(request)
    if mode in ("cache", "local") and api.loaded_view is None:  # the first request after a start
        first = await api.listing.first_packs("classic")
        if first is not None:
            return body_response(request, first)
    view = await api.view(mode)
    return body_response(request, await api.listing.packs("classic", view))


def mappings_bytes(view: CatalogView) -> bytes:
    out: dict[str, Any] = {}
    cat = view.catalog
    for pack in cat.packs:
        names = list(cat.node_types(pack.id))
        if not names and not pack.nodename_pattern:
            continue
        meta: dict[str, Any] = {"title_aux": pack.title}
        if pack.nodename_pattern:
            meta["nodename_pattern"] = pack.nodename_pattern
        if pack.preemptions:
            meta["preemptions"] = list(pack.preemptions)
        key = pack.id if pack.install_type == "cnr" else (pack.reference or (pack.files[0] if pack.files else pack.id))
        out[key] = [names, meta]
    return dumps(out)


async def getmappings(api: HttpDoor, request: web.Request) -> web.Response:
    mode = _mode(request)
    view = await api.view("local" if mode == "nickname" else mode)
    return body_response(request, await api.listing.per_catalog("mappings", view, mappings_bytes))


def alternatives_bytes(view: CatalogView) -> bytes:
    out = {}
    for item in view.catalog.alternatives():
        row = dict(item, description=html.escape(item.get("description", "")))
        out[item["id"]] = row
    return dumps(out)


async def alternatives(api: HttpDoor, request: web.Request) -> web.Response:
    view = await api.view(_mode(request))
    return body_response(request, await api.listing.per_catalog("alternatives", view, alternatives_bytes))


async def versions(api: HttpDoor, request: web.Request) -> web.Response:
    name = request.match_info["node_name"]
    view = await optional_view(api)
    pack = view.catalog.get(name) if view else None
    return raw_json(await registry_versions(api, (pack.cnr_id or pack.id) if pack else name))


async def disabled_versions(api: HttpDoor, request: web.Request) -> web.Response:
    name = request.match_info["node_name"]
    _key, inv = await api.inventory()
    out = []
    for pack in inv.find(name):
        if not pack.enabled:
            out.append(
                {"version": "nightly" if pack.kind == "git" else (pack.cnr_version or pack.version or "unknown")}
            )
    if not out:
        raise NotFound(
            f"no disabled copy of {name!r}",
            details={"node_name": name},
            hint="Only packs disabled in custom_nodes/.disabled (or *.disabled) have disabled versions.",
        )
    return raw_json(out)


async def installed(api: HttpDoor, request: web.Request) -> web.Response:
    mode = query(request, "mode", default="default", choices=("default", "imported"))
    await optional_view(api)  # matched against the catalog when there is one; never needed
    if mode == "imported":
        return raw_json(dict(await api.imported()))
    _key, inv = await api.inventory()
    return raw_json(installed_map(inv))


async def fetch_updates(api: HttpDoor, request: web.Request) -> web.Response:
    """Revalidates the channel data through the gate; never runs git (status 200: nothing pending)."""
    view = await api.view("remote")
    return raw_json({"channel": view.channel.name, "notices": [n.to_dict() for n in view.notices]})


def _workflow_types(folder: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(folder.rglob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        nodes = doc.get("nodes") if isinstance(doc, dict) else None
        if not isinstance(nodes, list):
            continue
        seen: dict[str, dict[str, Any]] = {}
        for node in nodes:
            if isinstance(node, dict) and isinstance(node.get("type"), str):
                entry: dict[str, Any] = {"type": node["type"]}
                found = node.get("properties")
                props: dict[str, Any] = found if isinstance(found, dict) else {}
                if isinstance(props.get("cnr_id"), str):
                    entry["cnr_id"] = props["cnr_id"]
                if isinstance(props.get("ver"), str):
                    entry["ver"] = props["ver"]
                seen.setdefault(json.dumps(entry, sort_keys=True), entry)
        out.append({"workflow_file_name": str(path.relative_to(folder)), "node_types": list(seen.values())})
    return out


async def node_types_in_workflows(api: HttpDoor, request: web.Request) -> web.Response:
    user = request.headers.get("comfy-user") or "default"
    if not user or any(c in user for c in "/\\\0") or user in (".", ".."):
        raise RequestInvalid(
            f"invalid comfy-user {user!r}",
            details={"header": "comfy-user"},
            hint="The comfy-user header names one user folder (no path separators).",
        )
    folder = api.manager.layout.user_dir / user / "workflows"
    if not folder.is_dir():
        return web.Response(status=204)
    return raw_json(await asyncio.to_thread(_workflow_types, folder))


async def external_models(api: HttpDoor, request: web.Request) -> web.Response:
    view = await api.view(_mode(request))

    def build(v: CatalogView) -> bytes:
        rows = []
        for item in model_listing(api, v).items:
            row = item.entry.to_dict()
            row.pop("channel", None)
            row.update(description=html.escape(item.entry.description), installed="True" if item.installed else "False")
            rows.append(row)
        return dumps({"models": rows})

    return body_response(request, await api.listing.models("classic-models", view, build))


# --- queue ------------------------------------------------------------------------------------------
def _files0(body: dict[str, Any]) -> str:
    files = body.get("files")
    if isinstance(files, list) and files and isinstance(files[0], str):
        return files[0]
    return ""


async def _classic_install_task(
    api: HttpDoor, view: CatalogView | None, body: dict[str, Any], kind: str, *, enforce: bool = True
) -> PlannedTask:
    version = body.get("version")
    selected = body.get("selected_version")
    ui_id = body.get("ui_id") if isinstance(body.get("ui_id"), str) and body.get("ui_id") else None
    if version != "unknown" and selected == "unknown":
        raise RequestInvalid(
            "Invalid installation request: a known pack with selected_version 'unknown'",
            hint="Send selected_version = latest, nightly or a version number.",
        )
    if version == "unknown":
        url = _files0(body)
        if not url:
            raise RequestInvalid(
                "an unknown pack needs its git URL in files[0]",
                details={"field": "files"},
                hint="Give the repository URL as files[0], or install through /customnode/install/git_url.",
            )
        from ..kinds.classify import url_params  # the task table loads on first use, not at mount

        return api.plan(kind, url, url_params(url), view=view, task_id=ui_id, enforce=enforce)
    pack_id = field(body, "id")
    params = {"version": selected or "latest", "skip_deps": bool(body.get("skip_post_install"))}
    if kind == "install" and params["skip_deps"]:
        _key, inv = await api.inventory()
        copies = inv.find(pack_id)
        if copies and not any(p.enabled for p in copies):  # the classic "enable" fast path, queued
            return api.plan("enable", pack_id, view=view, task_id=ui_id, enforce=enforce)
    return api.plan(kind, pack_id, params, view=view, task_id=ui_id, enforce=enforce)


def model_lookup(body: Mapping[str, Any]) -> dict[str, Any]:
    """The lookup keys of a classic model row (the rest of the row is display data)."""
    return {k: body[k] for k in ("url", "filename", "save_path", "base") if isinstance(body.get(k), str)}


def _classic_target(body: dict[str, Any]) -> str:
    if body.get("version") == "unknown" and _files0(body):
        name = _files0(body).rstrip("/").rsplit("/", 1)[-1]
        return name[:-4] if name.endswith(".git") else name
    return str(field(body, "id"))


async def plan_classic_row(
    api: HttpDoor, view: CatalogView | None, kind: str, body: dict[str, Any], *, enforce: bool = True
) -> PlannedTask:
    """One classic catalog row (``/manager/queue/<kind>``, the 4.x legacy batch) as a planned task
    (``enforce=False`` for a dry run: a denial becomes the plan's blocker)."""
    ui_id = body.get("ui_id") if isinstance(body.get("ui_id"), str) and body.get("ui_id") else None
    if kind in ("install", "reinstall"):
        return await _classic_install_task(api, view, body, kind, enforce=enforce)
    if kind == "install_model":
        return api.plan(
            kind, str(body.get("filename") or ""), model_lookup(body), view=view, task_id=ui_id, enforce=enforce
        )
    from ..kinds.classify import SEMVER_RE

    version = body.get("version")
    # the installed version picks the copy to uninstall; update/fix/disable take no version
    params = (
        {"version": version} if kind == "uninstall" and isinstance(version, str) and SEMVER_RE.match(version) else {}
    )
    return api.plan(kind, _classic_target(body), params, view=view, task_id=ui_id, enforce=enforce)


def dry_run_asked(request: web.Request) -> bool:
    """The ``dry_run`` query parameter of the classic and /v2 queue routes (``true``/``1`` or
    ``false``/``0``; absent: false)."""
    value = request.query.get("dry_run", "").strip().lower()
    if value in ("", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise RequestInvalid(
        f"query parameter dry_run={value!r} is not true or false",
        details={"parameter": "dry_run"},
        hint="Send ?dry_run=true for the plan only (nothing is queued), or leave it out.",
    )


async def plans_of(api: HttpDoor, planned: list[PlannedTask], **extra: Any) -> list[dict[str, Any]]:
    """The shared plan record (``manager.plans``) of each planned task, off the loop; ``extra``
    keys are added to each (a door's own names for the task)."""
    from ..kinds.planner import preview_plan

    out = []
    for p in planned:
        plan = await asyncio.to_thread(preview_plan, api.manager, p)
        out.append({**plan, **extra})
    return out


def queue_route(kind: str) -> Callable[[HttpDoor, web.Request], Awaitable[web.Response]]:
    """The handler of ``POST /manager/queue/<kind>`` (classic body: a catalog row plus ui_id);
    ``?dry_run=true`` answers ``{dry_run, plans: [plan]}`` and queues nothing."""

    async def handler(api: HttpDoor, request: web.Request) -> web.Response:
        dry = dry_run_asked(request)
        body = await read_json(request)
        # only a model needs the catalog; pack operations work on an offline box without one
        view = await api.view() if kind == "install_model" else await optional_view(api)
        planned = await plan_classic_row(api, view, kind, body, enforce=not dry)
        if dry:
            ui_id = body.get("ui_id") if isinstance(body.get("ui_id"), str) else ""
            return ok({"dry_run": True, "plans": await plans_of(api, [planned], ui_id=ui_id)})
        (task,) = await api.submit([planned])
        return ok({"task": task})

    handler.__name__ = f"queue_{kind}"
    return handler


async def queue_update_all(api: HttpDoor, request: web.Request) -> web.Response:
    dry = dry_run_asked(request)
    body = await read_json(request, default={})
    mode = request.query.get("mode") or body.get("mode") or "default"
    view = await optional_view(api)
    if dry:  # a plan changes nothing: answered even while tasks run
        planned = api.plan("update_all", "all", {"mode": mode}, view=view, enforce=False)
        return ok({"dry_run": True, "plans": await plans_of(api, [planned])})
    try:
        ensure_idle(api)
    except QueueBusy as err:
        return error_response(err, status=401)  # the classic status for "busy"
    (task,) = await api.submit([api.plan("update_all", "all", {"mode": mode}, view=view)])
    return ok({"task": task})


async def queue_start(api: HttpDoor, request: web.Request) -> web.Response:
    started = api.queue.start()
    return ok({"started": started}, status=200 if started else 201)


async def queue_reset(api: HttpDoor, request: web.Request) -> web.Response:
    return ok({"cancelled": api.queue.reset()})


async def queue_status(api: HttpDoor, request: web.Request) -> web.Response:
    return raw_json(api.queue.status(request.query.get("client_id") or None))


# --- direct installs (flag-gated) -----------------------------------------------------------------
async def install_git_url(api: HttpDoor, request: web.Request) -> web.Response:
    body = await read_json(request)
    url = field(body, "url").strip()
    view = await optional_view(api)
    (task,) = await api.submit([api.plan("install_git_url", url, view=view)])
    api.queue.start()
    return ok({"task": task})


async def install_pip(api: HttpDoor, request: web.Request) -> web.Response:
    body = await read_json(request)
    packages = field(body, "packages", (str, list))
    specs = packages.split() if isinstance(packages, str) else [str(p).strip() for p in packages]
    specs = [s for s in specs if s]
    if not specs:
        raise RequestInvalid(
            "'packages' names no package", details={"field": "packages"}, hint='Send {"packages": "name1 name2"}.'
        )
    index = body.get("index_url") if isinstance(body.get("index_url"), str) else ""
    (task,) = await api.submit([api.plan("install_pip", "", {"packages": specs, "index_url": index})])
    api.queue.start()
    return ok({"task": task})


# --- settings ---------------------------------------------------------------------------------------
async def get_channel_list(api: HttpDoor, request: web.Request) -> web.Response:
    data = _channels_data(api)
    return raw_json({"selected": data["selected"], "list": api.manager.channels.as_strings()})


async def post_channel_list(api: HttpDoor, request: web.Request) -> web.Response:
    body = await read_json(request)
    await select_channel(api, field(body, "value"))
    return ok(None)


def setting_routes(
    key: str, aliases: dict[str, str] | None = None
) -> tuple[
    Callable[[HttpDoor, web.Request], Awaitable[web.Response]],
    Callable[[HttpDoor, web.Request], Awaitable[web.Response]],
]:
    """GET (text value) and POST ``{"value"}`` handlers of one classic setting route."""

    async def get(api: HttpDoor, request: web.Request) -> web.Response:
        return _text(str(api.manager.config[key]))

    async def post(api: HttpDoor, request: web.Request) -> web.Response:
        body = await read_json(request)
        value = field(body, "value")
        value = (aliases or {}).get(value, value)
        api.note(target=f"{key}={value}")
        await api.save_config({key: value})
        return ok({key: api.manager.config[key]})

    get.__name__, post.__name__ = f"get_{key}", f"set_{key}"
    return get, post


async def version(api: HttpDoor, request: web.Request) -> web.Response:
    return _text(f"V{__version__}")


async def notice(api: HttpDoor, request: web.Request) -> web.Response:
    """A local notice page (the classic scraped a web page; offline this never reaches out)."""
    cfg = api.manager.config
    lines = [
        f"<p>ComfyUI Offline Manager V{html.escape(__version__)} · network mode "
        f"<b>{html.escape(cfg['network_mode'])}</b> · security level {html.escape(cfg['security_level'])}</p>"
    ]
    try:
        view = await api.view()
        lines.append(
            f"<p>Channel {html.escape(view.channel.name)}: {len(view.catalog.packs)} packs, "
            f"{len(view.catalog.models)} models.</p>"
        )
        notices = [(n.level, n.message, n.hint) for n in view.notices]
    except ManagerError as err:
        notices = [("error", err.message, err.hint)]
    for level, message, hint in notices:
        lines.append(
            f'<p class="{html.escape(level)}">{html.escape(message)}'
            + (f" <i>{html.escape(hint)}</i>" if hint else "")
            + "</p>"
        )
    return _text("\n".join(lines), content_type="text/html")


async def startup_alerts(api: HttpDoor, request: web.Request) -> web.Response:
    cfg = api.manager.config
    alerts = [{"message": f"{p.message} {p.hint}".strip(), "level": "error"} for p in cfg.problems]
    alerts += [{"message": n, "level": "info"} for n in cfg.notes]
    from ..compromised import startup_alerts as compromise_alerts  # on use: mounting stays cheap

    alerts += await asyncio.to_thread(compromise_alerts, api.manager)  # installed packs on the list: warn only
    return raw_json(alerts)


async def is_legacy_ui(api: HttpDoor, request: web.Request) -> web.Response:
    return raw_json({"is_legacy_manager_ui": False})
