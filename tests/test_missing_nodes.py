"""Missing nodes of a workflow (issue 19 item 4) and operations on loaded packs scheduled for the
next start (item 7), with real parts: the demo tree (real git packs, a file:// channel whose
extension-node-map lists two packs for DemoResize), the CLI as a subprocess, the routes through
the real aiohttp app, and the real prestartup script applying the scheduled update."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_prestartup import FOLDER_PATHS, REPO, run_start

from manager.api.door import HttpDoor
from manager.api.routes import PREFIX
from manager.api.standalone import build_app
from manager.context import Manager
from manager.errors import RequestInvalid
from manager.events import TaskSpec
from manager.import_failures import ImportFailure, ImportFailureReport, save_report
from manager.missing_nodes import analyse, preference_of
from manager.startup import PendingStore, last_path, pending_path
from support.api_tree import demo_root, write_config

WORKFLOW = {
    "nodes": [
        {"id": 1, "type": "DemoResize"},
        {"id": 2, "type": "DemoMaskBlur"},
        {"id": 3, "type": "KSampler"},
        {"id": 4, "type": "DemoCrop"},
    ]
}


def _two_packs_for_resize(root: Path) -> None:
    """demo-prompt-kit's node-map entry also lists DemoResize (its code does not register it)."""
    path = root.parent / "demo-channel" / "extension-node-map.json"
    node_map = json.loads(path.read_text(encoding="utf-8"))
    for url, entry in node_map.items():
        if url.rstrip("/").endswith("demo-prompt-kit"):
            entry[0].append("DemoResize")
    path.write_text(json.dumps(node_map), encoding="utf-8")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = demo_root(tmp_path)
    write_config(r)
    _two_packs_for_resize(r)
    return r


def _run(manager: Manager, *specs: TaskSpec) -> None:
    queue = manager.queue
    tasks = [queue.enqueue(s) for s in specs]
    queue.start()
    try:
        assert queue.run_until_idle(120)
        for t in tasks:
            assert queue.get(t.id).to_dict()["state"] == "done", queue.get(t.id).to_dict()
    finally:
        queue.stop(timeout=10)


def _analyse(manager: Manager, **kw):
    view = manager.catalog_view()
    return analyse(WORKFLOW, catalog=view.catalog, inventory=manager.inventory(), **kw)


# --- the core -----------------------------------------------------------------------------------
def test_every_candidate_is_listed_and_an_ambiguous_type_is_never_picked_in_silence(root: Path):
    manager = Manager.standalone(root)
    wf = {"nodes": [{"type": "DemoResize"}, {"type": "DemoMaskBlur"}, {"type": "KSampler"}]}
    report = analyse(wf, catalog=manager.catalog_view().catalog, inventory=manager.inventory())
    rows = {r.type: r for r in report.rows}
    resize = rows["DemoResize"]
    assert resize.state == "choose" and resize.chosen == ""
    assert [c.id for c in resize.candidates] == ["demo-image-tools", "demo-prompt-kit"]
    assert all(c.channel == "demo" for c in resize.candidates)
    assert "choose one" in resize.reason
    assert rows["DemoMaskBlur"].chosen == "demo-mask-utils"
    assert rows["DemoMaskBlur"].reason == "the only pack that provides it"
    assert rows["KSampler"].state == "unknown"
    assert report.choose == ("DemoResize",)
    assert [c.pack_id for c in report.chosen] == ["demo-mask-utils"]  # nothing picked for DemoResize


def test_a_pack_chosen_for_another_type_covers_the_ambiguous_one_and_says_so(root: Path):
    report = _analyse(Manager.standalone(root))
    # DemoCrop chose demo-image-tools, which also provides DemoResize: it is chosen for it, with why
    rows = {r.type: r for r in report.rows}
    assert rows["DemoCrop"].reason == "the only pack that provides it"
    assert rows["DemoResize"].chosen == "demo-image-tools"
    assert rows["DemoResize"].reason == "already chosen for DemoCrop"
    batch = {c.pack_id: c for c in report.chosen}
    assert set(batch) == {"demo-image-tools", "demo-mask-utils"}
    assert report.requests() == [("install", "demo-image-tools", {}), ("install", "demo-mask-utils", {})]


def test_preference_from_config_and_the_door_and_the_users_choice(root: Path):
    cfg = root / "user" / "__manager" / "config.ini"
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace(
            "[security]", "node_pack_preference = studio-zz, demo-prompt-kit\n[security]"
        ),
        encoding="utf-8",
    )
    manager = Manager.standalone(root)
    wf = {"nodes": [{"type": "DemoResize"}]}
    view = manager.catalog_view()
    pref = preference_of(manager.config)
    assert pref == ("studio-zz", "demo-prompt-kit")
    r = analyse(wf, catalog=view.catalog, inventory=manager.inventory(), preference=pref)
    assert r.rows[0].chosen == "demo-prompt-kit" and "preference list" in r.rows[0].reason
    # --prefer comes before the config's list
    r = analyse(
        wf,
        catalog=view.catalog,
        inventory=manager.inventory(),
        preference=preference_of(manager.config, ["demo-image-tools"]),
    )
    assert r.rows[0].chosen == "demo-image-tools"
    r = analyse(wf, catalog=view.catalog, inventory=manager.inventory(), choices={"DemoResize": "demo-prompt-kit"})
    assert r.rows[0].chosen == "demo-prompt-kit" and r.rows[0].reason == "chosen by the user"
    with pytest.raises(RequestInvalid):
        analyse(wf, catalog=view.catalog, inventory=manager.inventory(), choices={"DemoResize": "demo-mask-utils"})


