"""``cm-cli.py bundle import`` rebuilds the persisted pack lists when it wrote the local channel
(issue 21): a server started after the import answers its first list from the file, with the
bundled packs, parsing nothing. Real parts: a bundle made here with the core API from a real git
mirror and archive cache, the CLI as a subprocess, the HTTP door over the same tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from manager.api.standalone import build_app
from manager.bundles import Selection, create_bundle
from manager.context import Manager
from support import tools
from support.api_tree import make_api
from support.bundles import make_creator, make_tree

REPO = Path(__file__).resolve().parents[1]


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(root), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=dict(os.environ))


async def test_bundle_import_rebuilds_the_persisted_lists(tmp_path: Path, aiohttp_client) -> None:
    tools.require("git")
    creator = make_creator(tmp_path)
    bundle = create_bundle(
        Manager.standalone(creator.root, env={}), Selection(snapshot=str(creator.snapshot)), tmp_path / "b.tar"
    )
    box = tmp_path / "box" / "ComfyUI"
    make_tree(box, channel_url=(box / "user" / "__manager" / "local-channel").as_uri())
    lists = box / "user" / "__manager" / "cache" / "lists"
    out = _cli(box, "bundle", "import", bundle.path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "pack lists rebuilt for the next start (2 files" in out.stderr, out.stderr
    assert sorted(p.name for p in lists.iterdir()) == ["classic.bin", "v1.bin"]

    api = make_api(box)
    try:
        client = await aiohttp_client(build_app(api))
        v1 = await (await client.get("/offline-manager/v1/packs")).json()
        await api.listing.settled()
    finally:
        api.manager.queue.stop(timeout=10)
    assert api.manager.parse_cache.parses == 0 and api.listing.store.loads >= 1 and api.listing.store.rejects == 0
    assert {p["id"] for p in v1["data"]["packs"]} >= {"pack-a", "reg-pack"}

    # the same bundle again writes no channel file: nothing to rebuild
    out = _cli(box, "bundle", "import", bundle.path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "pack lists rebuilt" not in out.stderr, out.stderr
