"""Snapshot routes through a real server on 127.0.0.1: the demo tree (real git packs behind a
file:// channel, offline), save, list, show, diff, dry run, restore through the queue, remove,
and hostile names refused before anything is read or written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import quote

from manager.api.routes import PREFIX
from support import treesum

SNAPS = PREFIX + "/snapshots"
# .git internals change when git reads a repo (index refresh); the tree itself must not
SKIP = ("demo/ComfyUI/user/__manager/locks", "demo/ComfyUI/user/__manager/logs")


async def _idle(api, timeout: float = 60.0) -> None:
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, timeout)


async def _data(resp, status: int = 200):
    body = await resp.json()
    assert resp.status == status, body
    return body["data"] if "data" in body else body


async def _queue(client, api, *tasks) -> list[dict]:
    resp = await client.post(PREFIX + "/queue", json={"tasks": [dict(t) for t in tasks]})
    data = await _data(resp, 202)
    await _idle(api)
    for t in data["tasks"]:
        got = api.manager.queue.get(t["id"]).to_dict()
        assert got["state"] == "done", got
    return data["tasks"]


def _custom_nodes(root: Path) -> set[str]:
    return {p.name for p in (root / "custom_nodes").iterdir() if not p.name.startswith(".")}


async def test_save_list_show_diff_dry_run_restore_remove(aiohttp_client, api_app, tmp_path):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    await _queue(
        client, api, {"kind": "install", "target": "demo-image-tools"}, {"kind": "install", "target": "demo-prompt-kit"}
    )

    base = await _data(await client.post(SNAPS, json={"name": "base"}))
    assert base["name"] == "base" and base["summary"]["packs"] == 2
    later = await _data(await client.post(SNAPS, json={}))  # the default <time>_snapshot name
    assert later["name"].endswith("_snapshot")
    again = await client.post(SNAPS, json={"name": "base"})
    assert again.status == 409 and (await again.json())["error"]["code"] == "snapshot_exists"

    listed = await _data(await client.get(SNAPS))
    assert [s["name"] for s in listed["snapshots"]] == [later["name"], "base"]  # newest first
    classic = await (await client.get("/snapshot/getlist")).json()
    assert classic == {"items": [later["name"], "base"]}

    shown = await _data(await client.get(f"{SNAPS}/base"))
    assert {p["name"] for p in shown["snapshot"]["packs"]} == {"demo-image-tools", "demo-prompt-kit"}
    assert shown["snapshot"]["format"] == "comfyui-offline-manager/snapshot"

    # change the tree: one pack out, another in
    await _queue(
        client,
        api,
        {"kind": "uninstall", "target": "demo-prompt-kit"},
        {"kind": "install", "target": "demo-video-helper"},
    )
    diff = (await _data(await client.get(f"{SNAPS}/base/diff")))["diff"]
    actions = {(c["action"], (c.get("wanted") or c.get("current") or {}).get("name")) for c in diff["packs"]}
    assert ("add", "demo-prompt-kit") in actions and ("remove", "demo-video-helper") in actions, diff
    between = await _data(await client.get(f"{SNAPS}/base/diff?against={quote(later['name'])}"))
    assert between["against"] == later["name"] and between["diff"]["empty"] is True

    # a dry run shows the plan and changes nothing
    before = treesum.listing(tmp_path, skip=SKIP)
    dry = await _data(await client.post(f"{SNAPS}/base/restore", json={"dry_run": True}))
    kinds = [s["kind"] for s in dry["plan"]["steps"]]
    assert "pack_install" in kinds and ("pack_remove" in kinds or "pack_disable" in kinds), dry["plan"]
    assert dry["blockers"] == [] and dry["policy"]["allowed"] is True
    assert not treesum.changes(before, treesum.listing(tmp_path, skip=SKIP)), "dry run changed the tree"
    assert api.manager.queue.status()["total_count"] == 0 or not api.manager.queue.pending()

    # the restore goes through the queue and completes
    resp = await client.post(f"{SNAPS}/base/restore", json={"task_id": "restore-1"})
    queued = await _data(resp, 202)
    assert queued["task"]["kind"] == "snapshot_restore" and queued["task"]["params"]["policy"]["allowed"] is True
    await _idle(api)
    task = api.manager.queue.get("restore-1").to_dict()
    assert task["state"] == "done", task
    assert task["result"]["ok"] is True and task["result"]["auto_snapshot"]
    assert _custom_nodes(root) == {"demo-image-tools", "demo-prompt-kit"}
    after = (await _data(await client.get(f"{SNAPS}/base/diff")))["diff"]
    assert after["packs"] == [], after

    # remove: gone from the list; the classic route answers 200 for an absent one too
    removed = await _data(await client.post(f"{SNAPS}/base/remove"))
    assert removed["removed"]["name"] == "base"
    names = [s["name"] for s in (await _data(await client.get(SNAPS)))["snapshots"]]
    assert "base" not in names and later["name"] in names
    gone = await client.get(f"{SNAPS}/base")
    assert gone.status == 404 and (await gone.json())["error"]["code"] == "not_found"
    assert (await client.post("/snapshot/remove", json={"target": "base"})).status == 200
    assert (await client.post("/snapshot/remove", json={"target": later["name"]})).status == 200
    assert not (root / "user" / "__manager" / "snapshots" / f"{later['name']}.json").exists()


async def test_classic_routes(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    await _queue(client, api, {"kind": "install", "target": "demo-mask-utils"})
    current = await (await client.get("/snapshot/get_current")).json()
    assert set(current) >= {"comfyui", "git_custom_nodes", "cnr_custom_nodes", "file_custom_nodes", "pips"}
    assert any(url.endswith("demo-mask-utils") for url in current["git_custom_nodes"]), current
    saved = await _data(await client.post("/snapshot/save"))  # no body, as the classic UI sends
    name = saved["name"]
    assert (await (await client.get("/snapshot/getlist")).json())["items"] == [name]
    await _queue(client, api, {"kind": "uninstall", "target": "demo-mask-utils"})
    # the standalone server cannot restart ComfyUI: the classic restore is queued at once
    resp = await client.post("/snapshot/restore", json={"target": name})
    task = (await _data(resp))["task"]
    await _idle(api)
    assert api.manager.queue.get(task["id"]).to_dict()["state"] == "done"
    assert "demo-mask-utils" in _custom_nodes(root)
    v1 = await _data(await client.get(PREFIX + "/snapshots/current"))
    assert any(p["name"] == "demo-mask-utils" for p in v1["packs"])
    missing = await client.post("/snapshot/restore", json={"target": "no-such"})
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"


BAD_BODY_NAMES = [
    "../x",
    "..",
    "/tmp/x",
    "a/b",
    "a\\b",
    ".hidden",
    "",
    ".json",
    "CON",
    "s" * 300,
    "a\x00b",
    "\u202esnap",
    "sn\u200bap",
    5,
    ["x"],
]
BAD_PATH_NAMES = [".hidden", "a\\b", "CON", "com1", "s" * 300, "\u202esnap", "sn\u200bap", "a b"]


async def test_hostile_names_are_refused_and_change_nothing(aiohttp_client, api_app, tmp_path):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    await _data(await client.post(SNAPS, json={"name": "good"}))
    before = treesum.listing(tmp_path, skip=SKIP)
    for name in BAD_BODY_NAMES:
        for path, body in (
            (SNAPS, {"name": name}),
            ("/snapshot/restore", {"target": name}),
            ("/snapshot/remove", {"target": name}),
        ):
            resp = await client.post(path, json=body)
            doc = await resp.json()
            assert resp.status == 400 and doc["error"]["code"] == "invalid_name", (path, name, doc)
            assert doc["error"]["hint"]
    for name in BAD_PATH_NAMES:
        enc = quote(name, safe="")
        for method, path in (
            ("GET", f"{SNAPS}/{enc}"),
            ("GET", f"{SNAPS}/{enc}/diff"),
            ("POST", f"{SNAPS}/{enc}/restore"),
            ("POST", f"{SNAPS}/{enc}/remove"),
            ("GET", f"{SNAPS}/good/diff?against={enc}"),
        ):
            resp = await client.request(method, path)
            doc = await resp.json()
            assert resp.status == 400 and doc["error"]["code"] == "invalid_name", (method, path, doc)
    bad_option = await client.post(f"{SNAPS}/good/restore", json={"options": {"evil": True}})
    assert (await bad_option.json())["error"]["code"] == "request_invalid"
    bad_value = await client.post(f"{SNAPS}/good/restore", json={"options": {"unlisted": "rm -rf"}})
    assert bad_value.status == 400
    assert not treesum.changes(before, treesum.listing(tmp_path, skip=SKIP))
    assert api.manager.queue.status()["total_count"] == 0


async def test_restore_refused_by_policy_but_plan_shown(aiohttp_client, api_app, tmp_path):
    app, api, root = api_app(default="security_level = strong")
    client = await aiohttp_client(app)
    await _data(await client.post(SNAPS, json={"name": "s1"}))  # saving is allowed at every level
    dry = await _data(await client.post(f"{SNAPS}/s1/restore", json={"dry_run": True}))
    assert dry["policy"]["allowed"] is False and dry["plan"]["empty"] is True
    for path, body in (
        (f"{SNAPS}/s1/restore", {}),
        ("/snapshot/restore", {"target": "s1"}),
        (f"{SNAPS}/s1/remove", None),
    ):
        resp = await client.post(path, json=body) if body is not None else await client.post(path)
        doc = await resp.json()
        assert resp.status == 403 and doc["error"]["code"] == "security_denied", doc
        assert "security_level" in doc["error"]["hint"]
    assert api.manager.queue.status()["total_count"] == 0
    assert (root / "user" / "__manager" / "snapshots" / "s1.json").is_file()


async def test_restore_at_next_start_is_scheduled(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    await _data(await client.post(SNAPS, json={"name": "s2"}))
    data = await _data(
        await client.post(f"{SNAPS}/s2/restore", json={"at_next_start": True, "options": {"unlisted": "disable"}})
    )
    op = data["scheduled"]
    assert op["action"] == "snapshot_restore" and op["target"] == "s2" and op["policy"]["allowed"] is True
    assert op["params"]["unlisted"] == "disable"
    pending = json.loads((root / "user" / "__manager" / "startup" / "pending.json").read_text())
    assert [p["id"] for p in pending["pending"]] == [op["id"]]
    startup = await _data(await client.get(PREFIX + "/startup"))
    assert [p["target"] for p in startup["pending"]] == ["s2"]
    assert api.manager.queue.status()["total_count"] == 0  # nothing queued now


async def test_unsafe_entry_is_refused_at_submit_with_a_4xx_and_shown_in_the_dry_run(aiohttp_client, api_app, tmp_path):
    """Finding 5: a stored snapshot with one hostile entry answers 400 at once on every restore route
    (no 202 and a failed task, nothing scheduled for the next start); the dry run lists it as a blocker."""
    app, api, root = api_app()
    client = await aiohttp_client(app)
    await _queue(client, api, {"kind": "install", "target": "demo-image-tools"})
    good = await _data(await client.post(SNAPS, json={"name": "good"}))

    def write_evil() -> dict:
        doc = json.loads(Path(good["path"]).read_text())
        doc["packs"].append({"name": "evil", "kind": "git", "url": "ext::sh -c touch% /tmp/pwned", "enabled": True})
        (root / "user" / "__manager" / "snapshots" / "evil.json").write_text(json.dumps(doc))
        return treesum.listing(tmp_path, skip=SKIP)

    before = await asyncio.to_thread(write_evil)
    dry = await _data(await client.post(f"{SNAPS}/evil/restore", json={"dry_run": True}))
    assert dry["blockers"][0]["code"] == "snapshot_invalid" and dry["plan"]["refused"][0]["field"].endswith(".url")
    for path, body in (
        (f"{SNAPS}/evil/restore", {}),
        (f"{SNAPS}/evil/restore", {"at_next_start": True}),
        ("/snapshot/restore", {"target": "evil"}),
        (PREFIX + "/queue", {"tasks": [{"kind": "snapshot_restore", "target": "evil"}]}),
    ):
        resp = await client.post(path, json=body)
        out = await resp.json()
        assert resp.status == 400 and out["error"]["code"] == "snapshot_invalid", (path, out)
        assert out["error"]["details"]["refused"][0]["entry"] == "evil"
    assert api.manager.queue.status()["total_count"] == 1  # only the install of the setup
    after = await asyncio.to_thread(treesum.listing, tmp_path, skip=SKIP)
    assert not treesum.changes(before, after) and "user/__manager/startup/pending.json" not in str(after)
