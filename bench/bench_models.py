"""Model download throughput: ``install_entry`` (gate, .part file, progress meter, sha256 check,
fsync and rename) against plain aiohttp streamed copies of the same file from the same loopback
server. Each figure is our throughput as a fraction of the copy's (target >= 0.9).

Two baselines: ``verified`` hashes the bytes with sha256 and fsyncs before closing, the work any
checked, crash-safe install has to do, so the ratio is the cost of our own machinery; ``raw``
only writes the bytes (and deletes them before the kernel ever writes them out), so the ratio
also includes sha256 and making 128 MB durable, both required inside ``fetch.download``. A third,
informational figure, ``persist``, times writing the same bytes from memory and making them
durable (no network, no hash, background fdatasync as ``fetch`` does) against the raw copy: the
ceiling for any download that must be on disk before its rename.

Hygiene: all samples are interleaved in one loop (this VM is shared and noisy), medians are kept,
and each sample starts untimed from a deleted output and an ``os.sync()``, so one run's deletion
(journal commit, discards) is not paid inside the next run's fsync.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from manager.fetch import SYNC_STEP
from manager.host import StandaloneHost
from manager.models import install_entry, load_model_folders
from manager.network import NetworkGate, NetworkPolicy
from manager.records import ModelEntry

from .run import BenchContext, Benchmark, Figure

SIZE = 128 * 1024 * 1024
CHUNK = 1 << 16
REPEAT = 9  # samples of each; medians kept


class _Server:
    """A loopback aiohttp server in a thread serving one file from disk (Range-capable)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._runner: web.AppRunner | None = None
        ready = threading.Event()

        async def boot() -> None:
            app = web.Application()
            app.router.add_get("/model.safetensors", lambda request: web.FileResponse(self.path))
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(boot())
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True, name="bench-model-server").start()
        ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/model.safetensors"


def _inputs(ctx: BenchContext) -> dict[str, Any]:
    tmp = tempfile.TemporaryDirectory(prefix="cm-bench-models-")
    base = Path(tmp.name)
    src = base / "model.bin"
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with open(src, "wb") as fh:
        for _ in range(SIZE >> 20):
            fh.write(block)
            digest.update(block)
    root = base / "ComfyUI"
    (root / "models").mkdir(parents=True)
    return {"tmp": tmp, "server": _Server(src), "root": root, "sha256": digest.hexdigest(), "base": base}


async def _plain_copy(url: str, dest: Path, *, verified: bool) -> str:
    digest = hashlib.sha256()
    async with aiohttp.ClientSession() as sess:
        async with sess.get(url) as resp:
            resp.raise_for_status()
            fh = await asyncio.to_thread(open, dest, "wb")
            with fh:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    fh.write(chunk)
                    if verified:
                        digest.update(chunk)
                if verified:
                    fh.flush()
                    os.fsync(fh.fileno())
    return digest.hexdigest()


def _persist(data: bytes, dest: Path) -> float:
    """Seconds to make bytes already in memory durable in ``dest``: written in 1 MiB blocks with
    a background fdatasync kept running (as ``fetch`` does), then fsync. No network, no hash."""
    step = 1 << 20
    start = time.perf_counter()
    with open(dest, "wb") as fh, ThreadPoolExecutor(1) as syncer:
        running, synced_at = None, 0
        for i in range(0, len(data), step):
            fh.write(data[i : i + step])
            if hasattr(os, "fdatasync") and i + step - synced_at >= SYNC_STEP and (running is None or running.done()):
                running, synced_at = syncer.submit(os.fdatasync, fh.fileno()), i + step
        fh.flush()
        if running is not None:
            running.result()
        os.fsync(fh.fileno())
    return time.perf_counter() - start


def _quiesce(*paths: Path) -> None:
    """Untimed set-up of every sample: drop the last output, then flush the disk so one run's
    deletion (its journal commit and discards) is not paid inside the next run's fsync."""
    for p in paths:
        p.unlink(missing_ok=True)
    os.sync()