def test_recheck_reasons_import_failure_restart_and_wrong_pack(root: Path):
    manager = Manager.standalone(root)
    _run(manager, TaskSpec("install", "demo-prompt-kit"), TaskSpec("install", "demo-mask-utils"))
    manager = Manager.standalone(root)
    wf = {"nodes": [{"type": "DemoResize"}, {"type": "DemoMaskBlur"}, {"type": "DemoPromptTemplate"}]}
    view = manager.catalog_view()
    inv = manager.inventory()
    save_report(
        manager.layout,
        ImportFailureReport((ImportFailure("demo-mask-utils", "/x", "ImportError: no module named cv3"),), "", True),
    )
    from manager.import_failures import load_report

    # the page registered DemoPromptTemplate only; demo-prompt-kit was loaded, demo-mask-utils failed
    r = analyse(
        wf,
        catalog=view.catalog,
        inventory=inv,
        known_types=["DemoPromptTemplate", "KSampler"],
        loaded=["demo-prompt-kit", "demo-mask-utils"],
        import_failures=load_report(manager.layout),
    )
    rows = {x.type: x for x in r.rows}
    assert rows["DemoPromptTemplate"].state == "provided"
    assert rows["DemoMaskBlur"].state == "import_failed" and "cv3" in rows["DemoMaskBlur"].reason
    assert rows["DemoResize"].state == "wrong_pack" and rows["DemoResize"].pack == "demo-prompt-kit"
    # the same packs not loaded by the running ComfyUI (installed after its start): restart needed
    r = analyse(wf, catalog=view.catalog, inventory=inv, known_types=["KSampler"], loaded=[])
    assert {x.type: x.state for x in r.rows}["DemoResize"] == "restart_needed"
    assert set(r.still_missing) == {"DemoResize", "DemoMaskBlur", "DemoPromptTemplate"}


def test_a_disabled_candidate_is_enabled_not_installed_again(root: Path):
    manager = Manager.standalone(root)
    _run(manager, TaskSpec("install", "demo-mask-utils"))
    _run(Manager.standalone(root), TaskSpec("disable", "demo-mask-utils"))
    r = _analyse(Manager.standalone(root))
    (mask,) = [c for c in r.chosen if c.pack_id == "demo-mask-utils"]
    assert mask.action == "enable" and mask.installed_name
    assert ("enable", mask.installed_name, {}) in r.requests()


# --- the CLI, as a subprocess --------------------------------------------------------------------
def _cli(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ""}
    return subprocess.run(
        [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(root), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=root.parent,
    )


def test_cli_lists_installs_the_chosen_batch_and_rechecks(root: Path, tmp_path: Path):
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps({"nodes": [{"type": "DemoResize"}, {"type": "DemoMaskBlur"}]}), encoding="utf-8")
    out = _cli(root, "missing-nodes", str(wf))
    assert out.returncode == 0, out.stderr
    assert "DemoResize" in out.stdout and "choose" in out.stdout
    assert "demo-image-tools" in out.stdout and "demo-prompt-kit" in out.stdout
    # --install without a choice installs only the unambiguous pack, and says DemoResize waits
    out = _cli(root, "--json", "missing-nodes", str(wf), "--install")
    data = json.loads(out.stdout)["data"]
    assert out.returncode == 3, out.stderr  # partial: a type still waits for a choice
    assert [t["target"] for t in data["tasks"]] == ["demo-mask-utils"]
    states = {r["type"]: r["state"] for r in data["recheck"]["rows"]}
    assert states == {"DemoResize": "choose", "DemoMaskBlur": "restart_needed"}
    assert not (root / "custom_nodes" / "demo-image-tools").exists()
    # --prefer settles it
    out = _cli(root, "--json", "missing-nodes", str(wf), "--install", "--prefer", "demo-prompt-kit")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)["data"]
    assert [t["target"] for t in data["tasks"]] == ["demo-prompt-kit"]
    assert (root / "custom_nodes" / "demo-prompt-kit").is_dir()
    row = next(r for r in data["recheck"]["rows"] if r["type"] == "DemoResize")
    assert row["state"] == "restart_needed" and "restart" in row["reason"]


