"""The standalone server (``cm-cli.py serve``): the same route table, without ComfyUI.

Routes are mounted bare and under ``/api`` (as ComfyUI does), queue events go out on a ``/ws``
websocket in ComfyUI's ``{"type", "data"}`` framing, ``/js/`` serves the panel's modules and
``/`` a small page that loads them through the ``fetchApi`` shim of ``js/standalone.js``.
Listens on 127.0.0.1 unless told otherwise; a non-loopback address is reported and the policy
treats it as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web, web_protocol, web_server
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from .. import __version__
from ..errors import ManagerError, RequestInvalid, RequestTooLarge
from ..security import is_loopback_listen
from .door import HttpDoor
from .envelope import MAX_BODY_BYTES, error_middleware, error_response
from .event_forwarder import EventForwarder
from .origin import RequestGuard
from .routes import route_defs, with_api_mirror

if TYPE_CHECKING:
    from ..context import Manager

log = logging.getLogger("offline_manager.api")

JS_DIR = Path(__file__).resolve().parents[2] / "js"
# The page only loads js/standalone.js (the fetchApi shim and the panel); the shim is a module
# file so it is linted, cached and read like the rest of the panel, not kept in a Python string.
INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ComfyUI Offline Manager</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main id="offline-manager">Loading the Offline Manager…</main>
<script type="module">
import { startStandalone } from "/js/standalone.js";
await startStandalone(document.getElementById("offline-manager"));
</script></body></html>
"""


class SocketHub:
    """The ``/ws`` clients; ``sink`` may be called from any thread (the queue's worker)."""

    def __init__(self) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def sink(self, event: str, data: dict[str, Any], sid: str | None = None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._spawn, {"type": event, "data": data}, sid)

    def _spawn(self, message: dict[str, Any], sid: str | None) -> None:
        asyncio.ensure_future(self.send(message, sid))

    async def send(self, message: dict[str, Any], sid: str | None = None) -> None:
        targets = [self.sockets[sid]] if sid in self.sockets else ([] if sid else list(self.sockets.values()))
        for ws in targets:
            if ws.closed:
                continue
            try:
                await ws.send_json(message)
            except (ConnectionError, RuntimeError) as exc:  # a client that went away
                log.debug("websocket send failed: %s", exc)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        api = request.app[API_KEY]
        try:  # the socket carries task events: a foreign page or a rebound Host gets none
            RequestGuard(api.listen, lambda: api.manager.config["allowed_hosts"]).check(request, changes=True)
        except ManagerError as err:
            return error_response(err)
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        old = self.sockets.pop(sid, None)
        if old is not None:
            await old.close()
        self.sockets[sid] = ws
        pending = api.queue.status()["pending_count"]
        await ws.send_json(
            {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": pending}}, "sid": sid}}
        )
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and '"feature_flags"' in msg.data:
                    await ws.send_json({"type": "feature_flags", "data": {"offline_manager": __version__}})
        finally:
            if self.sockets.get(sid) is ws:
                del self.sockets[sid]
        return ws


async def _index(_request: web.Request) -> web.Response:
    return web.Response(text=INDEX_HTML, content_type="text/html", headers={"Cache-Control": "no-cache"})


API_KEY = web.AppKey("offline_manager_api", HttpDoor)
HUB_KEY = web.AppKey("offline_manager_hub", SocketHub)


def build_app(api: HttpDoor, *, js_dir: Path = JS_DIR, hub: SocketHub | None = None) -> web.Application:
    """The aiohttp app: table (bare + /api), /ws, /js/, the page at /. Events flow while it runs."""
    hub = hub or SocketHub()
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES * 8)
    app[API_KEY] = api
    app.router.add_routes(with_api_mirror(route_defs(api)))
    app.router.add_get("/ws", hub.handle)
    app.router.add_get("/api/ws", hub.handle)
    app.router.add_get("/", _index)
    if js_dir.is_dir():
        app.router.add_static("/js", js_dir, append_version=False)
    forwarder = EventForwarder(hub.sink)

    async def on_startup(app: web.Application) -> None:
        hub.bind(asyncio.get_running_loop())
        api.on_queue(forwarder.attach)

    async def on_cleanup(app: web.Application) -> None:
        forwarder.detach()
        api.detach()
        for ws in list(hub.sockets.values()):
            await ws.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app[HUB_KEY] = hub
    return app


