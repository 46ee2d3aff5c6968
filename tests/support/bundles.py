"""Offline bundles made from real parts without any network: a creator tree whose git mirror
already holds a pack's bare repository (so ``https://example.invalid/test/<pack>`` resolves to it,
the lookup under test) and whose registry archive cache holds a real zip; a snapshot file naming
both is the selection. Also a rewriter that tampers with a bundle's members (same order)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.fake_registry import FakeRegistry, make_node, make_version
from support.gitrepos import RepoInfo, git, make_repo
from support.ops_fixtures import build_zip, cnr_files, write_config

GIT_HOST = "example.invalid"


@dataclass
class Creator:
    root: Path
    snapshot: Path
    repo: RepoInfo
    pack_url: str
    cnr_id: str
    cnr_version: str


def make_tree(root: Path, **settings: object) -> Path:
    for sub in ("custom_nodes", "models", "user/__manager"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text("# ComfyUI stand-in\n")
    write_config(root, **{"network_mode": "offline", **settings})
    return root


def make_creator(base: Path, *, pack: str = "pack-a", cnr_id: str = "reg-pack", cnr_version: str = "1.0.0") -> Creator:
    """An offline ComfyUI tree that can bundle a git pack (from its git mirror) and a registry pack
    (from its archive cache); ``snapshot`` is the selection file."""
    from manager.snapshots.model import PackState, Snapshot
    from manager.snapshots.store import dump

    root = make_tree(base / "creator" / "ComfyUI")
    repo = make_repo(base / "sources" / pack, name=pack)
    # no requirements at the bundled head: an offline creator cannot download wheels (that is refused)
    git(repo.path, "rm", "-q", "requirements.txt")
    git(repo.path, "commit", "-q", "-m", "no requirements")
    repo.commits.append(git(repo.path, "rev-parse", "HEAD"))
    mirror = root / "user" / "__manager" / "git-mirror" / GIT_HOST / "test" / f"{pack}.git"
    mirror.parent.mkdir(parents=True)
    git(base, "clone", "-q", "--mirror", str(repo.path), str(mirror))
    build_zip(
        root / "user" / "__manager" / "cache" / "archives" / "cnr" / cnr_id / f"{cnr_version}.zip",
        cnr_files(cnr_id, cnr_version),
    )
    url = f"https://{GIT_HOST}/test/{pack}"
    snap = Snapshot(
        created_at="2026-12-01T00:00:00Z",
        packs=(
            PackState(name=pack, kind="git", id=pack, url=url, commit=repo.commits[-1], branch="main"),
            PackState(name=cnr_id, kind="cnr", id=cnr_id, version=cnr_version, cnr_id=cnr_id),
        ),
    )
    snapshot = base / "selection.json"
    snapshot.write_bytes(dump(snap))
    return Creator(root, snapshot, repo, url, cnr_id, cnr_version)


def members(bundle: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(bundle, "r:") as tar:
        out = []
        for info in tar:
            fh = tar.extractfile(info)
            out.append((info.name, fh.read() if fh else b""))
        return out


def rewrite(bundle: Path, dest: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """A copy of ``bundle`` with each member's bytes passed through ``change`` (None drops it)."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members(bundle):
            new = change(name, data)
            if new is None:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(new)
            tar.addfile(info, io.BytesIO(new))
    return dest


def drop_manifest_entry(member: str) -> Callable[[str, bytes], bytes | None]:
    def change(name: str, data: bytes) -> bytes | None:
        if name != "manifest.json":
            return data
        doc = json.loads(data)
        doc["files"] = [f for f in doc["files"] if f["path"] != member]
        return json.dumps(doc, indent=1).encode()

    return change


def serve_registry_pack(http_server: Any, work: Path, cnr_id: str, requirements: str) -> None:
    """The registry stand-in under ``/api`` with one pack (publisher ``pub``, version 1.0.0) whose
    zip (carrying ``requirements``) is served from a loopback "CDN" under ``/cdn``."""
    zpath = build_zip(work / "zips" / "node.zip", cnr_files(cnr_id, "1.0.0", extra={"requirements.txt": requirements}))
    http_server.static(f"/cdn/pub/{cnr_id}/1.0.0/node.zip", zpath.read_bytes(), content_type="application/zip")
    versions = [
        make_version(cnr_id, "pub", "1.0.0", created_at="2025-01-01T00:00:00Z", download_base=http_server.url("/cdn"))
    ]
    node = make_node(
        cnr_id,
        name="Reg",
        publisher_id="pub",
        publisher_name="Pub",
        repository="https://example.invalid/r",
        versions=versions,
    )
    FakeRegistry([node], {cnr_id: versions}, prefix="/api").install(http_server)


def model_selection(creator: Creator, work: Path, data: bytes) -> tuple[Path, Path]:
    """A 4 KiB lora ``tiny.safetensors`` (of ``data``, repeated) in the creator's models folder and a
    selection file naming the creator's git pack and that model: (model path, selection path)."""
    from manager.snapshots.model import ModelState, PackState, Snapshot
    from manager.snapshots.store import dump

    model = creator.root / "models" / "loras" / "tiny.safetensors"
    model.parent.mkdir(parents=True)
    model.write_bytes(data * 4096)
    snap = Snapshot(
        created_at="2026-12-01T00:00:00Z",
        packs=(PackState(name="pack-a", kind="git", id="pack-a", url=creator.pack_url),),
        models=(ModelState(folder="loras", name="tiny.safetensors", size=4096),),
    )
    selection = work / "with-models.json"
    selection.write_bytes(dump(snap))
    return model, selection


def online_config(channel: str, registry: str, index: str, python: Path) -> list[str]:
    """config.ini lines of an online (public mode) box whose channel, registry and package index are
    the given loopback URLs, installing into the venv of ``python``."""
    return [
        "[default]",
        "network_mode = public",
        f"channel_url = {channel}",
        f"registry_url = {registry}",
        f"pip_index_url = {index}",
        f"python_executable = {python}",
        "http_channel_enabled = true",
        "[security]",
        "allow_remote_channel = true",
    ]