def _samples(ctx: BenchContext) -> dict[str, float]:
    """Median seconds of ours and of each baseline, sampled interleaved in one loop so that all
    of them see the same machine (this VM is shared and noisy)."""
    inp = ctx.memo("models.inputs", lambda: _inputs(ctx))
    url, root = inp["server"].url, inp["root"]
    folders = load_model_folders(StandaloneHost.from_root(root))
    gate = NetworkGate(NetworkPolicy())
    entry = ModelEntry(name="bench", type="checkpoint", filename="model.safetensors", url=url, save_path="checkpoints")
    dest = root / "models" / "checkpoints" / "model.safetensors"
    plain = inp["base"] / "plain.bin"
    reports: list[Any] = []
    runs: dict[str, Callable[[], Any]] = {
        "ours": lambda: asyncio.run(
            install_entry(entry, gate=gate, folders=folders, sha256=inp["sha256"], progress=reports.append)
        ),
        "raw": lambda: asyncio.run(_plain_copy(url, plain, verified=False)),
        "verified": lambda: asyncio.run(_plain_copy(url, plain, verified=True)),
    }
    times: dict[str, list[float]] = {name: [] for name in (*runs, "persist")}
    data = (inp["base"] / "model.bin").read_bytes()
    for fn in runs.values():  # warm-up: page cache, server, imports
        _quiesce(dest, plain)
        fn()
    for _ in range(max(REPEAT, ctx.repeat)):
        for name, fn in runs.items():
            _quiesce(dest, plain)
            gc.collect()
            gc.disable()  # a collection inside one sample would dominate it
            try:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
            finally:
                gc.enable()
        _quiesce(dest, plain)
        times["persist"].append(_persist(data, plain))
    _quiesce(dest, plain)
    return {name: statistics.median(v) for name, v in times.items()}


def _figure(ctx: BenchContext, kind: str) -> Figure:
    """Throughputs in MB/s: ours (or the write+fsync from memory) beside the copy of the same run."""
    t = ctx.memo("models.samples", lambda: _samples(ctx))
    mb = SIZE / (1 << 20)
    if kind == "persist":  # the same bytes written from memory and fsynced, beside the raw copy
        figure, base = mb / t["persist"], mb / t["raw"]
        note = "write+fsync from memory vs raw copy"
    else:
        figure, base = mb / t["ours"], mb / t[kind]
        note = f"ours vs {'verified (sha256 + fsync)' if kind == 'verified' else 'raw'} copy"
    print(f"model download {mb:.0f} MB: {note}: {figure:.0f} vs {base:.0f} MB/s -> {figure / base:.2f}x")
    return Figure(figure, note, baseline=base)


def download_vs_verified_copy(ctx: BenchContext) -> Figure:
    return _figure(ctx, "verified")


def download_vs_raw_copy(ctx: BenchContext) -> Figure:
    return _figure(ctx, "raw")


def persist_vs_raw_copy(ctx: BenchContext) -> Figure:
    return _figure(ctx, "persist")


BENCHMARKS = [
    Benchmark(
        "models.download_vs_verified_copy",
        "MB/s",
        download_vs_verified_copy,
        target=0.9,
        compare=">=",
        target_on="ratio",
        baseline="plain aiohttp streamed copy that also sha256-hashes and fsyncs, same loopback server",
        description="install_entry throughput as a fraction of a like-for-like streamed copy (128 MB)",
    ),
    Benchmark(
        "models.download_vs_raw_copy",
        "MB/s",
        download_vs_raw_copy,
        target=0.9,
        compare=">=",
        target_on="ratio",
        baseline="plain aiohttp streamed copy (write only), same loopback server",
        description="install_entry throughput as a fraction of a write-only streamed copy (128 MB)",
    ),
    Benchmark(
        "models.persist_vs_raw_copy",
        "MB/s",
        persist_vs_raw_copy,
        compare=">=",
        baseline="plain aiohttp streamed copy (write only), same loopback server",
        description="writing the same 128 MB from memory and fsyncing it, as a fraction of the raw "
        "copy: the ceiling for any download that must be on disk before its rename",
    ),
]
