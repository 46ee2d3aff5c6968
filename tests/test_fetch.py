"""NetworkGate.download: temp file, size and sha256 checks, Range resume, truncation."""

from __future__ import annotations

import hashlib
import json

import pytest
from aiohttp import web

from manager.errors import ChecksumMismatch, DownloadIncomplete, HttpStatusError, LockBusy, NetworkBlocked
from manager.fsops import file_lock
from manager.network import NetworkGate, NetworkMode, NetworkPolicy

DATA = bytes(range(256)) * 1024  # 256 KiB, several chunks
SHA = hashlib.sha256(DATA).hexdigest()


def gate(mode: NetworkMode = NetworkMode.PUBLIC, **kw) -> NetworkGate:
    return NetworkGate(NetworkPolicy(mode=mode, **kw))


def serve_file(data: bytes, *, ranges: bool, etag: str = '"f1"', cut_at: int | None = None):
    """A file handler; ``ranges`` honours Range/If-Range; ``cut_at`` drops the connection there."""

    async def handler(request: web.Request) -> web.StreamResponse:
        start, status = 0, 200
        rng = request.headers.get("Range", "")
        if_range = request.headers.get("If-Range")
        if ranges and rng.startswith("bytes=") and (if_range is None or if_range == etag):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            status = 206
        body = data[start:]
        headers = {"Content-Length": str(len(body)), "ETag": etag, "Content-Type": "application/octet-stream"}
        if ranges:
            headers["Accept-Ranges"] = "bytes"
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        resp = web.StreamResponse(status=status, headers=headers)
        await resp.prepare(request)
        if cut_at is not None and start < cut_at:
            await resp.write(body[: cut_at - start])
            request.transport.close()
            return resp
        await resp.write(body)
        return resp

    return handler


