"""Offline bundles over HTTP (docs/bundles.md): check a bundle file the server can read, preview
what its import would add, and list the bundles imported here. The import itself is the
``bundle_import`` task kind, queued through ``POST /v1/queue`` like every change.

``verify`` and ``preview`` read a server-side file named by the request, so the route table gates
them like the import (``bundle_import``: middle level, loopback only); the path is checked by the
core (``bundles.source.bundle_source``: absolute, a regular readable file, no link or device).
Reading and hashing the archive blocks, so every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import RequestInvalid
from .door import HttpDoor
from .envelope import field, ok, read_json

_KEYS = ("path",)


async def _path(request: web.Request) -> str:
    body = await read_json(request)
    extra = sorted(set(body) - set(_KEYS))
    if extra:
        raise RequestInvalid(
            f"unknown field {extra[0]!r} in the request body",
            hint='Send {"path": "/absolute/path/to/site.bundle.tar"}; import it with POST /offline-manager/v1/queue '
            '{"kind": "bundle_import", "target": PATH}.',
            details={"field": extra[0], "allowed": list(_KEYS)},
        )
    return str(field(body, "path"))


def _signing(api: HttpDoor) -> dict[str, Any]:
    config = api.manager.config
    return {
        "require_signed_bundles": bool(config["require_signed_bundles"]),
        "allowed_signers": str(config["bundle_allowed_signers"] or ""),
    }


def _verify(api: HttpDoor, raw: str) -> dict[str, Any]:
    from ..bundles import verify_bundle
    from ..bundles.source import bundle_source

    report = verify_bundle(api.manager, bundle_source(raw))
    return {**report.to_dict(), "policy": _signing(api)}


def _stores(changes: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for c in changes:
        row = out.setdefault(str(c.get("store", "")), {"add": 0, "replace": 0, "same": 0})
        action = str(c.get("action", ""))
        row[action] = row.get(action, 0) + 1
    return out


def _preview(api: HttpDoor, raw: str) -> dict[str, Any]:
    from ..bundles import preview_import
    from ..bundles.source import bundle_source

    preview = preview_import(api.manager, bundle_source(raw))
    data = preview.to_dict()
    return {
        **data,
        "stores": _stores(data["changes"]),
        "plan": preview.to_plan().to_dict(),
        "policy": _signing(api),
    }


def _listing(api: HttpDoor) -> dict[str, Any]:
    from ..bundles import coverage

    data = coverage(api.manager).to_dict()
    return {**data, "count": len(data["bundles"]), "folder": str(Path(api.manager.layout.bundles_dir))}


async def verify_bundle(api: HttpDoor, request: web.Request) -> web.Response:
    raw = await _path(request)
    api.note(target=raw)
    return ok(await asyncio.to_thread(_verify, api, raw))


async def preview_bundle(api: HttpDoor, request: web.Request) -> web.Response:
    raw = await _path(request)
    api.note(target=raw)
    return ok(await asyncio.to_thread(_preview, api, raw))


async def list_bundles(api: HttpDoor, request: web.Request) -> web.Response:
    return ok(await asyncio.to_thread(_listing, api))
