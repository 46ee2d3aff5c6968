"""The pack list at 5.9k and 59k packs (issue 21 items 1 and 3): first call after a restart, warm
calls, the server's memory, and how each grows from the real catalog to ten times it.

The server is ``cm-cli.py serve`` in its own process over a tree whose channel is a ``file://``
copy of the channel, offline. The first server loads the catalog and persists the lists
(``manager/list_cache.py``); it is then restarted ``RESTARTS`` times and the first
``/customnode/getlist`` is timed right after the server answers its status (nothing warmed it:
it reads the persisted file), identity and, on other restarts, gzip as a browser asks (the
59k/5.9k ratios use gzip: a Python client reading 43 MB uncompressed grows faster than the body).
The 59k channel is the real one ten times over, ids and URLs made unique, text kept
(``tests/support/catalog_x10.py``). RSS is the server's VmRSS serving both lists
(classic and v1) after a restart, and with the catalog loaded as well (the heaviest state).
"""

from __future__ import annotations

import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .bench_api import LIST_PATH, _free_port, _get
from .run import BenchContext, Benchmark, BenchSkip, Figure

V1_PATH = "/offline-manager/v1/packs"
RESTARTS = 3
WARM = 100


def _tree(base: Path, channel_src: Path) -> Path:
    root = base / "ComfyUI"
    for sub in ("custom_nodes", "models/checkpoints", "user/__manager"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    channel = base / "channel"
    shutil.copytree(channel_src, channel)
    (root / "user" / "__manager" / "config.ini").write_text(
        f"[default]\nnetwork_mode = offline\nchannel_url = {channel.as_uri()}\n", encoding="utf-8"
    )
    (root / "user" / "__manager" / "channels.list").write_text(f"default::{channel.as_uri()}\n", encoding="utf-8")
    return root


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Server:
    def __init__(self, ctx: BenchContext, root: Path) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ctx.repo_root / "cm-cli.py"),
                "--comfyui",
                str(root),
                "serve",
                "--port",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": ""},
        )
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        deadline = time.monotonic() + 120
        while True:
            try:
                if _get(self.conn, "/offline-manager/v1/status")[0] == 200:
                    return
            except OSError as err:
                self.conn.close()
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    stderr = (self.proc.stderr.read() if self.proc.stderr else b"") or b""
                    self.stop()
                    raise BenchSkip("cm-cli.py serve did not start: " + stderr.decode()[-300:]) from err
                time.sleep(0.05)

    def timed(self, path: str, *, gzip: bool = False) -> tuple[float, bytes]:
        """One request on the keep-alive connection, its body read whole (not decompressed)."""
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if gzip else {})
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise RuntimeError(f"{path} answered {resp.status}: {body[:200]!r}")
        return elapsed, body

    def stop(self) -> None:
        self.conn.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(ctx: BenchContext, channel_src: Path) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="cm-bench-lists-"))
    try:
        root = _tree(base, channel_src)
        lists = root / "user" / "__manager" / "cache" / "lists"
        server = _Server(ctx, root)
        try:
            cold, body = server.timed(LIST_PATH)  # no persisted list yet: the catalog is built
            server.timed(V1_PATH)
            deadline = time.monotonic() + 300
            while not all((lists / f"{k}.bin").exists() for k in ("classic", "v1")):
                if time.monotonic() > deadline:
                    raise RuntimeError("the lists were not persisted within 300 s")
                time.sleep(0.1)
            time.sleep(0.5)
            rss_built = _rss_mb(server.proc.pid)
        finally:
            server.stop()
        first, first_gzip, rss_restarted = [], [], []
        for _ in range(RESTARTS):  # as a browser asks: gzip (the body's transfer is not the figure)
            server = _Server(ctx, root)
            try:
                first_gzip.append(server.timed(LIST_PATH, gzip=True)[0])
            finally:
                server.stop()
        warm: list[float] = []
        warm_gzip: list[float] = []
        for i in range(RESTARTS):
            server = _Server(ctx, root)
            try:
                elapsed, again = server.timed(LIST_PATH)
                first.append(elapsed)
                if len(again) != len(body):
                    raise RuntimeError(f"the list after a restart has {len(again)} bytes, not {len(body)}")
                if i == RESTARTS - 1:
                    warm = [server.timed(LIST_PATH)[0] for _ in range(WARM)]
                    warm_gzip = [server.timed(LIST_PATH, gzip=True)[0] for _ in range(WARM)]
                    server.timed(V1_PATH)
                    time.sleep(0.5)
                    rss_restarted.append(_rss_mb(server.proc.pid))
            finally:
                server.stop()
        return {
            "cold": cold,
            "first": first,
            "first_gzip": first_gzip,
            "warm": warm,
            "warm_gzip": warm_gzip,
            "rss_built": rss_built,
            "rss_restarted": rss_restarted[-1],
            "bytes": len(body),
            "file_mb": sum(p.stat().st_size for p in lists.glob("*.bin")) / 1e6,
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _x10(ctx: BenchContext) -> Path:
    return Path(ctx.support("catalog_x10").channel_x10(ctx.require_channel_db()))


def _run(ctx: BenchContext, size: str) -> dict[str, Any]:
    if size == "59k":
        return ctx.memo("lists.59k", lambda: measure(ctx, _x10(ctx)))
    return ctx.memo("lists.5.9k", lambda: measure(ctx, ctx.require_channel_db() / "default"))


def _first(size: str):  # noqa: ANN202  (a measure function per size)
    def figure(ctx: BenchContext) -> Figure:
        r = _run(ctx, size)
        return Figure(
            statistics.median(r["first"]) * 1000,
            f"{size} packs, {r['bytes'] / 1e6:.1f} MB body, median of {len(r['first'])} restarts "
            f"({', '.join(f'{x * 1000:.0f}' for x in r['first'])} ms), identity; with gzip "
            f"{statistics.median(r['first_gzip']) * 1000:.0f} ms; built per request before: "
            f"{r['cold'] * 1000:.0f} ms; persisted files {r['file_mb']:.1f} MB",
        )

    return figure


def _warm(size: str):  # noqa: ANN202
    def figure(ctx: BenchContext) -> Figure:
        r = _run(ctx, size)
        return Figure(
            statistics.median(r["warm"]) * 1000,
            f"{size} packs, {len(r['warm'])} keep-alive requests, identity; with gzip (what a browser "
            f"gets) {statistics.median(r['warm_gzip']) * 1000:.1f} ms",
        )

    return figure


def _rss(size: str, state: str):  # noqa: ANN202
    def figure(ctx: BenchContext) -> Figure:
        r = _run(ctx, size)
        if state == "restarted":
            return Figure(
                r["rss_restarted"],
                f"{size} packs, after a restart: both lists served from the persisted files, no catalog built",
            )
        return Figure(
            r["rss_built"],
            f"{size} packs, catalog loaded and both lists built (the bodies alone are ~95 MB at 59k; "
            "docs/decisions.md issue 21)",
        )

    return figure


def _ratio(key: str):  # noqa: ANN202
    def figure(ctx: BenchContext) -> Figure:
        small, big = _run(ctx, "5.9k"), _run(ctx, "59k")
        a = statistics.median(big[key]) if isinstance(big[key], list) else big[key]
        b = statistics.median(small[key]) if isinstance(small[key], list) else small[key]
        return Figure(a / b, f"59k {a * 1000:.1f} ms / 5.9k {b * 1000:.1f} ms (10x the packs){NOTES.get(key, '')}")

    return figure


NOTES = {"warm_gzip": "; gzip: the body a browser gets", "first_gzip": "; gzip: the body a browser gets"}

BENCHMARKS = [
    Benchmark(
        "lists.getlist_first",
        "ms",
        _first("5.9k"),
        target=100.0,
        compare="<=",
        description="first /customnode/getlist after a restart (from the persisted list), real DB",
    ),
    Benchmark("lists.getlist_warm", "ms", _warm("5.9k"), target=5.0, compare="<=", description="warm getlist, real DB"),
    Benchmark("lists.rss", "MB", _rss("5.9k", "restarted"), description="server RSS serving the lists, real DB"),
    Benchmark(
        "lists.rss_catalog",
        "MB",
        _rss("5.9k", "built"),
        description="server RSS with the catalog loaded too, real DB (informational)",
    ),
    Benchmark(
        "lists.getlist_first_59k",
        "ms",
        _first("59k"),
        description="first getlist after a restart, 59k packs (judged by its ratio to 5.9k)",
    ),
    Benchmark("lists.getlist_warm_59k", "ms", _warm("59k"), description="warm getlist, 59k packs (judged by ratio)"),
    Benchmark(
        "lists.getlist_first_59k_vs_5.9k",
        "x",
        _ratio("first_gzip"),
        target=10.0,
        compare="<=",
        baseline="the same at 5.9k packs, same run",
        description="first getlist after a restart (gzip, as a browser asks) grows no worse than linearly",
    ),
    Benchmark(
        "lists.getlist_warm_59k_vs_5.9k",
        "x",
        _ratio("warm_gzip"),
        target=10.0,
        compare="<=",
        baseline="the same at 5.9k packs, same run",
        description="warm getlist (gzip, as a browser asks) grows no worse than linearly with the catalog",
    ),
    Benchmark(
        "lists.rss_59k",
        "MB",
        _rss("59k", "restarted"),
        target=300.0,
        compare="<",
        description="server RSS serving the lists at 59k packs (after a restart)",
    ),
    Benchmark(
        "lists.rss_59k_catalog",
        "MB",
        _rss("59k", "built"),
        target=300.0,
        compare="<",
        description="server RSS at 59k packs with the catalog loaded as well (installs, details, search)",
    ),
]
