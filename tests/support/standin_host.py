"""A stand-in for a running ComfyUI: the real frontend wheel, our extension loaded like ComfyUI does.

ComfyUI itself cannot be installed here. This host reproduces what our extension and the
browser touch (facts in ../shared/reference/comfyui-host.md §1.6, §2 and §6):

- stand-in ``server`` / ``folder_paths`` / ``comfyui_version`` / ``comfy.cli_args`` modules in
  ``sys.modules`` while the host runs, with ``PromptServer.instance`` (``routes``, ``app``,
  ``loop``, ``sockets``, ``send_sync``, ``send_json``) built before the extension is imported;
- the extension folder imported the way ``nodes.load_custom_node`` does (path-mangled module
  name, ``sys.modules`` entry before exec), on the server's event loop;
- ``add_routes()``: every ``RouteDef`` mirrored under ``/api`` (mirror first), the extension's
  ``WEB_DIRECTORY`` at ``/extensions/<folder name>/``, the frontend's ``static/`` last at ``/``;
- the four endpoints the frontend needs to boot (users, settings, object_info, extensions), the
  recommended ones, ``/ws`` with the ``status`` message, and ComfyUI's origin check.

Use: ``with StandInComfy(comfy_root) as host: page.goto(host.url("/"))``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import json
import sys
import threading
import types
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

REPO_ROOT = Path(__file__).resolve().parents[2]
FEATURE_FLAGS = {"supports_preview_metadata": True, "max_upload_size": 104857600}
DEFAULT_SETTINGS = {"Comfy.TutorialCompleted": True}  # keeps the first-run dialog off the canvas
MODEL_FOLDERS = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "hypernetworks",
    "photomaker",
    "classifiers",
)
_STAND_IN_MODULES = ("server", "folder_paths", "comfyui_version", "comfy", "comfy.cli_args")


def find_frontend_static() -> Path | None:
    """The ``static/`` folder of the installed ``comfyui-frontend-package`` wheel, or None."""
    spec = importlib.util.find_spec("comfyui_frontend_package")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(list(spec.submodule_search_locations)[0]) / "static"
    return static if (static / "index.html").is_file() else None


class StandInPromptServer:
    """The attributes of ``server.PromptServer.instance`` that extensions use (§2.1, §7)."""

    instance: StandInPromptServer

    def __init__(self, loop: asyncio.AbstractEventLoop, web_root: Path | None) -> None:
        StandInPromptServer.instance = self
        self.loop = loop
        self.routes = web.RouteTableDef()
        self.app = web.Application(client_max_size=100 * 1024 * 1024, middlewares=[_origin_only])
        self.messages: asyncio.Queue = asyncio.Queue()
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.sockets_metadata: dict[str, dict] = {}
        self.client_id: str | None = None
        self.client_session = None
        self.web_root = str(web_root) if web_root else ""
        self.supports = ["custom_nodes_from_web"]
        self.sent: list[tuple[str, Any, str | None]] = []  # every message pushed, for assertions

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        """Thread-safe, fire-and-forget, like ComfyUI's (delivered by the publish loop)."""
        self.loop.call_soon_threadsafe(self.messages.put_nowait, (event, data, sid))

    async def send_json(self, event: str, data: Any, sid: str | None = None) -> None:
        message = {"type": event, "data": data}
        self.sent.append((event, data, sid))
        targets = list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
        for ws in targets:
            try:
                await ws.send_json(message)
            except (ConnectionError, RuntimeError):  # a closing socket: ComfyUI logs and goes on
                continue

    async def send(self, event: str, data: Any, sid: str | None = None) -> None:
        await self.send_json(event, data, sid)

    async def publish_loop(self) -> None:
        while True:
            event, data, sid = await self.messages.get()
            await self.send(event, data, sid)

    def queue_updated(self) -> None:
        self.send_sync("status", {"status": {"exec_info": {"queue_remaining": 0}}})

    def add_on_prompt_handler(self, handler: Callable[[Any], Any]) -> None:
        """Accepted and ignored: the stand-in runs no prompts."""


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@web.middleware
async def _origin_only(request: web.Request, handler: Callable) -> web.StreamResponse:
    """ComfyUI's default origin check: a loopback Host must match the Origin's host (§2.5)."""
    host, origin = request.headers.get("Host"), request.headers.get("Origin")
    if host and origin and _is_loopback(host):
        origin_netloc = urllib.parse.urlparse(origin).netloc
        a, b = host, origin_netloc
        if ":" not in a or ":" not in b:
            a, b = a.rsplit(":", 1)[0], b.rsplit(":", 1)[0]
        if a != b:
            return web.Response(status=403)
    if request.method == "OPTIONS":
        return web.Response()
    return await handler(request)


