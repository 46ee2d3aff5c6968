"""Model download throughput: ``install_entry`` (gate, .part file, progress meter, sha256 check,
fsync and rename) against plain aiohttp streamed copies of the same file from the same loopback
server. Each figure is our throughput as a fraction of the copy's (target >= 0.9).

Two baselines: ``verified`` hashes the bytes with sha256 and fsyncs before closing, the work any
checked, crash-safe install has to do, so the ratio is the cost of our own machinery; ``raw``
only writes the bytes, so the ratio also includes sha256 (single-threaded, ~450 MB/s on a
small VM) and fsync, both done inside ``fetch.download``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from manager.host import StandaloneHost
from manager.models import install_entry, load_model_folders
from manager.network import NetworkGate, NetworkPolicy
from manager.records import ModelEntry

from .run import Benchmark, BenchContext, Figure, timed_ratio

SIZE = 128 * 1024 * 1024
CHUNK = 1 << 16


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
            with open(dest, "wb") as fh:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    fh.write(chunk)
                    if verified:
                        digest.update(chunk)
                if verified:
                    fh.flush()
                    os.fsync(fh.fileno())
    return digest.hexdigest()


def _ratio(ctx: BenchContext, *, verified: bool) -> Figure:
    inp = ctx.memo("models.inputs", lambda: _inputs(ctx))
    url, root = inp["server"].url, inp["root"]
    folders = load_model_folders(StandaloneHost.from_root(root))
    gate = NetworkGate(NetworkPolicy())
    entry = ModelEntry(name="bench", type="checkpoint", filename="model.safetensors", url=url,
                       save_path="checkpoints")
    dest = root / "models" / "checkpoints" / "model.safetensors"
    plain = inp["base"] / "plain.bin"
    reports: list[Any] = []

    def ours() -> None:
        dest.unlink(missing_ok=True)
        asyncio.run(install_entry(entry, gate=gate, folders=folders, sha256=inp["sha256"],
                                  progress=reports.append))

    def baseline() -> None:
        plain.unlink(missing_ok=True)
        asyncio.run(_plain_copy(url, plain, verified=verified))

    ours()
    baseline()                                          # warm the page cache and the server
    ratio, t_ours, t_base = timed_ratio(ours, baseline, repeat=max(5, ctx.repeat))
    throughput = 1 / ratio                              # same bytes: throughput ratio = inverse time ratio
    mb = SIZE / (1 << 20)
    kind = "verified (sha256 + fsync)" if verified else "raw"
    print(f"model download {mb:.0f} MB: ours {mb / t_ours:.0f} MB/s, {kind} plain copy {mb / t_base:.0f} MB/s "
          f"-> {throughput:.2f}x")
    return Figure(round(throughput, 3), f"ours {mb / t_ours:.0f} MB/s vs {kind} copy {mb / t_base:.0f} MB/s")


def download_vs_verified_copy(ctx: BenchContext) -> Figure:
    return _ratio(ctx, verified=True)


def download_vs_raw_copy(ctx: BenchContext) -> Figure:
    return _ratio(ctx, verified=False)


BENCHMARKS = [
    Benchmark("models.download_vs_verified_copy", "x", download_vs_verified_copy, target=0.9, compare=">=",
              baseline="plain aiohttp streamed copy that also sha256-hashes and fsyncs, same loopback server",
              description="install_entry throughput as a fraction of a like-for-like streamed copy (128 MB)"),
    Benchmark("models.download_vs_raw_copy", "x", download_vs_raw_copy, target=0.9, compare=">=",
              baseline="plain aiohttp streamed copy (write only), same loopback server",
              description="install_entry throughput as a fraction of a write-only streamed copy (128 MB)"),
]
