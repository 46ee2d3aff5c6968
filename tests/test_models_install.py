"""Model install against a real loopback server: progress, Range resume (cut connection and a
SIGKILLed process), servers without Range, wrong sizes, sha256 mismatch, cancel, the task runner."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from manager.context import Manager
from manager.errors import ChecksumMismatch, DownloadIncomplete, HttpStatusError, InvalidName, ModelSourceUnsupported
from manager.events import TaskSpec, TaskState
from manager.host import StandaloneHost
from manager.models import HashCache, InstallResult, install_entry, load_model_folders
from manager.network import NetworkGate, NetworkMode, NetworkPolicy
from manager.records import ModelEntry
from manager.tasks import TaskCancelled

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20


def _blob(size: int, seed: int = 1) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB pattern
    return (block * (size // len(block) + 1))[:size]


class ModelServer:
    """A handler serving one file, with or without Range / If-Range, optionally cut or slowed."""

    def __init__(
        self,
        data: bytes,
        *,
        ranges: bool = True,
        etag: str = '"v1"',
        cut_first_at: int | None = None,
        declare: int | None = None,
        delay: float = 0.0,
    ) -> None:
        self.data, self.ranges, self.etag = data, ranges, etag
        self.cut_first_at, self.declare, self.delay = cut_first_at, declare, delay
        self.seen: list[dict[str, str]] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({k: v for k, v in request.headers.items() if k in ("Range", "If-Range")})
        start, status = 0, 200
        headers = {
            "ETag": self.etag,
            "Accept-Ranges": "bytes" if self.ranges else "none",
            "Content-Type": "application/octet-stream",
        }
        rng = request.headers.get("Range")
        if self.ranges and rng and request.headers.get("If-Range", self.etag) == self.etag:
            start = int(re.match(r"bytes=(\d+)-", rng).group(1))  # type: ignore[union-attr]
            if start >= len(self.data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(self.data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(self.data) - 1}/{len(self.data)}"
        body = self.data[start:]
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = self.declare if self.declare is not None else len(body)
        await resp.prepare(request)
        limit = self.cut_first_at if (self.cut_first_at is not None and len(self.seen) == 1) else None
        step = 64 * 1024
        for i in range(0, len(body), step):
            chunk = body[i : i + step]
            if limit is not None and i + len(chunk) > limit:
                await resp.write(chunk[: limit - i])
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-transfer
                return resp
            await resp.write(chunk)
            if self.delay:
                await asyncio.sleep(self.delay)
        if self.declare is not None and self.declare != len(body):
            assert request.transport is not None
            request.transport.close()  # fewer bytes than announced
            return resp
        await resp.write_eof()
        return resp


def _setup(tmp_path: Path) -> tuple[Path, Any]:
    root = tmp_path / "ComfyUI"
    (root / "models").mkdir(parents=True)
    return root, load_model_folders(StandaloneHost.from_root(root))


def _entry(url: str, filename: str = "model.safetensors", save_path: str = "checkpoints/SDXL") -> ModelEntry:
    return ModelEntry(name="Test model", type="checkpoint", filename=filename, url=url, save_path=save_path)


def _gate(mode: NetworkMode = NetworkMode.PUBLIC, **kw: Any) -> NetworkGate:
    return NetworkGate(NetworkPolicy(mode=mode, **kw))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_install_streams_reports_progress_and_lands_in_place(tmp_path: Path, http_server) -> None:
    data = _blob(3 * MB)
    http_server.route("GET", "/m.safetensors", ModelServer(data))
    root, folders = _setup(tmp_path)
    reports: list[Any] = []
    cache = HashCache(root / "user" / "__manager" / "cache" / "model-hashes.json")
    result = asyncio.run(
        install_entry(
            _entry(http_server.url("/m.safetensors")),
            gate=_gate(),
            folders=folders,
            sha256=hashlib.sha256(data).hexdigest(),
            hash_cache=cache,
            progress=reports.append,
        )
    )
    dest = root / "models" / "checkpoints" / "SDXL" / "model.safetensors"
    assert isinstance(result, InstallResult) and result.source == "url" and result.path == str(dest)
    assert dest.read_bytes() == data and result.size == len(data) == result.transferred
    assert result.rate > 0 and result.resumed_from == 0 and result.folder == "checkpoints"
    assert result.relpath == "SDXL/model.safetensors" and result.id == "checkpoints/SDXL/model.safetensors"
    assert reports and reports[-1].done == len(data) and reports[-1].total == len(data)
    assert reports[-1].percent == 100.0 and "MB" in reports[-1].line and "/s" in reports[-1].line
    assert _leftovers(dest.parent) == ["model.safetensors"]  # no .part, .part.json or lock left
    # the checked digest seeds the verify cache: nothing to hash later
    assert cache.lookup(dest) == hashlib.sha256(data).hexdigest() and cache.computed == 0
    # a second install finds the file and does not touch the network
    before = len(http_server.requests)
    again = asyncio.run(install_entry(_entry(http_server.url("/m.safetensors")), gate=_gate(), folders=folders))
    assert again.source == "existing" and len(http_server.requests) == before


def test_cut_connection_then_resume_with_range(tmp_path: Path, http_server) -> None:
    data = _blob(4 * MB, seed=2)
    server = ModelServer(data, cut_first_at=1 * MB + 12345)
    http_server.route("GET", "/m.bin", server)
    root, folders = _setup(tmp_path)
    entry = _entry(http_server.url("/m.bin"))
    dest = root / "models" / "checkpoints" / "SDXL" / "model.safetensors"
    with pytest.raises(DownloadIncomplete):
        asyncio.run(install_entry(entry, gate=_gate(), folders=folders))
    assert not dest.exists()  # never a partial under the final name
    part = dest.with_name(dest.name + ".part")
    kept = part.stat().st_size
    assert 0 < kept <= 1 * MB + 12345
    result = asyncio.run(install_entry(entry, gate=_gate(), folders=folders, sha256=hashlib.sha256(data).hexdigest()))
    assert dest.read_bytes() == data
    assert server.seen[-1]["Range"] == f"bytes={kept}-" and server.seen[-1]["If-Range"] == '"v1"'
    assert result.resumed_from == kept and result.transferred == len(data) - kept
    assert not part.exists()


def test_server_without_range_restarts_from_zero(tmp_path: Path, http_server) -> None:
    data = _blob(2 * MB, seed=3)
    server = ModelServer(data, ranges=False, cut_first_at=700_000)
    http_server.route("GET", "/norange.bin", server)
    root, folders = _setup(tmp_path)
    entry = _entry(http_server.url("/norange.bin"))
    with pytest.raises(DownloadIncomplete):
        asyncio.run(install_entry(entry, gate=_gate(), folders=folders))
    result = asyncio.run(install_entry(entry, gate=_gate(), folders=folders))
    assert "Range" in server.seen[-1]  # we asked ...
    assert result.resumed_from == 0 and result.transferred == len(data)  # ... the server sent it all
    assert Path(result.path).read_bytes() == data


def test_changed_file_on_server_restarts_via_if_range(tmp_path: Path, http_server) -> None:
    old, new = _blob(2 * MB, seed=4), _blob(2 * MB, seed=5)
    first = ModelServer(old, cut_first_at=500_000, etag='"old"')
    http_server.route("GET", "/m.bin", first)
    root, folders = _setup(tmp_path)
    entry = _entry(http_server.url("/m.bin"))
    with pytest.raises(DownloadIncomplete):
        asyncio.run(install_entry(entry, gate=_gate(), folders=folders))
    second = ModelServer(new, etag='"new"')
    http_server.route("GET", "/m.bin", second)
    result = asyncio.run(install_entry(entry, gate=_gate(), folders=folders))
    assert second.seen[0]["If-Range"] == '"old"'
    assert Path(result.path).read_bytes() == new  # no old bytes spliced in front


def test_sigkilled_download_resumes_in_another_process(tmp_path: Path, http_server) -> None:
    data = _blob(4 * MB, seed=6)
    server = ModelServer(data, delay=0.02)  # ~1.3 s in total: time to kill it
    http_server.route("GET", "/slow.bin", server)
    root, folders = _setup(tmp_path)
    url = http_server.url("/slow.bin")
    dest = root / "models" / "checkpoints" / "SDXL" / "model.safetensors"
    part = dest.with_name(dest.name + ".part")
    child = (
        "import asyncio, sys\n"
        "from manager.host import StandaloneHost\n"
        "from manager.models import install_entry, load_model_folders\n"
        "from manager.network import NetworkGate, NetworkPolicy\n"
        "from manager.records import ModelEntry\n"
        f"e = ModelEntry(name='t', type='checkpoint', filename='model.safetensors', url={url!r}, "
        "save_path='checkpoints/SDXL')\n"
        f"f = load_model_folders(StandaloneHost.from_root({str(root)!r}))\n"
        "asyncio.run(install_entry(e, gate=NetworkGate(NetworkPolicy()), folders=f))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < 1 * MB):
            assert proc.poll() is None, "the child finished before it could be killed"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL and not dest.exists()
    kept = part.stat().st_size
    assert MB <= kept < len(data)
    server.delay = 0.0
    result = asyncio.run(
        install_entry(_entry(url), gate=_gate(), folders=folders, sha256=hashlib.sha256(data).hexdigest())
    )
    assert dest.read_bytes() == data and result.resumed_from == kept
    assert server.seen[-1].get("Range") == f"bytes={kept}-"


def test_expected_size_mismatch_leaves_no_final_file(tmp_path: Path, http_server) -> None:
    data = _blob(1 * MB, seed=7)
    http_server.route("GET", "/m.bin", ModelServer(data))
    root, folders = _setup(tmp_path)
    with pytest.raises(DownloadIncomplete) as info:
        asyncio.run(
            install_entry(_entry(http_server.url("/m.bin")), gate=_gate(), folders=folders, size=len(data) + 10)
        )
    dest = root / "models" / "checkpoints" / "SDXL" / "model.safetensors"
    assert not dest.exists() and info.value.details["expected"] == len(data) + 10
    with pytest.raises(DownloadIncomplete):  # too big: the part is dropped
        asyncio.run(
            install_entry(_entry(http_server.url("/m.bin")), gate=_gate(), folders=folders, size=len(data) - 10)
        )
    assert not dest.exists() and "model.safetensors.part" not in _leftovers(dest.parent)


def test_short_body_against_content_length_is_incomplete(tmp_path: Path, http_server) -> None:
    data = _blob(1 * MB, seed=8)
    http_server.route("GET", "/short.bin", ModelServer(data, ranges=False, declare=len(data) + 5000))
    root, folders = _setup(tmp_path)
    with pytest.raises(DownloadIncomplete):
        asyncio.run(install_entry(_entry(http_server.url("/short.bin")), gate=_gate(), folders=folders))
    assert "model.safetensors" not in _leftovers(root / "models" / "checkpoints" / "SDXL")


def test_sha256_mismatch_leaves_nothing(tmp_path: Path, http_server) -> None:
    data = _blob(1 * MB, seed=9)
    http_server.route("GET", "/m.bin", ModelServer(data))
    root, folders = _setup(tmp_path)
    with pytest.raises(ChecksumMismatch) as info:
        asyncio.run(install_entry(_entry(http_server.url("/m.bin")), gate=_gate(), folders=folders, sha256="0" * 64))
    assert info.value.code == "checksum_mismatch"
    assert _leftovers(root / "models" / "checkpoints" / "SDXL") == []
    with pytest.raises(InvalidName):
        asyncio.run(install_entry(_entry(http_server.url("/m.bin")), gate=_gate(), folders=folders, sha256="../../etc"))


def test_http_error_and_unsupported_sources(tmp_path: Path, http_server) -> None:
    root, folders = _setup(tmp_path)
    with pytest.raises(HttpStatusError) as info:
        asyncio.run(install_entry(_entry(http_server.url("/missing.bin")), gate=_gate(), folders=folders))
    assert info.value.details["status"] == 404
    hf = ModelEntry(
        name="repo", type="Janus-Pro", filename="<huggingface>", url="deepseek-ai/Janus-Pro-1B", save_path="Janus-Pro"
    )
    with pytest.raises(ModelSourceUnsupported):
        asyncio.run(install_entry(hf, gate=_gate(), folders=folders))
    assert not (root / "models" / "checkpoints" / "SDXL").exists()


def test_cancel_mid_download_keeps_no_final_file_and_resumes(tmp_path: Path, http_server) -> None:
    data = _blob(3 * MB, seed=10)
    http_server.route("GET", "/m.bin", ModelServer(data))
    root, folders = _setup(tmp_path)
    calls = {"n": 0}

    def cancel_after_some_chunks() -> None:
        calls["n"] += 1
        if calls["n"] > 8:
            raise TaskCancelled("t1")

    entry = _entry(http_server.url("/m.bin"))
    with pytest.raises(TaskCancelled):
        asyncio.run(install_entry(entry, gate=_gate(), folders=folders, check_cancelled=cancel_after_some_chunks))
    dest = root / "models" / "checkpoints" / "SDXL" / "model.safetensors"
    assert not dest.exists() and dest.with_name(dest.name + ".part").stat().st_size > 0
    result = asyncio.run(install_entry(entry, gate=_gate(), folders=folders))
    assert result.resumed_from > 0 and dest.read_bytes() == data


def _channel_manager(
    tmp_path: Path, local_channel: Path, models: list[dict[str, Any]], env: dict[str, str] | None = None
) -> Manager:
    (local_channel / "model-list.json").write_text(json.dumps({"models": models}), encoding="utf-8")
    root = tmp_path / "ComfyUI"
    (root / "models").mkdir(parents=True, exist_ok=True)
    return Manager.standalone(root, env={"CM_CHANNEL_URL": local_channel.as_uri(), **(env or {})})


def test_runner_installs_by_id_and_reports_progress(tmp_path: Path, http_server, local_channel: Path) -> None:
    data = _blob(2 * MB, seed=11)
    http_server.route("GET", "/lora.safetensors", ModelServer(data))
    manager = _channel_manager(
        tmp_path,
        local_channel,
        [
            {
                "name": "Test LoRA",
                "type": "lora",
                "base": "SDXL",
                "save_path": "loras/test",
                "description": "",
                "reference": "",
                "filename": "lora.safetensors",
                "url": http_server.url("/lora.safetensors"),
                "size": "2MB",
            }
        ],
    )
    events: list[Any] = []
    manager.queue.subscribe(events.append)
    task = manager.queue.enqueue(TaskSpec("install_model", "loras/test/lora.safetensors"))
    assert manager.queue.run_until_idle(60)
    done = manager.queue.get(task.id)
    assert done.state is TaskState.DONE, done.error
    assert done.result and done.result["source"] == "url" and done.result["listed"] is True
    dest = manager.layout.models_dir / "loras" / "test" / "lora.safetensors"
    assert dest.read_bytes() == data
    progress = [e.data for e in events if e.name == "progress"]
    assert {"resolve", "download", "done"} <= {p["stage"] for p in progress}
    assert any(p["stage"] == "download" and p["line"] and "/s" in p["line"] for p in progress)
    manager.queue.stop(5)


def test_runner_accepts_a_classic_payload_and_reports_errors(tmp_path: Path, http_server, local_channel: Path) -> None:
    data = _blob(1 * MB, seed=12)
    http_server.route("GET", "/vae.pt", ModelServer(data))
    manager = _channel_manager(tmp_path, local_channel, [])
    classic = {
        "name": "Some VAE",
        "type": "VAE",
        "base": "SD1.5",
        "save_path": "default",
        "filename": "vae.pt",
        "url": http_server.url("/vae.pt"),
        "size": "1MB",
    }
    ok = manager.queue.enqueue(TaskSpec("install_model", "Some VAE", classic))
    bad = manager.queue.enqueue(TaskSpec("install_model", "evil", {**classic, "filename": "../../x.pt"}))
    assert manager.queue.run_until_idle(60)
    first, second = manager.queue.get(ok.id), manager.queue.get(bad.id)
    assert first.state is TaskState.DONE and first.result and first.result["listed"] is False
    assert (manager.layout.models_dir / "vae" / "vae.pt").read_bytes() == data
    assert second.state is TaskState.FAILED and second.error and second.error["code"] == "path_escape"
    manager.queue.stop(5)