# --- the route, through the real app -------------------------------------------------------------
async def test_route_answers_candidates_then_the_batch_through_the_queue_then_the_recheck(aiohttp_client, root: Path):
    from manager.api.standalone import prepare

    api = prepare(Manager.standalone(root))
    client = await aiohttp_client(build_app(api))
    try:
        body = {"workflow": WORKFLOW, "prefer": ["demo-prompt-kit"]}
        data = (await (await client.post(PREFIX + "/workflow/missing", json=body)).json())["data"]
        rows = {r["type"]: r for r in data["node_types"]}
        assert rows["DemoResize"]["chosen"] == "demo-prompt-kit"
        assert [c["id"] for c in rows["DemoResize"]["candidates"]] == ["demo-image-tools", "demo-prompt-kit"]
        assert rows["DemoResize"]["packs"] == ["demo-image-tools", "demo-prompt-kit"]
        kinds = {(r["kind"], r["target"]) for r in data["requests"]}
        assert kinds == {
            ("install", "demo-prompt-kit"),
            ("install", "demo-image-tools"),
            ("install", "demo-mask-utils"),
        }
        # without a preference: DemoResize is covered by demo-image-tools (chosen for DemoCrop), with the reason
        plain = (await (await client.post(PREFIX + "/workflow/missing", json={"workflow": WORKFLOW})).json())["data"]
        row = next(r for r in plain["node_types"] if r["type"] == "DemoResize")
        assert row["chosen"] == "demo-image-tools" and row["reason"] == "already chosen for DemoCrop"
        # one batch through the queue
        queued = await client.post(PREFIX + "/queue", json={"tasks": data["requests"]})
        assert queued.status == 202
        ids = [t["id"] for t in (await queued.json())["data"]["tasks"]]
        for _ in range(600):
            states = [api.manager.queue.get(i).to_dict()["state"] for i in ids]
            if all(s in ("done", "failed") for s in states):
                break
            await asyncio.sleep(0.1)
        assert states == ["done"] * 3
        # the re-check, with the node types the page has (the packs are not loaded: restart)
        again = {"workflow": WORKFLOW, "prefer": ["demo-prompt-kit"], "known_types": ["KSampler"]}
        data = (await (await client.post(PREFIX + "/workflow/missing", json=again)).json())["data"]
        states = {r["type"]: r["state"] for r in data["node_types"]}
        assert states == {
            "DemoResize": "restart_needed",
            "DemoMaskBlur": "restart_needed",
            "KSampler": "provided",
            "DemoCrop": "restart_needed",
        }
        assert data["requests"] == []
    finally:
        api.manager.queue.stop(timeout=10)


# --- item 7: an update of a loaded pack waits for the restart ----------------------------------------
def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@localhost",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@localhost",
    }
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


async def test_update_of_a_loaded_pack_inside_comfyui_is_applied_at_the_next_start(aiohttp_client, tmp_path: Path):
    root = demo_root(tmp_path)
    write_config(root, network_mode="public")  # prestartup forces offline; the source is file://
    (root / "folder_paths.py").write_text(FOLDER_PATHS, encoding="utf-8")
    extra = tmp_path / "extra_nodes"
    extra.mkdir()
    (extra / "offline-manager").symlink_to(REPO, target_is_directory=True)
    _run(Manager.standalone(root), TaskSpec("install", "demo-image-tools"))
    pack = root / "custom_nodes" / "demo-image-tools"
    before = _git(pack, "rev-parse", "HEAD").strip()
    source = root.parent / "sources" / "demo-image-tools"
    (source / "NEWS.txt").write_text("1.1\n", encoding="utf-8")
    _git(source, "add", "-A")
    _git(source, "commit", "-q", "-m", "1.1")
    new = _git(source, "rev-parse", "HEAD").strip()

    # the door ComfyUI mounts: door "comfyui", a restart hook; the pack was there when it started
    api = HttpDoor(Manager.standalone(root), listen="127.0.0.1", restart=lambda: None, door="comfyui")
    client = await aiohttp_client(build_app(api))
    try:
        assert (await client.get(PREFIX + "/installed")).status == 200  # the door's first look at the tree
        answer = await client.post(PREFIX + "/queue", json={"kind": "update", "target": "demo-image-tools"})
        data = (await answer.json())["data"]
        assert answer.status == 202, data
        assert data["tasks"] == [] and "after restart" in data["after_restart"]
        (op,) = data["scheduled"]
        assert (op["action"], op["target"]) == ("update", "demo-image-tools")
        assert _git(pack, "rev-parse", "HEAD").strip() == before  # nothing ran under the live process
        assert [o.action for o in PendingStore(api.manager.layout).entries()] == ["update"]
        # a pack installed after this start is not loaded: its reinstall runs now, as the standalone server does
        await asyncio.to_thread(_run, api.manager, TaskSpec("install", "demo-mask-utils"))
        now = await client.post(PREFIX + "/queue", json={"kind": "reinstall", "target": "demo-mask-utils"})
        now_data = (await now.json())["data"]
        assert len(now_data["tasks"]) == 1 and "scheduled" not in now_data, now_data
    finally:
        api.manager.queue.stop(timeout=10)

    # ComfyUI's next start: the real prestartup script applies the update before packs load
    run_start(root)
    assert _git(pack, "rev-parse", "HEAD").strip() == new
    assert not pending_path(api.manager.layout).exists()
    last = json.loads(last_path(api.manager.layout).read_text(encoding="utf-8"))
    assert [(r["op"]["action"], r["ok"]) for r in last["results"]] == [("update", True)], last
