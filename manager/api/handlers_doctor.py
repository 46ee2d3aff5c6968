"""``GET /offline-manager/v1/doctor``: the pre-deploy checklist (``manager/doctor.py``) as data.

The checks run programs and read the disk, so they run off the event loop (``asyncio.to_thread``).
``?online=true`` also probes remote channels, through the network gate (never in offline mode).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..errors import RequestInvalid
from .door import HttpDoor
from .envelope import ok

_TRUE = ("1", "true", "yes")
_FALSE = ("", "0", "false", "no")


async def get_doctor(api: HttpDoor, request: web.Request) -> web.Response:
    raw = request.query.get("online", "").strip().lower()
    if raw not in _TRUE + _FALSE:
        raise RequestInvalid(
            f"online={raw!r} is not true or false",
            hint="Send online=true or leave it out (cm-cli.py doctor --online does the same).",
            details={"field": "online"},
        )
    from ..doctor import run_checks  # on the first request: mounting the routes stays cheap for ComfyUI's start

    report = await asyncio.to_thread(run_checks, api.manager, online=raw in _TRUE, listen=api.listen)
    return ok(report.to_dict())
