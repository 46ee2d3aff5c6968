"""Model verify through every door (issue 19, item 8): sha256 from the channel's model-list.json, the
hash cache reused, ``GET /v1/models/verify`` on the real app, ``cm-cli.py models verify [--sha256]`` (and
``models`` still the list); a ``.part`` without its metadata sidecar resumes with a range request after
a HEAD told the size and validators (a loopback server serving real bytes with Range support)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from aiohttp import web

from manager.api.routes import PREFIX
from manager.catalog_parse import parse_model_list
from manager.host import StandaloneHost
from manager.models import install_entry, load_model_folders
from manager.network import NetworkGate, NetworkMode, NetworkPolicy
from manager.records import ModelEntry

REPO = Path(__file__).resolve().parent.parent
GOOD = b"good model bytes\n" * 64
BAD = b"a different file\n" * 64
LOOSE = b"no digest listed\n" * 64


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _model_list(root: Path) -> None:
    """The demo channel's model list with digests: one right, one that the file on disk does not match."""
    base = {"type": "checkpoint", "base": "SD1.5", "save_path": "default", "reference": "", "description": ""}
    models = [
        {**base, "name": "Good", "filename": "good.safetensors", "url": "https://example.invalid/g", "size": "1KB"},
        {
            **base,
            "name": "Bad",
            "filename": "bad.safetensors",
            "url": "https://example.invalid/b",
            "size": "1KB",
            "sha256": "SHA256:" + _sha(GOOD).upper(),  # prefix and case tolerated
        },
        {**base, "name": "Loose", "filename": "loose.safetensors", "url": "https://example.invalid/l", "size": "1KB"},
    ]
    models[0]["sha256"] = _sha(GOOD)
    (root.parent / "demo-channel" / "model-list.json").write_text(json.dumps({"models": models}), encoding="utf-8")
    folder = root / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "good.safetensors").write_bytes(GOOD)
    (folder / "bad.safetensors").write_bytes(BAD)
    (folder / "loose.safetensors").write_bytes(LOOSE)


def test_model_list_sha256_is_read_and_a_bad_one_is_an_issue():
    parsed = parse_model_list(
        json.dumps(
            {
                "models": [
                    {
                        "name": "a",
                        "type": "checkpoint",
                        "filename": "a.bin",
                        "url": "https://x/a",
                        "sha256": _sha(b""),
                    },
                    {"name": "b", "type": "checkpoint", "filename": "b.bin", "url": "https://x/b", "sha256": "nope"},
                ]
            }
        ).encode()
    )
    entries = {m.name: m for m in parsed.items}
    assert entries["a"].sha256 == _sha(b"") and entries["b"].sha256 == ""
    assert any(i.problem.startswith("invalid_sha256:") for i in parsed.issues)


