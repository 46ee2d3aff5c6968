"""The rest of what the classic panel's own JS calls: share option, preview method, components,
share-dialog keys, ComfyUI self-update, and the ``cm-api.js`` install requests.

Shapes follow the classic manager (docs/api.md lists each route and every deliberate
difference). What the Offline Manager does not do, it says with a coded error instead of a 404:
sharing a workflow through the server (``/manager/share``) and updating ComfyUI itself.
Files live in the manager folder under the classic names (docs/decisions.md), so a classic
manager sharing that folder sees the same components and keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import security as sec
from ..errors import NotImplementedYet, RequestInvalid
from ..fsops import atomic_write_bytes, atomic_write_json
from .door import HttpDoor
from .envelope import error_response, field, ok, raw_json, read_json
from .handlers_catalog import optional_view

COMPONENTS_DIR = "components"
OPENART_FILE = ".openart_key"
YOUML_FILE = ".youml"
ESHEEP_FILE = "esheep_share_message.json"
PREVIEW_METHODS = ("auto", "latent2rgb", "taesd", "none")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_]")


def _text(value: str, *, status: int = 200) -> web.Response:
    return web.Response(text=value, status=status, content_type="text/plain")


def _manager_file(api: HttpDoor, name: str) -> Path:
    return api.manager.layout.manager_dir / name


def _read(path: Path) -> bytes | None:
    try:
        if path.is_symlink():  # our folders never follow links (a planted link could leak a file)
            return None
        return path.read_bytes()
    except OSError:
        return None


# --- share option ---------------------------------------------------------------------------------
async def share_option(api: HttpDoor, request: web.Request) -> web.Response:
    """Text ``share_option``; with ``?value=`` (the classic UI's setter, a GET) saves it first.

    The setter passed the cross-site guard (the route declares ``value`` as its setter) and asks
    the policy like every settings write."""
    value = request.query.get("value")
    if value is None:
        return _text(str(api.manager.config["share_option"]))
    api.require(sec.CONFIG_WRITE, details={"key": "share_option"})
    api.note(target=f"share_option={value}")
    await api.save_config({"share_option": value})
    return _text("")


# --- preview method -------------------------------------------------------------------------------
def _preview_host(api: HttpDoor) -> Any:
    host = api.manager.host
    return host if callable(getattr(host, "preview_method", None)) else None


async def get_preview_method(api: HttpDoor, request: web.Request) -> web.Response:
    """The live method inside ComfyUI ("DISABLED" where ComfyUI has its own per-queue setting),
    else the saved ``preview_method``."""
    host = _preview_host(api)
    if host is not None:
        if host.native_preview():
            return _text("DISABLED")
        live = host.preview_method()
        if live:
            return _text(live)
    return _text(str(api.manager.config["preview_method"]))


async def set_preview_method(api: HttpDoor, request: web.Request) -> web.Response:
    body = await read_json(request)
    value = field(body, "value")
    if value not in PREVIEW_METHODS:
        raise RequestInvalid(
            f"preview method {value!r} is not one of {', '.join(PREVIEW_METHODS)}",
            hint='Send {"value": "auto"} (or latent2rgb, taesd, none).',
            details={"field": "value", "allowed": list(PREVIEW_METHODS)},
        )
    host = _preview_host(api)
    if host is not None and host.native_preview():
        err = NotImplementedYet(
            "this ComfyUI sets the preview method itself; the Manager's setting does nothing",
            hint="Use ComfyUI's Settings > Execution > Live preview method, or start it with --preview-method.",
        )
        return error_response(err, status=403)  # the classic answer the classic UI checks for
    api.note(target=f"preview_method={value}")
    await api.save_config({"preview_method": value})
    applied = bool(host is not None and host.set_preview_method(value))
    return ok({"preview_method": value, "applied": applied})


# --- components (workflow snippets) -------------------------------------------------------------
def _component_files(folder: Path) -> list[Path]:
    if not folder.is_dir() or folder.is_symlink():
        return []
    names = sorted(os.listdir(folder))
    # .json first, then .pack: a pack's copy wins a name both hold (classic order)
    return [
        folder / n
        for suffix in (".json", ".pack")
        for n in names
        if n.endswith(suffix) and not n.startswith(".") and not (folder / n).is_symlink()
    ]


def load_components(folder: Path) -> dict[str, Any]:
    """Every component of every file merged; unreadable files are skipped (logged by the caller)."""
    merged: dict[str, Any] = {}
    for path in _component_files(folder):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            merged.update(data)
    return merged


async def component_loads(api: HttpDoor, request: web.Request) -> web.Response:
    folder = _manager_file(api, COMPONENTS_DIR)
    return raw_json(await asyncio.to_thread(load_components, folder))


def component_file_name(name: str, workflow: dict[str, Any]) -> str:
    """``<packname>.pack`` when the workflow names a pack, else ``<name>.json``; every character
    outside [A-Za-z0-9_] becomes ``_`` (so no name can leave the folder)."""
    pack = workflow.get("packname")
    if isinstance(pack, str) and pack:
        return _UNSAFE_CHARS.sub("_", pack) + ".pack"
    return _UNSAFE_CHARS.sub("_", name) + ".json"


def save_component(folder: Path, name: str, workflow: dict[str, Any]) -> Path:
    if folder.is_symlink():
        raise RequestInvalid(
            f"{folder} is a symbolic link; components are not written through links",
            hint="Replace the link with a real folder.",
        )
    path = folder / component_file_name(name, workflow)
    existing: dict[str, Any] = {}
    raw = _read(path)
    if raw is not None:
        try:
            loaded = json.loads(raw)
            existing = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            existing = {}
    existing[name] = workflow
    atomic_write_json(path, existing, indent=4)
    return path


async def component_save(api: HttpDoor, request: web.Request) -> web.Response:
    """``{name, workflow}`` -> the file written, as text (the classic UI shows that path)."""
    body = await read_json(request)
    name = field(body, "name")
    workflow = field(body, "workflow", dict)
    api.note(target=name)
    path = await asyncio.to_thread(save_component, _manager_file(api, COMPONENTS_DIR), name, workflow)
    return _text(str(path))


# --- share dialog keys -------------------------------------------------------------------------
async def get_openart_auth(api: HttpDoor, request: web.Request) -> web.Response:
    """``{"openart_key"}``; empty when none is saved (classic: 404, which the UI reads as empty)."""
    raw = await asyncio.to_thread(_read, _manager_file(api, OPENART_FILE))
    return raw_json({"openart_key": raw.decode("utf-8", "replace").strip() if raw else ""})


async def set_openart_auth(api: HttpDoor, request: web.Request) -> web.Response:
    body = await read_json(request)
    key = field(body, "openart_key", str, required=False, default="")
    if any(c in key for c in "\r\n\0"):
        raise RequestInvalid(
            "openart_key must be one line",
            details={"field": "openart_key"},
            hint="Paste the key alone, without line breaks.",
        )
    await asyncio.to_thread(atomic_write_bytes, _manager_file(api, OPENART_FILE), key.encode("utf-8"), mode=0o600)
    return ok(None)


async def get_matrix_auth(api: HttpDoor, request: web.Request) -> web.Response:
    # Matrix sharing runs through /manager/share, which this Manager does not do: nothing is stored,
    # so no password is ever kept or handed back.
    return raw_json({"homeserver": "matrix.org", "username": "", "password": ""})


async def get_comfyworkflows_auth(api: HttpDoor, request: web.Request) -> web.Response:
    return raw_json({"comfyworkflows_sharekey": ""})


async def get_youml_settings(api: HttpDoor, request: web.Request) -> web.Response:
    raw = await asyncio.to_thread(_read, _manager_file(api, YOUML_FILE))
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    return raw_json(data if isinstance(data, dict) else {})


async def set_youml_settings(api: HttpDoor, request: web.Request) -> web.Response:
    body = await read_json(request)
    await asyncio.to_thread(
        atomic_write_bytes, _manager_file(api, YOUML_FILE), json.dumps(body).encode("utf-8"), mode=0o600
    )
    return ok(None)


async def set_esheep(api: HttpDoor, request: web.Request) -> web.Response:
    body = await read_json(request)
    await asyncio.to_thread(atomic_write_json, _manager_file(api, ESHEEP_FILE), body)
    return ok(None)


async def get_esheep(api: HttpDoor, request: web.Request) -> web.Response:
    """What was last handed to esheep; ``{}`` before anything was (classic: a 500)."""
    raw = await asyncio.to_thread(_read, _manager_file(api, ESHEEP_FILE))
    return web.Response(body=raw or b"{}", content_type="application/json")


async def share(api: HttpDoor, request: web.Request) -> web.Response:
    raise NotImplementedYet(
        "the Offline Manager does not upload workflows to comfyworkflows.com or Matrix",
        hint="Share from the service's own site, or use the OpenArt, YouML or esheep entries of the Share menu "
        "(they upload from the browser). Set share_option = none in config.ini to hide the Share button.",
    )


# --- ComfyUI itself ---------------------------------------------------------------------------------
def _comfyui_not_managed(what: str) -> NotImplementedYet:
    return NotImplementedYet(
        f"the Offline Manager does not {what}: it manages custom node packs and models, not ComfyUI",
        hint="Update ComfyUI with its own updater (ComfyUI Desktop, the portable update script) or git in the "
        "ComfyUI folder (git pull / git checkout <tag>), then restart it.",
    )


async def comfyui_switch_version(api: HttpDoor, request: web.Request) -> web.Response:
    raise _comfyui_not_managed("switch ComfyUI versions")


async def queue_update_comfyui(api: HttpDoor, request: web.Request) -> web.Response:
    raise _comfyui_not_managed("update ComfyUI")


# --- cm-api.js: another extension asked for a pack --------------------------------------------------
async def _row_task(api: HttpDoor, request: web.Request, kind: str) -> web.Response:
    body = await read_json(request)
    pack_id = body.get("id") if isinstance(body.get("id"), str) and body.get("id") else ""
    files = body.get("files")
    url = files[0] if isinstance(files, list) and files and isinstance(files[0], str) else ""
    if not pack_id and not url:
        raise RequestInvalid(
            "the request names no pack (neither 'id' nor 'files')",
            details={"field": "id"},
            hint="Send the catalog row of the pack, with its 'id' or its repository in 'files'.",
        )
    view = await optional_view(api)
    known = bool(view and pack_id and view.catalog.get(pack_id))
    if kind == "enable" or known:
        planned = api.plan(kind, pack_id or url, view=view)
    else:  # not in this catalog: its repository URL is classified (and gated) like any URL
        from ..kinds.classify import url_params  # the task table loads on first use, not at mount

        planned = api.plan(kind, url or pack_id, url_params(url) if url else {}, view=view)
    tasks = await api.submit([planned])
    api.queue.start()
    return ok({"task": tasks[0]})


async def toggle_active(api: HttpDoor, request: web.Request) -> web.Response:
    """Enable a disabled pack (queued; the classic JS then reboots ComfyUI)."""
    return await _row_task(api, request, "enable")


async def install_row(api: HttpDoor, request: web.Request) -> web.Response:
    """Install the pack of a catalog row (queued and started; the classic JS then reboots)."""
    return await _row_task(api, request, "install")
