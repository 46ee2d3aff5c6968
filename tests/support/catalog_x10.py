"""A channel ten times the real one (issue 21 item 3): 59k packs derived from the real channel DB.

Copy 0 is the real channel unchanged; copy k (1..9) repeats every pack with its id and its URLs
made unique (``<id>-x<k>``, ``<repo URL>-x<k>``), and every text field (title, author,
description, tags, node names) kept, so search, ranking and encoding meet real text. The node
map and the GitHub stats follow the renamed URLs; the model list and the alternatives are kept.
Written once per source content into a cache folder (the benchmarks and tests reuse it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

FACTOR = 10
FILES = ("custom-node-list.json", "extension-node-map.json", "github-stats.json", "model-list.json", "alter-list.json")


def _renamed(url: str, k: int) -> str:
    if not k or not isinstance(url, str) or not url:
        return url
    base = url[:-4] if url.endswith(".git") else url.rstrip("/")
    return f"{base}-x{k}"


def _pack(entry: dict[str, Any], k: int) -> dict[str, Any]:
    if not k:
        return entry
    out = dict(entry)
    if out.get("id"):
        out["id"] = f"{out['id']}-x{k}"
    for key in ("reference", "repository"):
        if isinstance(out.get(key), str):
            out[key] = _renamed(out[key], k)
    if isinstance(out.get("files"), list):
        out["files"] = [_renamed(f, k) for f in out["files"]]
    return out


def build(src: Path, dest: Path, factor: int = FACTOR) -> Path:
    """Write the enlarged channel of ``src`` (a channel folder) into ``dest``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    nodes = json.loads((src / "custom-node-list.json").read_text(encoding="utf-8"))
    packs = nodes["custom_nodes"]
    nodes["custom_nodes"] = [_pack(p, k) for k in range(factor) for p in packs]
    node_map = json.loads((src / "extension-node-map.json").read_text(encoding="utf-8"))
    stats = json.loads((src / "github-stats.json").read_text(encoding="utf-8"))
    big_map = {_renamed(url, k): v for k in range(factor) for url, v in node_map.items()}
    big_stats = {_renamed(url, k): v for k in range(factor) for url, v in stats.items()}
    for name, data in (
        ("custom-node-list.json", nodes),
        ("extension-node-map.json", big_map),
        ("github-stats.json", big_stats),
    ):
        (dest / name).write_text(json.dumps(data), encoding="utf-8")
    for name in ("model-list.json", "alter-list.json"):
        if (src / name).exists():
            shutil.copyfile(src / name, dest / name)
    return dest


def channel_x10(channel_db: Path, factor: int = FACTOR) -> Path:
    """The enlarged copy of ``channel_db/default``, built once per source content and cached."""
    src = channel_db / "default"
    digest = hashlib.sha256()
    for name in FILES:
        if (src / name).exists():
            digest.update(name.encode() + (src / name).read_bytes())
    digest.update(str(factor).encode())
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache_root = Path(tempfile.gettempdir())
    dest = cache_root / "comfyui-offline-manager-tests" / f"channel-x{factor}-{digest.hexdigest()[:12]}"
    if (dest / "custom-node-list.json").exists():
        return dest
    staging = Path(tempfile.mkdtemp(prefix=".x10-", dir=dest.parent if dest.parent.exists() else None))
    build(src, staging, factor)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.rename(dest)
    except OSError:  # another process made it first
        shutil.rmtree(staging, ignore_errors=True)
    return dest