def make_folder_paths(comfy_root: Path) -> types.ModuleType:
    """A ``folder_paths`` module over ``comfy_root`` with ComfyUI's built-in folder names (§3)."""
    fp = types.ModuleType("folder_paths")
    models = comfy_root / "models"
    fp.base_path = str(comfy_root)
    fp.models_dir = str(models)
    fp.supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
    table: dict[str, tuple[list[str], set[str]]] = {
        name: ([str(models / name)], set(fp.supported_pt_extensions)) for name in MODEL_FOLDERS
    }
    table["text_encoders"][0].append(str(models / "clip"))
    table["diffusion_models"][0].insert(0, str(models / "unet"))
    table["custom_nodes"] = ([str(comfy_root / "custom_nodes")], set())
    fp.folder_names_and_paths = table
    fp.output_directory = str(comfy_root / "output")
    fp.input_directory = str(comfy_root / "input")
    fp.temp_directory = str(comfy_root / "temp")
    fp.user_directory = str(comfy_root / "user")

    def get_folder_paths(name: str) -> list[str]:
        return list(fp.folder_names_and_paths[{"unet": "diffusion_models", "clip": "text_encoders"}.get(name, name)][0])

    def get_filename_list(name: str) -> list[str]:
        out: list[str] = []
        for folder in get_folder_paths(name):
            base = Path(folder)
            if base.is_dir():
                out += sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
        return out

    def get_full_path(name: str, filename: str) -> str | None:
        for folder in get_folder_paths(name):
            candidate = Path(folder) / filename
            if candidate.is_file():
                return str(candidate)
        return None

    def add_model_folder_path(name: str, path: str, is_default: bool = False) -> None:
        paths, exts = fp.folder_names_and_paths.setdefault(name, ([], set()))
        if path in paths:
            paths.remove(path)
        paths.insert(0, path) if is_default else paths.append(path)

    fp.get_folder_paths = get_folder_paths
    fp.get_filename_list = get_filename_list
    fp.get_full_path = get_full_path
    fp.add_model_folder_path = add_model_folder_path
    fp.get_user_directory = lambda: fp.user_directory
    fp.get_output_directory = lambda: fp.output_directory
    fp.get_input_directory = lambda: fp.input_directory
    fp.get_temp_directory = lambda: fp.temp_directory
    fp.get_system_user_directory = lambda name="system": str(Path(fp.user_directory) / f"__{name}")
    return fp


def _cli_args_module(port: int) -> tuple[types.ModuleType, types.ModuleType]:
    comfy = types.ModuleType("comfy")
    comfy.__path__ = []  # a package, so ``import comfy.cli_args`` resolves to the stand-in
    cli_args = types.ModuleType("comfy.cli_args")
    cli_args.args = types.SimpleNamespace(
        listen="127.0.0.1",
        port=port,
        enable_cors_header=None,
        max_upload_size=100,
        multi_user=False,
        enable_manager=False,
        disable_manager_ui=False,
        enable_manager_legacy_ui=False,
        disable_all_custom_nodes=False,
        whitelist_custom_nodes=[],
        base_directory=None,
        verbose="INFO",
        front_end_version="comfyanonymous/ComfyUI@latest",
        front_end_root=None,
        windows_standalone_build=False,
    )
    comfy.cli_args = cli_args
    return comfy, cli_args


