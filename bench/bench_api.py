"""API benchmarks: the warm classic pack list over the real channel DB, and the extension's start.

The server is the real door, ``cm-cli.py serve``, in its own process, serving a tree whose
channel is a file:// copy of the real default channel DB (5,896 packs), offline. The client is
this process (a keep-alive ``http.client`` connection), so the figures include the HTTP round
trip and reading the ~4 MB body. The baseline is a same-run ``json.dumps`` of the very payload
the route answered: a route that encodes per request cannot beat it; serving pre-encoded bytes
must.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .run import BenchContext, Benchmark, BenchSkip, Figure, median_time, percentile

LIST_PATH = "/customnode/getlist?mode=cache&skip_update=true"
REQUESTS = 200

_START_SCRIPT = r"""
import importlib.util, sys, tempfile, time, types
from pathlib import Path
import aiohttp, aiohttp.web, asyncio, json, logging, ssl, subprocess, urllib.request  # ComfyUI has these loaded
repo = Path(sys.argv[1]); tree = Path(tempfile.mkdtemp())
for sub in ("custom_nodes", "models/checkpoints", "user"):
    (tree / sub).mkdir(parents=True)
class PromptServer:
    def __init__(self): self.routes = aiohttp.web.RouteTableDef()
    def send_sync(self, event, data, sid=None): pass
server = types.ModuleType("server"); server.PromptServer = PromptServer; PromptServer.instance = PromptServer()
fp = types.ModuleType("folder_paths"); fp.base_path = str(tree); fp.models_dir = str(tree / "models")
fp.folder_names_and_paths = {"custom_nodes": ([str(tree / "custom_nodes")], set())}
fp.get_folder_paths = lambda name: list(fp.folder_names_and_paths[name][0])
fp.get_user_directory = lambda: str(tree / "user")
sys.modules["server"] = server; sys.modules["folder_paths"] = fp
name = str(repo).replace(".", "_x_")
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location(name, repo / "__init__.py")
module = importlib.util.module_from_spec(spec); sys.modules[name] = module; spec.loader.exec_module(module)
elapsed = time.perf_counter() - t0
assert len(PromptServer.instance.routes) > 50, "routes not mounted"
print(elapsed)
"""


_PRESTART_SCRIPT = r"""
import importlib.util, os, sys, tempfile, time, types
from pathlib import Path
repo = Path(sys.argv[1]); tree = Path(tempfile.mkdtemp())
for sub in ("custom_nodes", "user/__manager"):
    (tree / sub).mkdir(parents=True)
