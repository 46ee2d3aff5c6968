"""The trash, read: ``GET /offline-manager/v1/trash`` lists restorable entries (newest first).

Restoring and emptying are task kinds (``restore_trash``, ``empty_trash``) queued through
``POST /v1/queue`` like every other change; this route only reads, in a worker thread (the
sizes walk each entry's files).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .door import HttpDoor
from .envelope import ok


def _trash_data(api: HttpDoor) -> dict[str, Any]:
    from ..operations.remove import list_trash

    entries = [e.to_dict() for e in list_trash(api.manager.layout, with_size=True)]
    return {
        "entries": entries,
        "count": len(entries),
        "total_bytes": sum(int(e.get("size_bytes") or 0) for e in entries),
        "path": str(api.manager.layout.trash_dir),
    }


async def list_trash(api: HttpDoor, request: web.Request) -> web.Response:
    return ok(await asyncio.to_thread(_trash_data, api))
