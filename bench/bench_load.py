"""Load: N concurrent clients against the standalone server while installs run.

The server is the real one (``manager.api.standalone.build_app`` with the shipped runners) on
127.0.0.1 in a thread of its own, serving a demo ComfyUI tree (offline, local file:// channel
and git packs). Every demo pack is queued for install first; then each client loops over a mix
of list (``GET /packs``), status (``GET /status``, ``GET /tasks/{id}``) and queue requests
(``GET /queue``, and one ``POST /queue`` in ten) until the duration is over. The figures are
throughput and the p50/p99 latency; any answer that is not a 2xx envelope is a request error.
``tests/test_load.py`` runs a small version of the same driver.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .run import BenchContext, Benchmark, Figure

V1 = "/offline-manager/v1"


@dataclass
class LoadReport:
    """What one load run measured."""

    clients: int
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)  # op -> seconds
    errors: list[str] = field(default_factory=list)
    installs_queued: int = 0

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float, op: str | None = None) -> float:
        """The ``q`` quantile (0-100) of the latencies in seconds, of one op or of all."""
        values = sorted(self.latencies.get(op, []) if op else [v for vs in self.latencies.values() for v in vs])
        if not values:
            return 0.0
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, int(q) - 1))]

    def summary(self) -> str:
        return (
            f"{self.clients} clients, {self.requests} requests in {self.seconds:.1f}s: "
            f"{self.throughput:.0f} req/s, p50 {self.percentile(50) * 1000:.1f} ms, "
            f"p99 {self.percentile(99) * 1000:.1f} ms, {len(self.errors)} errors, "
            f"{self.installs_queued} installs"
        )


class ServerThread:
    """The standalone app for ``root`` on 127.0.0.1 (random port) in a background thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = ""
        self.api: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None

    def __enter__(self) -> ServerThread:
        from aiohttp import web

        from manager.api.standalone import build_app, prepare
        from manager.context import Manager

        self.api = prepare(Manager.standalone(self.root, env={}))
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        async def boot() -> None:
            self._runner = web.AppRunner(build_app(self.api), access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(boot())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="load-server", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        self.api.manager.queue.start()
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is None:
            return
        self.api.manager.queue.stop(timeout=30)
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread:
            self._thread.join(30)
        loop.close()


async def _client(
    n: int, base: str, deadline: float, report: LoadReport, task_ids: list[str], targets: list[str]
) -> None:
    import aiohttp

    ops = ("list", "status", "queue", "task", "list", "status", "queue", "list", "status", "enqueue")
    i = n
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            op = ops[i % len(ops)]
            i += 1
            if op == "list":
                method, path, body = "GET", V1 + "/packs", None
            elif op == "status":
                method, path, body = "GET", V1 + "/status", None
            elif op == "queue":
                method, path, body = "GET", V1 + "/queue?history=20", None
            elif op == "task" and task_ids:
                # the newest ids: the queue keeps a bounded history, as the panel knows
                method, path, body = "GET", f"{V1}/tasks/{task_ids[-1 - i % min(len(task_ids), 10)]}", None
            elif op == "enqueue":
                # an install of a pack that is queued or installed already: fails fast in the worker
                method, path, body = (
                    "POST",
                    V1 + "/queue",
                    {"kind": "install", "target": targets[i % len(targets)], "client_id": f"load-{n}"},
                )
            else:
                continue
            started = time.perf_counter()
            try:
                async with session.request(method, base + path, json=body) as resp:
                    doc = await resp.json(content_type=None)
                    ok = 200 <= resp.status < 300 and isinstance(doc, dict) and doc.get("ok") is True
                    if not ok:
                        report.errors.append(f"{method} {path}: {resp.status} {str(doc)[:200]}")
                    elif op == "enqueue":
                        task_ids.extend(t["id"] for t in doc["data"]["tasks"])
            except Exception as exc:  # a refused connection or a broken answer is a request error
                report.errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
                continue
            report.latencies.setdefault(op, []).append(time.perf_counter() - started)


async def _drive(base: str, *, clients: int, duration: float, targets: list[str]) -> LoadReport:
    import aiohttp

    report = LoadReport(clients=clients, seconds=0.0)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            base + V1 + "/queue", json={"tasks": [{"kind": "install", "target": t} for t in targets]}
        ) as resp:
            doc = await resp.json(content_type=None)
            if resp.status != 202:
                raise RuntimeError(f"queueing the installs failed: {resp.status} {doc}")
            task_ids = [t["id"] for t in doc["data"]["tasks"]]
    report.installs_queued = len(task_ids)
    started = time.monotonic()
    deadline = started + duration
    await asyncio.gather(*(_client(n, base, deadline, report, list(task_ids), targets) for n in range(clients)))
    report.seconds = time.monotonic() - started
    return report


def run_load(
    root: Path, *, clients: int = 8, duration: float = 2.0, targets: list[str] | None = None, settle: float = 120.0
) -> tuple[LoadReport, list[Any]]:
    """Serve ``root``, queue installs of ``targets`` (default: every demo pack), drive the load,
    wait for the queue to drain; returns the report and the queued installs' final task dicts."""
    from manager.demo import DEMO_PACKS

    targets = targets or [p[0] for p in DEMO_PACKS]
    finished: dict[str, Any] = {}

    def on_event(event: Any) -> None:
        task = event.data.get("task") if event.name in ("done", "failed", "cancelled") else None
        if task and task.get("kind") == "install" and task.get("client_id") is None:
            finished[task["id"]] = task  # the queued installs (clients tag theirs)

    with ServerThread(root) as server:
        queue = server.api.manager.queue
        queue.subscribe(on_event)
        report = asyncio.run(_drive(server.url, clients=clients, duration=duration, targets=targets))
        if not queue.run_until_idle(timeout=settle):
            report.errors.append(f"the queue did not drain within {settle}s")
    return report, list(finished.values())


def demo_tree(base: Path) -> Path:
    from manager.demo import create_demo_tree

    return create_demo_tree(base)


# --- the benchmark ------------------------------------------------------------------------------
def _measured(ctx: BenchContext) -> LoadReport:
    def make() -> LoadReport:
        with tempfile.TemporaryDirectory(prefix="cm-bench-load-") as tmp:
            report, _ = run_load(demo_tree(Path(tmp)), clients=32, duration=5.0)
            return report

    return ctx.memo("load", make)


def _throughput(ctx: BenchContext) -> Figure:
    r = _measured(ctx)
    return Figure(r.throughput, f"{r.clients} clients, {r.requests} requests, {len(r.errors)} errors")


def _p50(ctx: BenchContext) -> Figure:
    return Figure(_measured(ctx).percentile(50) * 1000)


def _p99(ctx: BenchContext) -> Figure:
    return Figure(_measured(ctx).percentile(99) * 1000)


def _errors(ctx: BenchContext) -> Figure:
    r = _measured(ctx)
    return Figure(float(len(r.errors)), r.errors[0][:80] if r.errors else "")


BENCHMARKS = [
    # issue 11 names no load targets: zero errors is the promise; the others are sanity floors
    Benchmark(
        "load.throughput",
        "req/s",
        _throughput,
        target=100,
        compare=">=",
        description="32 clients mixing list/status/queue requests while 5 installs run",
    ),
    Benchmark("load.p50", "ms", _p50, description="median request latency under load"),
    Benchmark("load.p99", "ms", _p99, target=1000, compare="<", description="99th percentile latency under load"),
    Benchmark("load.errors", "count", _errors, target=0, compare="<=", description="requests that failed"),
]