fp = types.ModuleType("folder_paths"); fp.base_path = str(tree)
fp.get_user_directory = lambda: str(tree / "user")
fp.get_system_user_directory = lambda name="system": str(tree / "user" / ("__" + name))
sys.modules["folder_paths"] = fp
script = repo / "prestartup_script.py"
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location(os.path.splitext(str(script))[0], script)
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
elapsed = time.perf_counter() - t0
assert not [m for m in sys.modules if m.startswith("_offline_manager")], "package loaded with nothing pending"
print(elapsed)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree(ctx: BenchContext, base: Path) -> Path:
    root = base / "ComfyUI"
    for sub in ("custom_nodes", "models/checkpoints", "user/__manager"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    channel = base / "channel"
    shutil.copytree(ctx.require_channel_db() / "default", channel)
    (root / "user" / "__manager" / "config.ini").write_text(
        f"[default]\nnetwork_mode = offline\nchannel_url = {channel.as_uri()}\n", encoding="utf-8"
    )
    (root / "user" / "__manager" / "channels.list").write_text(f"default::{channel.as_uri()}\n", encoding="utf-8")
    return root


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _measure_list(ctx: BenchContext) -> dict[str, Any]:
    """Start ``cm-cli.py serve`` on the real DB, warm the list, time REQUESTS requests."""
    base = Path(tempfile.mkdtemp(prefix="cm-bench-api-"))
    port = _free_port()
    proc = None
    try:
        root = _tree(ctx, base)
        env = {**os.environ, "PYTHONPATH": ""}
        proc = subprocess.Popen(
            [sys.executable, str(ctx.repo_root / "cm-cli.py"), "--comfyui", str(root), "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        deadline = time.monotonic() + 120
        while True:
            try:
                status, _ = _get(conn, "/offline-manager/v1/status")
                if status == 200:
                    break
            except OSError as err:
                conn.close()
                if proc.poll() is not None or time.monotonic() > deadline:
                    stderr = (proc.stderr.read() or b"").decode()[-300:]
                    raise BenchSkip("cm-cli.py serve did not start: " + stderr) from err
                time.sleep(0.2)
        t0 = time.perf_counter()
        status, body = _get(conn, LIST_PATH)  # cold: load, scan, encode
        cold = time.perf_counter() - t0
        if status != 200:
            raise RuntimeError(f"{LIST_PATH} answered {status}: {body[:200]!r}")
        for _ in range(5):
            _get(conn, LIST_PATH)
        samples = []
        for _ in range(REQUESTS):
            t = time.perf_counter()
            status, data = _get(conn, LIST_PATH)
            samples.append(time.perf_counter() - t)
            if status != 200 or len(data) != len(body):
                raise RuntimeError(f"warm answer differs: {status}, {len(data)} bytes")
        conn.close()
        payload = json.loads(body)
        dumps = median_time(lambda: json.dumps(payload), repeat=max(5, ctx.repeat))
        return {
            "samples": samples,
            "cold": cold,
            "bytes": len(body),
            "packs": len(payload["node_packs"]),
            "dumps": dumps,
        }
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)


def _run(ctx: BenchContext) -> dict[str, Any]:
    return ctx.memo("api.list_run", lambda: _measure_list(ctx))


def list_median(ctx: BenchContext) -> Figure:
    r = _run(ctx)
    return Figure(
        statistics.median(r["samples"]) * 1000,
        f"{r['packs']} packs, {r['bytes'] / 1e6:.1f} MB, {REQUESTS} keep-alive requests from another "
        f"process; cold first answer {r['cold'] * 1000:.0f} ms",
    )


def list_p99(ctx: BenchContext) -> Figure:
    r = _run(ctx)
    values = sorted(r["samples"])
    p99 = percentile(values, 0.99)
    return Figure(p99 * 1000, f"max {values[-1] * 1000:.1f} ms")


def list_vs_dumps(ctx: BenchContext) -> Figure:
    r = _run(ctx)
    med = statistics.median(r["samples"])
    return Figure(med / r["dumps"], f"request {med * 1000:.2f} ms vs json.dumps {r['dumps'] * 1000:.1f} ms")


def extension_start(ctx: BenchContext) -> Figure:
    """Import + registration of the extension as ComfyUI loads it (fresh interpreter each time)."""
    runs = []
    for _ in range(max(3, ctx.repeat)):
        out = subprocess.run(
            [sys.executable, "-c", _START_SCRIPT, str(ctx.repo_root)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": ""},
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "start failed")
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return Figure(
        statistics.median(runs) * 1000,
        f"min {min(runs) * 1000:.0f} ms over {len(runs)} fresh interpreters (aiohttp already imported, as in ComfyUI)",
    )


def prestartup_idle(ctx: BenchContext) -> Figure:
    """prestartup_script.py with nothing pending, run the way ComfyUI's main.py runs it."""
    runs = []
    for _ in range(max(3, ctx.repeat)):
        out = subprocess.run(
            [sys.executable, "-c", _PRESTART_SCRIPT, str(ctx.repo_root)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": ""},
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "prestartup failed")
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return Figure(statistics.median(runs) * 1000, f"max {max(runs) * 1000:.2f} ms over {len(runs)} fresh interpreters")


BENCHMARKS = [
    Benchmark(
        "api.getlist_warm",
        "ms",
        list_median,
        target=18.0,
        compare="<=",
        description="warm GET /customnode/getlist?mode=cache&skip_update=true, real DB, median",
    ),
    Benchmark(
        "api.getlist_warm_p99", "ms", list_p99, target=18.0, compare="<=", description="same requests, 99th percentile"
    ),
    Benchmark(
        "api.getlist_vs_json_dumps",
        "x",
        list_vs_dumps,
        target=1.0,
        compare="<",
        baseline="json.dumps of the same payload, same run",
        description="a warm list request as a multiple of merely encoding its payload",
    ),
    Benchmark(
        "api.extension_start",
        "ms",
        extension_start,
        target=100.0,
        compare="<",
        description="import + route registration of the extension inside a (stand-in) ComfyUI",
    ),
    Benchmark(
        "api.prestartup_idle",
        "ms",
        prestartup_idle,
        target=100.0,
        compare="<",
        description="prestartup_script.py with no operation scheduled for the start (one stat)",
    ),
]
