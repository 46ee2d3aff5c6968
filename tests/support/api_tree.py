"""A ComfyUI tree for API tests: the demo tree (real git packs, a file:// channel, offline) with
the config.ini a test asks for, and an ``HttpDoor`` with real runners plus the test's own."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from manager.api.door import HttpDoor
from manager.api.standalone import build_app, prepare
from manager.context import Manager
from manager.demo import create_demo_tree

_TEMPLATE: dict[str, Path] = {}


def demo_root(tmp_path: Path) -> Path:
    """A fresh copy of the demo tree (built once per session, then copied: git init is slow)."""
    if "demo" not in _TEMPLATE or not _TEMPLATE["demo"].exists():
        import tempfile

        base = Path(tempfile.mkdtemp(prefix="cm-api-demo-"))
        create_demo_tree(base)
        _TEMPLATE["demo"] = base
    dest = tmp_path / "demo"
    shutil.copytree(_TEMPLATE["demo"], dest, symlinks=True)
    # absolute paths inside the template point at the template: rewrite them to the copy
    old, new = str(_TEMPLATE["demo"]), str(dest)
    for rel in (
        "demo-channel/custom-node-list.json",
        "demo-channel/extension-node-map.json",
        "demo-channel/model-list.json",
        "ComfyUI/user/__manager/channels.list",
    ):
        path = dest / rel
        path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    return dest / "ComfyUI"


def write_config(root: Path, *, default: str = "", security: str = "", network_mode: str = "offline") -> Path:
    channel = root.parent / "demo-channel"
    path = root / "user" / "__manager" / "config.ini"
    path.write_text(
        f"[default]\nnetwork_mode = {network_mode}\nchannel_url = {channel.as_uri()}\n{default}\n"
        f"[security]\n{security}\n",
        encoding="utf-8",
    )
    return path


def make_api(
    root: Path, *, listen: str = "127.0.0.1", extra: Mapping[str, Any] | None = None, restart: Any = None
) -> HttpDoor:
    manager = Manager.standalone(root)
    api = prepare(manager, host=listen, extra_runners=extra)
    api.restart = restart
    return api


@pytest.fixture
def api_app(tmp_path: Path):
    """``make(**kw) -> (aiohttp app, HttpDoor, ComfyUI root)`` over a fresh demo tree; queues stopped after."""
    apis: list[HttpDoor] = []

    def make(**kw: Any):
        root = demo_root(tmp_path)
        write_config(root, **{k: kw.pop(k) for k in ("default", "security", "network_mode") if k in kw})
        api = make_api(root, **kw)
        apis.append(api)
        return build_app(api), api, root

    yield make
    for api in apis:
        api.manager.queue.stop(timeout=10)


async def ws_messages(ws: Any, until: Any, timeout: float = 30.0) -> list[dict]:
    """The JSON messages ``ws`` receives until one satisfies ``until`` (all of them, that one last)."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = await ws.receive_json(timeout=max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            break
        seen.append(msg)
        if until(msg):
            return seen
    raise AssertionError(f"condition not met; got {[m['type'] for m in seen]}")