async def test_verify_route_on_the_real_app_uses_the_model_list_and_the_hash_cache(aiohttp_client, api_app):
    app, api, root = api_app()
    _model_list(root)
    client = await aiohttp_client(app)
    resp = await client.get(PREFIX + "/models/verify", params={"sha256": "true"})
    body = await resp.json()
    assert resp.status == 200, body
    data = body["data"]
    by_name = {f["name"]: f for f in data["findings"]}
    assert by_name["good.safetensors"]["status"] == "ok"
    assert by_name["good.safetensors"]["expected_sha256"] == _sha(GOOD)
    assert by_name["bad.safetensors"]["status"] == "sha_mismatch"
    assert by_name["bad.safetensors"]["actual_sha256"] == _sha(BAD)
    assert by_name["loose.safetensors"]["status"] != "sha_mismatch"  # no digest listed: the size decides
    assert data["ok"] is False and data["counts"]["sha_mismatch"] == 1 and data["hashed"] >= 3
    assert any("none in the cache" in n and "2 of 3 entries" in n for n in data["notes"])
    # again: every digest comes from the hash cache
    again = (await (await client.get(PREFIX + "/models/verify", params={"sha256": "true"})).json())["data"]
    assert again["hashed"] == 0 and again["counts"]["sha_mismatch"] == 1
    # without sha256=true the cached digests are still compared; nothing is hashed
    quick = (await (await client.get(PREFIX + "/models/verify")).json())["data"]
    assert quick["hashed"] == 0 and quick["with_sha256"] is False and quick["counts"]["sha_mismatch"] == 1
    bad = await client.get(PREFIX + "/models/verify", params={"sha256": "maybe"})
    assert bad.status == 400


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_") and k != "COMFYUI_PATH"}
    return subprocess.run(
        [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_cli_models_verify_and_models_still_lists(api_app):
    _app, _api, root = api_app()
    _model_list(root)
    listed = _cli(root, "models")
    assert listed.returncode == 0, listed.stderr
    assert "good.safetensors" in listed.stdout
    quick = _cli(root, "models", "verify")  # nothing hashed yet: size checks, the listed digest named as unchecked
    assert quick.returncode == 0, quick.stdout + quick.stderr
    assert "run verify with --sha256" in quick.stdout
    full = _cli(root, "models", "verify", "--sha256")
    assert full.returncode == 1, full.stdout + full.stderr
    assert "sha_mismatch: checkpoints/bad.safetensors" in full.stdout
    assert "none in the cache" in full.stdout
    doc = json.loads(_cli(root, "--json", "models", "verify").stdout)
    assert doc["ok"] is False and doc["error"]["code"] == "checksum_mismatch"


class RangeServer:
    """Serves ``data`` for GET (Range + If-Range) and HEAD (size, ETag, Accept-Ranges)."""

    def __init__(self, data: bytes, *, ranges: bool = True, etag: str = '"v1"') -> None:
        self.data, self.ranges, self.etag = data, ranges, etag
        self.seen: list[tuple[str, dict[str, str]]] = []

    def headers(self) -> dict[str, str]:
        return {"ETag": self.etag, "Accept-Ranges": "bytes" if self.ranges else "none"}

    async def head(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(("HEAD", dict(request.headers)))
        resp = web.StreamResponse(status=200, headers=self.headers())
        resp.content_length = len(self.data)
        await resp.prepare(request)
        return resp

    async def get(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(("GET", dict(request.headers)))
        headers, start, status = self.headers(), 0, 200
        rng = request.headers.get("Range")
        if self.ranges and rng and request.headers.get("If-Range", self.etag) == self.etag:
            start = int(re.match(r"bytes=(\d+)-", rng).group(1))  # type: ignore[union-attr]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(self.data) - 1}/{len(self.data)}"
        return web.Response(body=self.data[start:], status=status, headers=headers)


def _orphan_part(tmp_path: Path, data: bytes, kept: int) -> tuple[Path, object, Path]:
    root = tmp_path / "ComfyUI"
    (root / "models").mkdir(parents=True)
    folders = load_model_folders(StandaloneHost.from_root(root))
    dest = root / "models" / "checkpoints" / "m.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.with_name(dest.name + ".part").write_bytes(data[:kept])  # and no .part.json beside it
    return root, folders, dest


def test_a_part_without_metadata_resumes_with_a_range_after_a_head(tmp_path: Path, http_server):
    data = os.urandom(3 << 20)
    server = RangeServer(data)
    http_server.route("HEAD", "/m.bin", server.head)
    http_server.route("GET", "/m.bin", server.get)
    _root, folders, dest = _orphan_part(tmp_path, data, 1 << 20)
    entry = ModelEntry(name="M", type="checkpoint", filename="m.safetensors", url=http_server.url("/m.bin"))
    gate = NetworkGate(NetworkPolicy(mode=NetworkMode.PUBLIC))
    result = asyncio.run(install_entry(entry, gate=gate, folders=folders, sha256=_sha(data)))
    assert dest.read_bytes() == data
    assert [m for m, _ in server.seen] == ["HEAD", "GET"]
    get = server.seen[1][1]
    assert get["Range"] == f"bytes={1 << 20}-" and get["If-Range"] == '"v1"'
    assert result.resumed_from == 1 << 20 and result.transferred == len(data) - (1 << 20)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["m.safetensors"]  # no .part, no sidecar left


def test_a_part_without_metadata_restarts_when_the_server_takes_no_ranges(tmp_path: Path, http_server):
    data = os.urandom(1 << 20)
    server = RangeServer(data, ranges=False)
    http_server.route("HEAD", "/n.bin", server.head)
    http_server.route("GET", "/n.bin", server.get)
    _root, folders, dest = _orphan_part(tmp_path, b"stale bytes from elsewhere" * 100, 2000)
    entry = ModelEntry(name="N", type="checkpoint", filename="m.safetensors", url=http_server.url("/n.bin"))
    gate = NetworkGate(NetworkPolicy(mode=NetworkMode.PUBLIC))
    result = asyncio.run(install_entry(entry, gate=gate, folders=folders))
    assert dest.read_bytes() == data and result.resumed_from == 0
    assert [m for m, _ in server.seen] == ["HEAD", "GET"] and "Range" not in server.seen[1][1]