async def test_download_checks_and_renames_into_place(http_server, tmp_path):
    http_server.route("GET", "/m.safetensors", serve_file(DATA, ranges=True))
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "models" / "m.safetensors"
    out = await gate().download(
        http_server.url("/m.safetensors"),
        dest,
        expected_size=len(DATA),
        sha256=SHA,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert out == dest and dest.read_bytes() == DATA
    assert seen[-1] == (len(DATA), len(DATA)) and len(seen) > 1
    assert sorted(p.name for p in dest.parent.iterdir()) == ["m.safetensors"]  # no .part, lock, meta


async def test_interrupted_download_keeps_part_and_resumes_with_range(http_server, tmp_path):
    http_server.route("GET", "/m.bin", serve_file(DATA, ranges=True, cut_at=100_000))
    dest = tmp_path / "m.bin"
    with pytest.raises(DownloadIncomplete) as info:
        await gate().download(http_server.url("/m.bin"), dest, sha256=SHA)
    assert "resume" in info.value.hint
    part = tmp_path / "m.bin.part"
    assert not dest.exists() and part.exists() and 0 < part.stat().st_size <= 100_000
    have = part.stat().st_size
    http_server.route("GET", "/m.bin", serve_file(DATA, ranges=True))
    await gate().download(http_server.url("/m.bin"), dest, expected_size=len(DATA), sha256=SHA)
    assert dest.read_bytes() == DATA and not part.exists()
    last = http_server.requests[-1].headers
    assert last["Range"] == f"bytes={have}-" and last["If-Range"] == '"f1"'


async def test_resume_restarts_when_server_ignores_range(http_server, tmp_path):
    http_server.route("GET", "/m.bin", serve_file(DATA, ranges=False))
    dest = tmp_path / "m.bin"
    (tmp_path / "m.bin.part").write_bytes(DATA[:5000])
    await gate().download(http_server.url("/m.bin"), dest, expected_size=len(DATA), sha256=SHA)
    assert dest.read_bytes() == DATA  # not appended twice
    # a .part without its metadata is kept only when the server takes ranges (checked first with HEAD);
    # this one does not, so the download starts again from zero instead of asking for the rest
    assert [r.method for r in http_server.requests][-2:] == ["HEAD", "GET"]
    assert "Range" not in http_server.requests[-1].headers


async def test_resume_restarts_when_file_changed_upstream(http_server, tmp_path):
    new = DATA[::-1]
    http_server.route("GET", "/m.bin", serve_file(new, ranges=True, etag='"f2"'))
    dest = tmp_path / "m.bin"
    (tmp_path / "m.bin.part").write_bytes(DATA[:5000])
    (tmp_path / "m.bin.part.json").write_text(json.dumps({"url": http_server.url("/m.bin"), "etag": '"f1"'}))
    await gate().download(http_server.url("/m.bin"), dest, sha256=hashlib.sha256(new).hexdigest())
    assert dest.read_bytes() == new


async def test_complete_part_is_finished_after_416(http_server, tmp_path):
    http_server.route("GET", "/m.bin", serve_file(DATA, ranges=True))
    dest = tmp_path / "m.bin"
    (tmp_path / "m.bin.part").write_bytes(DATA)
    await gate().download(http_server.url("/m.bin"), dest, sha256=SHA)
    assert dest.read_bytes() == DATA


async def test_checksum_mismatch_leaves_nothing(http_server, tmp_path):
    http_server.route("GET", "/m.bin", serve_file(DATA, ranges=True))
    dest = tmp_path / "m.bin"
    with pytest.raises(ChecksumMismatch) as info:
        await gate().download(http_server.url("/m.bin"), dest, sha256="0" * 64)
    assert info.value.details["sha256"] == SHA
    assert list(tmp_path.iterdir()) == []


async def test_size_mismatch_is_rejected_and_old_file_kept(http_server, tmp_path):
    http_server.route("GET", "/m.bin", serve_file(DATA, ranges=True))
    dest = tmp_path / "m.bin"
    dest.write_bytes(b"old version")
    with pytest.raises(DownloadIncomplete):
        await gate().download(http_server.url("/m.bin"), dest, expected_size=len(DATA) - 1)
    assert dest.read_bytes() == b"old version"
    assert not (tmp_path / "m.bin.part").exists()


async def test_truncated_get_is_rejected(http_server):
    http_server.route("GET", "/t.json", serve_file(b'{"a": 1}' * 1000, ranges=False, cut_at=100))
    with pytest.raises(DownloadIncomplete):
        await gate().get(http_server.url("/t.json"))


async def test_http_error_and_no_resume(http_server, tmp_path):
    dest = tmp_path / "x.bin"
    with pytest.raises(HttpStatusError):
        await gate().download(http_server.url("/nope"), dest)
    assert not dest.exists()
    http_server.route("GET", "/x.bin", serve_file(DATA, ranges=True))
    (tmp_path / "x.bin.part").write_bytes(b"garbage")
    await gate().download(http_server.url("/x.bin"), dest, resume=False, sha256=SHA)
    assert dest.read_bytes() == DATA and "Range" not in http_server.requests[-1].headers


async def test_local_source_downloads_offline(tmp_path, socket_audit_log):
    src = tmp_path / "bundle" / "m.bin"
    src.parent.mkdir()
    src.write_bytes(DATA)
    dest = tmp_path / "models" / "m.bin"
    await gate(NetworkMode.OFFLINE).download(src.as_uri(), dest, expected_size=len(DATA), sha256=SHA)
    assert dest.read_bytes() == DATA
    assert socket_audit_log.inet_connects() == []


async def test_same_destination_twice_is_refused(http_server, tmp_path):
    http_server.route("GET", "/m.bin", serve_file(DATA, ranges=True))
    dest = tmp_path / "m.bin"
    with file_lock(tmp_path / ".m.bin.lock"):  # another download holds it
        with pytest.raises(LockBusy):
            await gate().download(http_server.url("/m.bin"), dest)
    assert not dest.exists()


async def test_download_in_private_mode_goes_through_mirror_map(http_server, tmp_path, socket_audit_log):
    http_server.route("GET", "/hf/org/repo/resolve/main/m.bin", serve_file(DATA, ranges=True))
    mirror = http_server.url("/hf")
    g = gate(NetworkMode.PRIVATE, private_mirrors=(mirror,), mirror_map=(("https://huggingface.co", mirror),))
    dest = tmp_path / "m.bin"
    await g.download("https://huggingface.co/org/repo/resolve/main/m.bin", dest, sha256=SHA)
    assert dest.read_bytes() == DATA
    with pytest.raises(NetworkBlocked):
        await g.download("https://civitai.com/api/download/models/1", tmp_path / "c.bin")
    assert all(addr[0] == "127.0.0.1" for addr in socket_audit_log.inet_connects())
