"""Faults and races with real processes: SIGKILL at named points of an install, the operations
lock between a CLI-like child and this process's queue, and the real dependency installer
(uv, a real venv, a local wheelhouse) called before the rename."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manager.fsops import file_lock
from manager.inventory import scan
from support import tools
from support.gitrepos import make_repo
from support.ops_fixtures import catalog_entry, make_env, tree_listing
from support.wheels import build_wheel, installed_version, make_venv

REPO_ROOT = Path(__file__).resolve().parents[1]
CHILD = REPO_ROOT / "tests" / "support" / "ops_fixtures.py"


def _spawn(root: Path, spec: str, kill_stage: str, params: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, str(CHILD), "child", str(root), spec, kill_stage, json.dumps(params or {})],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def repo(tmp_path):
    info = make_repo(tmp_path / "src" / "example-pack", name="example-pack")
    info.commit(
        "install script",
        {
            "install.py": "import time\nprint('installing step 1', flush=True)\n"
            "time.sleep(1.5)\nprint('installed', flush=True)\n"
        },
    )
    return info


@pytest.mark.parametrize("kill_stage", ["clone:output", "deps", "install-script:output", "rename"])
def test_sigkill_during_install_leaves_no_half_installed_pack(tmp_path, repo, kill_stage):
    env = make_env(tmp_path, packs=[catalog_entry("example-pack", repo.url)])
    try:
        before = tree_listing(env.custom_nodes)
        child = _spawn(env.root, "example-pack", kill_stage)
        out, err = child.communicate(timeout=120)
        assert child.returncode == -9, (out, err)  # really killed at that point
        stages = [json.loads(line)["stage"] for line in out.splitlines() if line.startswith("{")]
        assert stages[-1] == kill_stage.split(":")[0]
        # what ComfyUI would load now: nothing half-installed
        assert [p.name for p in scan(env.manager.layout).packs] == []
        assert not (env.custom_nodes / "example-pack").exists()
        # the kernel dropped the child's lock
        with file_lock(env.manager.layout.locks_dir / "operations.lock", timeout=0):
            pass
        task = env.run("install", "example-pack")
        assert task.state.value == "done", task.error
        assert (env.custom_nodes / "example-pack" / "nodes.py").read_text() == "VERSION = 3\n"
        after = tree_listing(env.custom_nodes)
        assert not (env.custom_nodes / ".cm-staging.disabled").exists()
        assert {k for k in after if not k.startswith("example-pack")} == set(before)
    finally:
        env.close()


def test_queue_waits_for_a_cli_child_holding_the_lock_and_never_interleaves(tmp_path, repo):
    env = make_env(tmp_path, packs=[catalog_entry("example-pack", repo.url)])
    try:
        child = _spawn(env.root, "example-pack", "none")
        assert child.stdout is not None
        child_events = []
        for line in child.stdout:  # wait until the child is inside its install
            event = json.loads(line)
            child_events.append(event)
            if event.get("stage") == "install-script" and event.get("line"):
                break
        from manager.tasks import TaskSpec

        task = env.manager.queue.enqueue(TaskSpec("install", "example-pack"))
        assert env.manager.queue.run_until_idle(timeout=120)
        rest, _err = child.communicate(timeout=120)
        child_events += [json.loads(line) for line in rest.splitlines()]
        final = env.manager.queue.get(task.id)
        child_final = child_events[-1]
        assert child_final["state"] == "done", child_final
        ours = [e for e in env.events if e.task_id == task.id and e.name == "progress"]
        assert ours[0].data["stage"] == "waiting-for-lock" and "process" in ours[0].data["line"]
        first_work = next(e for e in ours if e.data["stage"] == "resolve")
        assert first_work.at >= child_final["finished_at"]  # started only after the child ended
        assert final.state.value == "failed" and final.error["code"] == "pack_exists"
        packs = scan(env.manager.layout).packs
        assert [p.name for p in packs] == ["example-pack"] and packs[0].commit == repo.commits[-1]
    finally:
        env.close()


@pytest.fixture
def uv_bin():
    return tools.require("uv")  # missing: the test fails with the install command


def test_real_dependency_installer_runs_before_rename_offline(tmp_path, monkeypatch, uv_bin, socket_audit_log):
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    python = make_venv(tmp_path / "venv", uv=uv_bin)
    repo = make_repo(tmp_path / "src" / "deps-pack", name="deps-pack")
    repo.commit("needs a wheel", {"requirements.txt": "cm-ops-demo==1.0\n"})
    missing = make_repo(tmp_path / "src" / "missing-pack", name="missing-pack")
    missing.commit("needs an absent wheel", {"requirements.txt": "cm-ops-absent==9.9\n"})
    env = make_env(
        tmp_path,
        packs=[catalog_entry("deps-pack", repo.url), catalog_entry("missing-pack", missing.url)],
        python=str(python),
        deps=False,
    )
    try:
        build_wheel(env.manager.layout.wheelhouse_dir, "cm-ops-demo", "1.0")
        task = env.run("install", "deps-pack")
        assert task.state.value == "done", task.error
        assert installed_version(python, "cm_ops_demo") == "1.0"
        assert task.result["deps"]["ran"] is True and task.result["deps"]["requirements"] == ["cm-ops-demo==1.0"]
        stages = env.stages(task.id)
        assert stages.index("deps") < stages.index("rename")
        before = tree_listing(env.custom_nodes)
        task = env.run("install", "missing-pack")
        assert task.state.value == "failed" and task.error["code"] == "deps_missing_wheels"
        assert task.error["details"]["step"] == "deps" and "download-deps" in task.error["hint"]
        assert tree_listing(env.custom_nodes) == before
        # fix re-runs the real installer in place
        task = env.run("fix", "deps-pack")
        assert task.state.value == "done", task.error
        assert socket_audit_log.inet_connects() == []
    finally:
        env.close()


def test_child_kill_does_not_block_the_next_operation_lock(tmp_path, repo):
    """The lock file keeps the dead child's pid, yet the next queue task takes the lock at once."""
    env = make_env(tmp_path, packs=[catalog_entry("example-pack", repo.url)])
    try:
        child = _spawn(env.root, "example-pack", "stage")
        child.communicate(timeout=120)
        assert child.returncode == -9
        started = time.monotonic()
        task = env.run("install", "example-pack")
        assert task.state.value == "done", task.error
        assert not any(e.data.get("stage") == "waiting-for-lock" for e in env.events if e.name == "progress")
        assert time.monotonic() - started < 60
    finally:
        env.close()


def test_cancel_during_install_script_leaves_tree_unchanged(tmp_path, repo):
    env = make_env(tmp_path, packs=[catalog_entry("example-pack", repo.url)])
    try:
        from manager.tasks import TaskSpec

        queue = env.manager.queue

        def cancel_on_script(event):
            if event.name == "progress" and event.data.get("stage") == "install-script" and event.data.get("line"):
                queue.cancel(event.task_id)

        queue.subscribe(cancel_on_script)
        task = queue.enqueue(TaskSpec("install", "example-pack"))
        assert queue.run_until_idle(timeout=120)
        final = queue.get(task.id)
        assert final.state.value == "cancelled" and not final.restart_required
        assert not (env.custom_nodes / "example-pack").exists()
        assert not (env.custom_nodes / ".cm-staging.disabled").exists()
    finally:
        env.close()
