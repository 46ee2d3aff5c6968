"""Refusals whose facts are known when a task is submitted are answers, not failed tasks (issue 17).

A pack on the admin's known-compromise list is refused by the v1 queue with 403 at once and by
the CLI before anything is queued; nothing runs and the tree is unchanged.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from manager.api.routes import PREFIX
from support.api_tree import demo_root
from support.treesum import listing

REPO = Path(__file__).resolve().parents[1]


def _list_compromised(root: Path, line: str) -> None:
    path = root / "user" / "__manager" / "compromised.list"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(line + "\n", encoding="utf-8")


async def test_v1_queue_refuses_a_listed_pack_at_submit(aiohttp_client, api_app):
    app, api, root = api_app()
    _list_compromised(root, "id:demo-image-tools  # taken over upstream")
    before = listing(root / "custom_nodes")
    client = await aiohttp_client(app)
    resp = await client.post(PREFIX + "/queue", json={"kind": "install", "target": "demo-image-tools"})
    body = await resp.json()
    assert resp.status == 403 and body["error"]["code"] == "pack_compromised", body
    assert "taken over upstream" in body["error"]["message"] and "compromised.list" in body["error"]["message"]
    assert api.manager.queue.status()["total_count"] == 0
    assert listing(root / "custom_nodes") == before


def test_cli_refuses_a_listed_pack_before_queueing(tmp_path: Path):
    root = demo_root(tmp_path)
    _list_compromised(root, "id:demo-image-tools")
    before = listing(root / "custom_nodes")
    done = subprocess.run(
        [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(root), "--json", "install", "demo-image-tools"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 4 and '"pack_compromised"' in done.stdout, (done.stdout, done.stderr)  # 4: refused
    assert "install demo-image-tools ..." not in done.stdout  # refused before the task was queued
    assert listing(root / "custom_nodes") == before
