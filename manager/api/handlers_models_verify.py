"""``GET /v1/models/verify``: the installed catalog models checked (size, sha256 from the model list),
digests from the hash cache, hashed now with ``sha256=true``. Hashing reads whole files, so it runs
in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .door import HttpDoor
from .envelope import ok, query


async def verify_models(api: HttpDoor, request: web.Request) -> web.Response:
    from ..models import verify_request

    with_sha256 = query(request, "sha256", default="false", choices=("true", "false", "1", "0")) in ("true", "1")
    return ok(await asyncio.to_thread(verify_request, api.manager, with_sha256=with_sha256))