# --- requests aiohttp cannot parse: our envelope, not its plain-text 400 -----------------------------
class _EnvelopeRequestHandler(web_protocol.RequestHandler):
    """aiohttp answers a request it cannot parse (a request line or header beyond its limits, a
    malformed line) before any route or middleware runs, in plain text. Here such a 4xx gets the
    error envelope every route answers with (same status, connection closed); 5xx stays aiohttp's."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or not isinstance(exc, HttpProcessingError) or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        log.debug("unreadable request from %s: %s", request.remote, exc)
        err = bad_request_error(exc)
        resp = error_response(err, status=status)
        resp.force_close()
        return resp


def bad_request_error(exc: HttpProcessingError) -> ManagerError:
    """The coded error for a request aiohttp refused while parsing it."""
    detail = (exc.message or str(exc)).strip()
    if len(detail) > 160:  # the refused line itself comes quoted: keep the answer short
        detail = detail[:160] + "…"
    if isinstance(exc, LineTooLong):
        return RequestTooLarge(
            f"the request line or a header is longer than this server reads: {detail}",
            hint="Keep the URL and each header under 8 KiB; send large inputs in a JSON body (up to 4 MiB).",
            details={"limit": "request line / header field"},
        )
    return RequestInvalid(
        f"the request is not valid HTTP: {detail}",
        hint="Send a well-formed HTTP/1.1 request (a method, a path, headers of 'Name: value').",
    )


class _EnvelopeServer(web_server.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        return _EnvelopeRequestHandler(self, loop=self._loop, **self._kwargs)


class EnvelopeAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer unparsable requests with the error envelope.

    Only the standalone server can do this: inside ComfyUI, ComfyUI owns the aiohttp server, and an
    oversized URL gets aiohttp's plain-text 400 from it before any of our code runs."""

    async def _make_server(self) -> web_server.Server:
        server = await super()._make_server()
        server.__class__ = _EnvelopeServer  # same object and state, only the connection factory differs
        return server


def prepare(manager: Manager, *, host: str = "127.0.0.1", extra_runners: Any = None) -> HttpDoor:
    """Build the HttpDoor for a standalone server listening on ``host``. ``extra_runners`` (tests, demos)
    replace the task table's runners of the same kinds."""
    if extra_runners:
        fixed = dict(extra_runners)
        manager.add_runners(lambda _m: fixed)
    return HttpDoor(manager, listen=host, restart=None, door="standalone")


async def serve(
    api: HttpDoor, *, host: str = "127.0.0.1", port: int = 8188, ready: Callable[[str], None] | None = None
) -> None:
    """Serve until cancelled; starts the task worker. ``ready(url)`` is called once listening."""
    app = build_app(api)
    runner = EnvelopeAppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        api.queue.start()
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}/"
        if not is_loopback_listen(host):
            log.warning(
                "listening on %s, which is not loopback: other machines can reach the Manager; risky "
                "operations are refused to peers outside trusted_networks ([security]), and git URL, pip, "
                "remote channels and network mode to every peer",
                host,
            )
        if ready is not None:
            ready(url)
        warm = asyncio.ensure_future(api.prewarm())  # the pack lists, shortly after the start
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signal handlers on Windows
            # SIGTERM (systemd, docker stop, kill) winds down like Ctrl+C: the worker stops, the port closes
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        warm.cancel()
    finally:
        api.manager.queue.stop(timeout=5)
        await runner.cleanup()
