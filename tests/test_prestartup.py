"""``prestartup_script.py`` run the way ComfyUI's main.py runs it, in a child process, against a
stand-in ComfyUI tree (the demo tree: real git packs, a file:// channel) with a stand-in
``folder_paths`` module. Our extension sits in a second custom_nodes folder, as
``extra_model_paths.yaml`` allows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manager.context import Manager
from manager.events import TaskSpec
from manager.security import SNAPSHOT_RESTORE, SecuritySettings, decide
from manager.snapshots import store_of
from manager.snapshots.capture import capture
from manager.startup import PendingStore, last_path, pending_path
from support import treesum
from support.api_tree import demo_root, write_config

REPO = Path(__file__).resolve().parents[1]

FOLDER_PATHS = """
import os
base_path = os.path.dirname(os.path.abspath(__file__))
models_dir = os.path.join(base_path, "models")
def get_folder_paths(name):
    extra = os.environ.get("STANDIN_EXTRA_NODES")
    return [os.path.join(base_path, "custom_nodes")] + ([extra] if extra else [])
def get_user_directory():
    return os.path.join(base_path, "user")
def get_system_user_directory(name="system"):
    return os.path.join(get_user_directory(), "__" + name)
"""

# main.py: the ComfyUI root is the script folder (first on sys.path); execute_prestartup_script()
RUNNER = """
import importlib.util, json, logging, os, sys, time
sys.path.insert(0, sys.argv[1])
logging.basicConfig(level=logging.INFO)
import folder_paths
failed = []
t0 = time.perf_counter()
for folder in folder_paths.get_folder_paths("custom_nodes"):
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path) or path.endswith(".disabled") or name == "__pycache__":
            continue
        script = os.path.join(path, "prestartup_script.py")
        if not os.path.exists(script):
            continue
        try:
            spec = importlib.util.spec_from_file_location(os.path.splitext(script)[0], script)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except Exception as e:
            failed.append(repr(e))
elapsed = time.perf_counter() - t0
import glob
ours = sorted(m for m in sys.modules if m.startswith("_offline_manager") or m == "manager" or m.startswith("manager."))
print("RESULT " + json.dumps({"elapsed": elapsed, "failed": failed, "ours": ours,
                              "glob_stdlib": callable(glob.glob) and "site-packages" not in glob.__file__
                              and not glob.__file__.startswith(__REPO__)}))
""".replace("__REPO__", repr(str(REPO)))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = demo_root(tmp_path)
    write_config(root, network_mode="public")  # the script forces offline whatever the config says
    (root / "folder_paths.py").write_text(FOLDER_PATHS, encoding="utf-8")
    extra = tmp_path / "extra_nodes"
    extra.mkdir()
    (extra / "offline-manager").symlink_to(REPO, target_is_directory=True)
    return root


def run_start(root: Path) -> dict:
    env = {**os.environ, "STANDIN_EXTRA_NODES": str(root.parent.parent / "extra_nodes"), "PYTHONPATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, str(root)], capture_output=True, text=True, env=env, timeout=300, cwd=root.parent
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["log"] = out.stderr
    assert result["failed"] == [], result
    assert result["glob_stdlib"] is True
    assert result["ours"] == [], result["ours"]  # the private package is gone again
    return result


def _manager(root: Path) -> Manager:
    return Manager.standalone(root)


def _run_tasks(manager: Manager, *specs: TaskSpec) -> None:
    queue = manager.queue
    tasks = [queue.enqueue(s) for s in specs]
    queue.start()
    try:
        assert queue.run_until_idle(120)
        for t in tasks:
            assert queue.get(t.id).to_dict()["state"] == "done", queue.get(t.id).to_dict()
    finally:
        queue.stop(timeout=10)


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")} if folder.is_dir() else set()


def test_nothing_pending_costs_a_stat_and_imports_nothing(tree: Path):
    before = treesum.listing(tree)
    result = run_start(tree)
    assert treesum.listing(tree) == before
    assert "offline-manager" not in result["log"]


def test_pending_pack_operations_are_applied_before_packs_load(tree: Path):
    manager = _manager(tree)
    _run_tasks(
        manager,
        TaskSpec("install", "demo-image-tools"),
        TaskSpec("install", "demo-prompt-kit"),
        TaskSpec("install", "demo-mask-utils"),
    )
    _run_tasks(_manager(tree), TaskSpec("disable", "demo-mask-utils"))
    store = PendingStore(manager.layout)
    store.schedule("disable", "demo-image-tools")
    store.schedule("uninstall", "demo-prompt-kit")
    store.schedule("enable", "demo-mask-utils")
    assert pending_path(manager.layout).is_file()

    result = run_start(tree)
    cn = tree / "custom_nodes"
    assert _entries(cn) == {"demo-mask-utils"}
    assert any(n.startswith("demo-image-tools") for n in _entries(cn / ".disabled"))
    assert not pending_path(manager.layout).exists()
    last = json.loads(last_path(manager.layout).read_text())
    assert [(r["op"]["action"], r["ok"]) for r in last["results"]] == [
        ("disable", True),
        ("uninstall", True),
        ("enable", True),
    ], last
    assert "applied 3 operation(s)" in result["log"]
    run_start(tree)  # applied once: the next start has nothing to do
    assert _entries(cn) == {"demo-mask-utils"}


def test_pending_snapshot_restore_is_applied_offline(tree: Path):
    manager = _manager(tree)
    _run_tasks(manager, TaskSpec("install", "demo-video-helper"))
    store_of(manager).save(capture(manager), "before-change")
    _run_tasks(_manager(tree), TaskSpec("uninstall", "demo-video-helper"), TaskSpec("install", "demo-upscale-pack"))
    policy = decide(SecuritySettings.from_config(manager.config, "127.0.0.1"), SNAPSHOT_RESTORE)
    PendingStore(manager.layout).schedule(
        "snapshot_restore", "before-change", params={"unlisted": "remove"}, policy=policy.to_dict()
    )
    run_start(tree)
    assert _entries(tree / "custom_nodes") == {"demo-video-helper"}
    last = json.loads(last_path(manager.layout).read_text())
    (result,) = last["results"]
    assert result["ok"] is True and result["result"]["ok"] is True, result


def test_bad_pending_files_never_break_the_start(tree: Path, tmp_path: Path):
    manager = _manager(tree)
    _run_tasks(manager, TaskSpec("install", "demo-image-tools"))
    path = pending_path(manager.layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json", encoding="utf-8")
    run_start(tree)
    last = json.loads(last_path(manager.layout).read_text())
    assert last["results"] == [] and last["skipped"][0]["code"] == "pending_invalid"
    assert not path.exists()

    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "pending": [
                    {"id": "a", "action": "uninstall", "target": "../../precious"},
                    {"id": "b", "action": "explode", "target": "demo-image-tools"},
                    {"id": "c", "action": "uninstall", "target": "no-such-pack"},
                    {"id": "d", "action": "disable", "target": "demo-image-tools"},
                ],
            }
        ),
        encoding="utf-8",
    )
    before = treesum.listing(outside)
    run_start(tree)
    assert treesum.listing(outside) == before
    last = json.loads(last_path(manager.layout).read_text())
    assert {s["code"] for s in last["skipped"]} == {"invalid_name", "pending_invalid"}
    assert [(r["op"]["id"], r["ok"], (r["error"] or {}).get("code")) for r in last["results"]] == [
        ("c", False, "not_found"),
        ("d", True, None),
    ]
    assert _entries(tree / "custom_nodes") == set()