def load_like_comfyui(folder: Path) -> types.ModuleType:
    """``nodes.load_custom_node``: path-mangled module name, ``sys.modules`` entry before exec."""
    name = str(folder).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class StandInComfy:
    """A ComfyUI-shaped aiohttp server on 127.0.0.1 in a background thread.

    ``comfy_root`` must hold ``custom_nodes/``, ``models/`` and ``user/``. ``pages`` adds extra
    static text routes (path -> (content type, body)) for test pages served same-origin.
    """

    def __init__(
        self,
        comfy_root: Path,
        *,
        extension_dir: Path = REPO_ROOT,
        static_dir: Path | None = None,
        settings: dict[str, Any] | None = None,
        pages: dict[str, tuple[str, str]] | None = None,
        load_extension: bool = True,
    ) -> None:
        self.comfy_root = Path(comfy_root)
        self.extension_dir = Path(extension_dir)
        self.static_dir = static_dir or find_frontend_static()
        self.settings: dict[str, Any] = {**DEFAULT_SETTINGS, **(settings or {})}
        self.pages = dict(pages or {})
        self.load_extension = load_extension
        self.extension_web_dirs: dict[str, Path] = {}
        self.extension_module: types.ModuleType | None = None
        self.server: StandInPromptServer | None = None
        self.requests: list[tuple[str, str]] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._publisher: asyncio.Task | None = None
        self._saved_modules: dict[str, types.ModuleType | None] = {}
        self._module_name = ""

    # -- public ---------------------------------------------------------------------------
    @property
    def extension_name(self) -> str:
        """The URL name ComfyUI gives our web dir: the extension folder's basename."""
        return self.extension_dir.name

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        assert self.server is not None
        self.server.send_sync(event, data, sid)

    def start(self) -> StandInComfy:
        if self.static_dir is None:
            raise RuntimeError("comfyui-frontend-package is not installed: pip install comfyui-frontend-package")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._boot())
            except BaseException as exc:  # handed to the caller of start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="standin-comfy", daemon=True)
        self._thread.start()
        if not ready.wait(60):
            raise RuntimeError("stand-in ComfyUI did not start within 60 s")
        if failure:
            self._restore_modules()
            raise failure[0]
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            started = getattr(self.server, "_offline_manager_started", None)
            api = started.get("api") if isinstance(started, dict) else None
            if api is not None:  # our worker thread: ComfyUI would end with the process
                await asyncio.to_thread(api.manager.queue.stop, timeout=10)
            if self.server:
                for ws in list(self.server.sockets.values()):
                    await ws.close()
            if self._runner:
                await self._runner.cleanup()
            if self._publisher is not None:  # ended here, not by a closed loop later
                self._publisher.cancel()
                await asyncio.gather(self._publisher, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(15)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread:
                self._thread.join(15)
            self._loop = None
            self._restore_modules()

    def __enter__(self) -> StandInComfy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- boot (runs on the server loop, like ComfyUI's start_comfyui) ----------------------
    async def _boot(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = StandInPromptServer(loop, self.static_dir)
        # PromptServer.add_routes, reached through the instance as main.py does, so an extension
        # that wraps the instance attribute at import time sees the call, as in ComfyUI
        self.server.add_routes = self._add_routes
        self._core_routes(self.server.routes)
        self._install_modules()
        if self.load_extension:
            self.extension_module = load_like_comfyui(self.extension_dir)
            web_dir = getattr(self.extension_module, "WEB_DIRECTORY", None)
            if web_dir is not None:
                path = (self.extension_dir / web_dir).resolve()
                if path.is_dir():
                    self.extension_web_dirs[self.extension_name] = path
        self.server.add_routes()
        self._runner = web.AppRunner(self.server.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._cli_args.args.port = self.port
        self._publisher = loop.create_task(self.server.publish_loop())

    def _install_modules(self) -> None:
        assert self.server is not None
        server_mod = types.ModuleType("server")
        server_mod.PromptServer = StandInPromptServer
        version = types.ModuleType("comfyui_version")
        version.__version__ = "0.8.0"
        comfy, self._cli_args = _cli_args_module(0)
        stand_ins = {
            "server": server_mod,
            "folder_paths": make_folder_paths(self.comfy_root),
            "comfyui_version": version,
            "comfy": comfy,
            "comfy.cli_args": self._cli_args,
        }
        self._module_name = str(self.extension_dir).replace(".", "_x_")
        for name, module in stand_ins.items():
            self._saved_modules[name] = sys.modules.get(name)
            sys.modules[name] = module

    def _restore_modules(self) -> None:
        for name, previous in self._saved_modules.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
        self._saved_modules.clear()
        if self._module_name:
            for key in [k for k in sys.modules if k == self._module_name or k.startswith(self._module_name + ".")]:
                del sys.modules[key]

    def _add_routes(self) -> None:
        """``PromptServer.add_routes``: the /api mirror first, then the originals, statics last."""
        assert self.server is not None
        app = self.server.app
        app.middlewares.append(self._record)
        api_routes = web.RouteTableDef()
        for route in self.server.routes:
            if isinstance(route, web.RouteDef):
                # exactly ComfyUI's copy (server.py add_routes): kwargs go to the inner decorator
                api_routes.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
        app.add_routes(api_routes)
        app.add_routes(self.server.routes)
        for name, folder in self.extension_web_dirs.items():
            app.add_routes([web.static("/extensions/" + urllib.parse.quote(name), folder)])
        for path, (content_type, body) in self.pages.items():
            app.router.add_get(path, self._page(content_type, body))
        assert self.static_dir is not None
        app.router.add_get("/", self._index)
        app.add_routes([web.static("/", self.static_dir)])

    @web.middleware
    async def _record(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        return await handler(request)

    @staticmethod
    def _page(content_type: str, body: str) -> Callable:
        async def page(_request: web.Request) -> web.Response:
            return web.Response(text=body, content_type=content_type, headers={"Cache-Control": "no-cache"})

        return page

    async def _index(self, _request: web.Request) -> web.FileResponse:
        assert self.static_dir is not None
        return web.FileResponse(self.static_dir / "index.html", headers={"Cache-Control": "no-cache"})

    # -- core routes the frontend needs (§6.2) ----------------------------------------------
    def _core_routes(self, routes: web.RouteTableDef) -> None:
        def fixed(value: Any) -> Callable:
            async def handler(_request: web.Request) -> web.Response:
                return web.json_response(value)

            return handler

        async def settings_get(_request: web.Request) -> web.Response:
            return web.json_response(self.settings)

        async def setting_post(request: web.Request) -> web.Response:
            self.settings[request.match_info["id"]] = await request.json()
            return web.Response()

        async def settings_post(request: web.Request) -> web.Response:
            self.settings.update(await request.json())
            return web.Response()

        async def extensions(_request: web.Request) -> web.Response:
            return web.json_response(self.extension_list())

        system_stats = {
            "system": {
                "os": "linux",
                "ram_total": 0,
                "ram_free": 0,
                "comfyui_version": "0.8.0",
                "required_frontend_version": "",
                "python_version": sys.version.split()[0],
                "pytorch_version": "",
                "embedded_python": False,
                "argv": ["main.py"],
            },
            "devices": [],
        }
        routes.get("/ws")(self._websocket)
        routes.get("/users")(fixed({"storage": "server", "migrated": True}))
        routes.get("/settings")(settings_get)
        routes.post("/settings")(settings_post)
        routes.post("/settings/{id}")(setting_post)
        routes.get("/object_info")(fixed({}))
        routes.get("/extensions")(extensions)
        routes.get("/system_stats")(fixed(system_stats))
        routes.get("/features")(fixed(FEATURE_FLAGS))
        routes.get("/i18n")(fixed({}))
        routes.get("/embeddings")(fixed([]))
        routes.get("/prompt")(fixed({"exec_info": {"queue_remaining": 0}}))
        routes.get("/queue")(fixed({"queue_running": [], "queue_pending": []}))
        routes.get("/history")(fixed({}))
        routes.get("/api/jobs")(
            fixed({"jobs": [], "pagination": {"offset": 0, "limit": 200, "total": 0, "has_more": False}})
        )
        routes.get("/userdata")(fixed([]))
        routes.get("/workflow_templates")(fixed({}))
        routes.get("/global_subgraphs")(fixed({}))
        routes.get("/experiment/models")(fixed([]))
        routes.get("/models")(fixed(list(MODEL_FOLDERS)))
        routes.get("/templates/index.json")(fixed([]))

    def extension_list(self) -> list[str]:
        """``GET /extensions``: the core shims plus every ``.js`` under each web dir, recursively."""
        out: list[str] = []
        if self.static_dir and (self.static_dir / "extensions").is_dir():
            core = self.static_dir / "extensions"
            out += ["/extensions/" + p.relative_to(core).as_posix() for p in sorted(core.rglob("*.js"))]
        for name, folder in self.extension_web_dirs.items():
            out += [
                "/extensions/" + urllib.parse.quote(name) + "/" + p.relative_to(folder).as_posix()
                for p in sorted(folder.rglob("*.js"))
            ]
        return out

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        assert self.server is not None
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.server.sockets[sid] = ws
        self.server.sockets_metadata[sid] = {"feature_flags": {}}
        try:
            await ws.send_json(
                {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}}
            )
            first = True
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and first:
                    first = False
                    try:
                        body = json.loads(msg.data)
                    except ValueError:
                        continue
                    if isinstance(body, dict) and body.get("type") == "feature_flags":
                        self.server.sockets_metadata[sid]["feature_flags"] = body.get("data") or {}
                        await ws.send_json({"type": "feature_flags", "data": FEATURE_FLAGS})
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if self.server.sockets.get(sid) is ws:
                self.server.sockets.pop(sid, None)
                self.server.sockets_metadata.pop(sid, None)
        return ws
