"""``mirror serve DIR``: a small read-only static server for a built mirror (small sites).

GET and HEAD only. A path is resolved with its links and must stay inside DIR (a link out of
it, ``..`` or an encoded ``%2e%2e`` answers 404); a folder redirects to its ``/`` form (as
nginx does, so relative links resolve) and answers its ``index.html``, never a listing. Files
go out with their content type and with range requests (resumable model downloads), through
aiohttp's ``FileResponse`` (sendfile, in the loop without blocking it).
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from .errors import MirrorNotBuilt
from .tree import MARKER, read_manifest

_TYPES = {
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".json": "application/json",
    ".safetensors": "application/octet-stream",
    ".html": "text/html; charset=utf-8",
}


def content_type(path: Path) -> str:
    for suffix, kind in _TYPES.items():
        if path.name.endswith(suffix):
            return kind
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def _resolve(root: Path, rel: str) -> tuple[Path, bool] | None:
    """``(real path, is a folder)`` of ``rel`` under ``root``; None when it leaves ``root`` or does
    not exist. A folder's path is its ``index.html`` (None without one: no listings)."""
    parts = [p for p in rel.split("/") if p]
    if any(p in (".", "..") or "\\" in p or "\x00" in p for p in parts):
        return None
    target = Path(os.path.realpath(root.joinpath(*parts)))
    if target != root and root not in target.parents:
        return None
    if target.is_dir():
        index = target / "index.html"
        return (index, True) if index.is_file() else None
    return (target, False) if target.is_file() else None


def make_app(folder: Path) -> web.Application:
    """The aiohttp application serving ``folder`` (a built mirror; ``MirrorNotBuilt`` otherwise)."""
    root = Path(os.path.realpath(folder))
    if read_manifest(root) is None:
        raise MirrorNotBuilt(f"{folder} is not a built mirror (no {MARKER})", details={"path": str(folder)})

    async def handle(request: web.Request) -> web.StreamResponse:
        found = await asyncio.to_thread(_resolve, root, request.match_info["tail"])
        if found is None:
            raise web.HTTPNotFound()
        target, folder = found
        if folder and not request.path.endswith("/"):  # as nginx does: relative links then resolve
            query = f"?{request.query_string}" if request.query_string else ""
            raise web.HTTPMovedPermanently(request.rel_url.path + "/" + query)
        return web.FileResponse(target, headers={"Content-Type": content_type(target)})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)  # and HEAD; any other method is 405
    return app


async def serve(folder: Path, *, host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve until cancelled; ``ready`` gets the URL once the socket listens."""
    runner = web.AppRunner(make_app(folder), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port  # --port 0: the port the OS chose
    ready(f"http://{host}:{bound}/")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
