"""Hostile request bodies against the standalone app (the same route table ComfyUI mounts).

Each answer must be the error envelope with the expected code and its HTTP status, and nothing
in the tree may change except the operations lock file the queue creates on first use.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostile import cases as C
from hostile.harness import Case
from manager.api.standalone import build_app
from manager.errors import error_codes
from support import treesum
from support.api_tree import demo_root, make_api, write_config

pytestmark = pytest.mark.hostile
LOCKS = "demo/ComfyUI/user/__manager/locks"
AUDIT = "demo/ComfyUI/user/__manager/logs"  # refused requests are audited (docs/api.md, Audit log)


@pytest.fixture
async def api_client(tmp_path: Path, aiohttp_client):
    root = demo_root(tmp_path)
    write_config(root)
    api = make_api(root)
    client = await aiohttp_client(build_app(api))
    yield client, api
    api.manager.queue.stop(timeout=10)


@pytest.mark.parametrize("case", [c.param() for c in C.API_REQUESTS])
async def test_api_request_refused(case: Case, api_client, tmp_path: Path) -> None:
    client, api = api_client
    method, path, body, ctype = case.payload
    before = treesum.listing(tmp_path)
    resp = await client.request(method, path, data=body, headers={"Content-Type": ctype} if ctype else {})
    doc = json.loads(await resp.text())
    assert doc.get("ok") is False, doc
    err = doc["error"]
    assert err["code"] == case.code, err
    assert err["message"] and err["hint"], err
    assert resp.status == error_codes()[case.code].http_status or resp.status == 405, (resp.status, err)
    api.manager.queue.run_until_idle(timeout=30)
    diff = treesum.changes(before, treesum.listing(tmp_path)).outside(LOCKS, AUDIT)
    assert not diff, diff.describe()


@pytest.mark.parametrize("case", [c.param() for c in C.API_HEADERS])
async def test_api_headers_refused(case: Case, api_client, tmp_path: Path) -> None:
    """Rebinding Host names and foreign pages: refused before any handler, nothing written."""
    client, api = api_client
    raw, method, path = case.payload
    headers = {k: v.replace("{port}", str(client.server.port)) for k, v in raw.items()}
    before = treesum.listing(tmp_path)
    resp = await client.request(method, path, headers=headers)
    doc = json.loads(await resp.text())
    assert doc.get("ok") is False and doc["error"]["code"] == case.code, doc
    assert resp.status == 403 and doc["error"]["hint"], doc
    diff = treesum.changes(before, treesum.listing(tmp_path)).outside(LOCKS, AUDIT)
    assert not diff, diff.describe()
