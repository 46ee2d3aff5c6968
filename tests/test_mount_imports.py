"""Mounting our routes in ComfyUI imports the doors only: the task table, the core and the
catalog load on first use (or in the prewarm after the server runs), never on ComfyUI's start.

Each check runs in a fresh interpreter that loads this folder the way ComfyUI loads a custom
node folder (by path, under the folder's name), with a stand-in ``server``/``folder_paths``
pair, and calls the ``add_routes`` ComfyUI calls; then it reads ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from manager import security as sec
from manager.api.routes_classic import QUEUE_OPERATIONS
from manager.kinds import BY_NAME

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "offline-manager"  # ComfyUI's module name for custom_nodes/offline-manager

# modules a mount must not import: what the first request (or the prewarm) loads
HEAVY = (
    "manager.kinds",
    "manager.events",
    "manager.context",
    "manager.tasks",
    "manager.catalog",
    "manager.catalog_parse",
    "manager.list_cache",
    "manager.channels",
    "manager.config",
    "manager.inventory",
    "manager.deps",
    "manager.operations",
    "manager.git",
    "manager.snapshots",
    "manager.bundles",
    "manager.models",
    "manager.registry",
    "manager.fetch",
)

SCRIPT = r"""
import importlib.util, json, logging, os, sys, time, types
logging.basicConfig(level=logging.WARNING)
from aiohttp import web

repo, root = sys.argv[1], sys.argv[2]


class PromptServer:
    def __init__(self):
        self.routes = web.RouteTableDef()
        self.app = web.Application()

    def add_routes(self):
        self.mounted = len(self.routes)


server = types.ModuleType("server")
server.PromptServer = PromptServer
PromptServer.instance = PromptServer()
fp = types.ModuleType("folder_paths")
fp.base_path = root
fp.models_dir = os.path.join(root, "models")
fp.get_folder_paths = lambda name: [os.path.join(root, "custom_nodes")]
fp.get_user_directory = lambda: os.path.join(root, "user")
fp.get_system_user_directory = lambda name="system": os.path.join(root, "user", "__" + name)
sys.modules.update(server=server, folder_paths=fp)
before = set(sys.modules)
# ComfyUI's load_custom_node: the folder's __init__.py by path, named after the folder
spec = importlib.util.spec_from_file_location(
    "offline-manager", os.path.join(repo, "__init__.py"), submodule_search_locations=[repo]
)
module = importlib.util.module_from_spec(spec)
sys.modules["offline-manager"] = module
t0 = time.perf_counter()
spec.loader.exec_module(module)
t1 = time.perf_counter()
PromptServer.instance.add_routes()
t2 = time.perf_counter()
state = PromptServer.instance._offline_manager_started
print(json.dumps({
    "new": sorted(set(sys.modules) - before),
    "mounted": PromptServer.instance.mounted,
    "ours": len(state["report"].mounted),
    "import_ms": (t1 - t0) * 1000,
    "mount_ms": (t2 - t1) * 1000,
}))
"""


def _load_like_comfyui(tmp_path: Path) -> dict:
    for sub in ("custom_nodes", "user"):
        (tmp_path / sub).mkdir(exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(REPO), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_mount_imports_no_task_table_core_or_catalog(tmp_path: Path) -> None:
    seen = _load_like_comfyui(tmp_path)
    assert seen["ours"] > 100 and seen["mounted"] >= seen["ours"], seen  # the whole table mounted
    ours = [m.removeprefix(PACKAGE + ".") for m in seen["new"] if m.startswith(PACKAGE + ".")]
    assert "manager.api.routes" in ours and "manager.api.handlers_v2" in ours, ours
    heavy = sorted(m for m in ours if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == [], f"imported by a mount: {heavy}"


def test_importing_the_package_alone_loads_no_route_module(tmp_path: Path) -> None:
    # ComfyUI's "Import times for custom nodes" figure covers this part: the routes come later,
    # right before add_routes, when every extension has registered its own
    code = SCRIPT.replace("PromptServer.instance.add_routes()", "PromptServer.instance.mounted = 0")
    code = code.replace('"ours": len(state["report"].mounted)', '"ours": "report" in state')
    for sub in ("custom_nodes", "user"):
        (tmp_path / sub).mkdir(exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["ours"] is False, seen  # nothing mounted yet
    ours = sorted(m for m in seen["new"] if m.startswith(PACKAGE + "."))
    assert not [m for m in ours if ".manager" in m], ours


def test_classic_queue_routes_carry_their_kinds_operations() -> None:
    # the route table names them without importing the task table; the table stays the authority
    assert QUEUE_OPERATIONS == {kind: BY_NAME[kind].operation for kind in QUEUE_OPERATIONS}
    assert set(QUEUE_OPERATIONS.values()) <= set(sec.OPERATIONS)
