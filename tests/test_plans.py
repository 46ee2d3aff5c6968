"""Plans (issue 19, item 1): what a changing operation would do, changing nothing.

Real parts only: real git repositories, a real venv with real wheels in the Manager's wheelhouse,
the real installer's dry run (uv), the real aiohttp app and cm-cli.py as a subprocess. Offline:
no socket opened by this process (the audit hook) nor by the installer (a connect trap as proxy).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from manager.kinds.planner import preview_plan
from manager.plans import PackChange, Plan, PythonChange, python_changes
from support.gitrepos import make_repo
from support.ops_fixtures import catalog_entry, make_env
from support.treesum import changes, listing
from support.wheels import ConnectTrap, build_wheel, installed_names, make_venv

REPO = Path(__file__).resolve().parents[1]
PREFIX = "/offline-manager/v1"


# --- the record itself --------------------------------------------------------------------------------
def test_record_to_dict_groups_changes_and_python_changes_sorts_directions():
    found = python_changes(
        {"lib-a": "2.0", "lib_b": "1.0", "gone": "3.0"}, {"lib-a": "1.0", "lib_b": "1.5", "new": "0.1"}, ["gone"]
    )
    assert [(c.change, c.name, c.from_, c.to) for c in found] == [
        ("downgraded", "lib-a", "2.0", "1.0"),
        ("upgraded", "lib_b", "1.0", "1.5"),
        ("added", "new", "", "0.1"),
        ("removed", "gone", "3.0", ""),
    ]
    plan = Plan("update", "p", packs=(PackChange("changed", "p", "aaa", "bbb", "git"),), python=found)
    data = plan.to_dict()
    assert data["ok"] is True and data["packs"]["changed"][0] == {
        "change": "changed",
        "name": "p",
        "from": "aaa",
        "to": "bbb",
        "source": "git",
        "note": "",
    }
    assert [p["name"] for p in data["python"]["downgraded"]] == ["lib-a"]
    assert set(data) >= {"held_back", "moves", "blockers", "notes", "skip_deps", "with_deps", "resolver"}
    blocked = plan.with_blocker({"code": "x", "message": "no"})
    assert blocked.ok is False and "blocked: x: no" in blocked.lines()
    assert PythonChange("added", "n", "", "1").to_dict()["to"] == "1"


# --- a real tree: a git pack whose next commit downgrades a package and asks for a blacklisted one ---
@pytest.fixture
def world(tmp_path, monkeypatch, uv_bin):
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    trap = ConnectTrap()  # any request uv or pip would make lands here instead of the network
    for key, value in trap.proxy_env().items():
        monkeypatch.setenv(key, value)
    python = make_venv(tmp_path / "venv", uv=uv_bin)
    repo = make_repo(tmp_path / "src" / "plan-pack", name="plan-pack")
    repo.commit("needs lib", {"requirements.txt": "cm-plan-lib>=1.0\n"})
    env = make_env(
        tmp_path,
        packs=[catalog_entry("plan-pack", repo.url)],
        python=str(python),
        deps=False,
        python_executable=str(python),
    )
    wheelhouse = env.manager.layout.wheelhouse_dir
    for name, version in (("cm-plan-lib", "1.0"), ("cm-plan-lib", "2.0"), ("cm-plan-black", "1.0")):
        build_wheel(wheelhouse, name, version)
    subprocess.run(
        [
            uv_bin,
            "pip",
            "install",
            "--python",
            str(python),
            "--offline",
            "--no-index",
            "--no-config",
            "--find-links",
            str(wheelhouse),
            "cm-plan-lib==2.0",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    task = env.run("install", "plan-pack")
    assert task.state.value == "done", task.error
    env.manager.layout.pip_blacklist_file.parent.mkdir(parents=True, exist_ok=True)
    env.manager.layout.pip_blacklist_file.write_text("cm-plan-black\n", encoding="utf-8")
    new = repo.commit("pin lib down, want a blacklisted one", {"requirements.txt": "cm-plan-lib==1.0\ncm-plan-black\n"})
    try:
        yield env, python, repo, new, trap
    finally:
        env.close()
        trap.close()


def _snap(env: Any, python: Path) -> tuple[dict[str, str], dict[str, str]]:
    venv = python.parent.parent
    return listing(env.manager.layout.custom_nodes), listing(venv)


def test_update_plan_shows_the_downgrade_and_the_held_back_pack_offline_changing_nothing(world, socket_audit_log):
    env, python, repo, new, trap = world
    manager = env.manager
    history = len(manager.queue.history())
    before = _snap(env, python)
    packages = installed_names(python)
    socket_audit_log.reset()

    plan = preview_plan(manager, manager.plan("update", "plan-pack", {}, listen="127.0.0.1"))

    assert plan["ok"] is True, plan["blockers"]
    assert plan["packs"]["changed"] == [
        {
            "change": "changed",
            "name": "plan-pack",
            "from": repo.commits[-2][:12],
            "to": new[:12],
            "source": "git",
            "note": "",
        }
    ]
    assert plan["python"]["downgraded"] == [{"change": "downgraded", "name": "cm-plan-lib", "from": "2.0", "to": "1.0"}]
    assert plan["python"]["added"] == []  # the blacklisted one is not installed...
    held = plan["held_back"]
    assert [(h["requirement"], h["pack"], h["reason"]) for h in held] == [("cm-plan-black", "plan-pack", "blacklisted")]
    assert "cm-plan-lib==1.0" in plan["with_deps"]["requirements"]
    assert plan["resolver"].endswith("install --dry-run")
    # ...and nothing changed: the tree, the venv, the queue; no socket here, none through the trap
    after = _snap(env, python)
    assert before[0] == after[0], changes(before[0], after[0])
    assert before == after
    assert installed_names(python) == packages
    assert len(manager.queue.history()) == history and not manager.queue.pending()
    assert socket_audit_log.inet_connects() == []
    assert trap.count == 0

    # skip_deps: nothing happens to python, and the plan says what it leaves out
    skipped = preview_plan(manager, manager.plan("update", "plan-pack", {"skip_deps": True}, listen="127.0.0.1"))
    assert skipped["python"]["downgraded"] == [] and skipped["skip_deps"] is True
    assert [p["name"] for p in skipped["with_deps"]["python"]] == ["cm-plan-lib"]


def test_offline_plan_missing_wheel_is_a_blocker_not_a_socket(world, socket_audit_log):
    env, python, repo, _new, trap = world
    repo.commit("wants a wheel nobody has", {"requirements.txt": "cm-plan-absent==9.9\n"})
    before = _snap(env, python)
    socket_audit_log.reset()
    plan = preview_plan(env.manager, env.manager.plan("update", "plan-pack", {}, listen="127.0.0.1"))
    assert plan["ok"] is False
    assert [b["code"] for b in plan["blockers"]] == ["deps_missing_wheels"]
    assert _snap(env, python) == before
    assert socket_audit_log.inet_connects() == [] and trap.count == 0


def test_previews_of_the_other_kinds_move_nothing(world):
    env, python, _repo, _new, _trap = world
    m = env.manager
    before = _snap(env, python)

    def plan(kind: str, target: str, **params: Any) -> dict[str, Any]:
        return preview_plan(m, m.plan(kind, target, params, listen="127.0.0.1"))

    gone = plan("uninstall", "plan-pack")
    assert gone["packs"]["removed"][0]["name"] == "plan-pack"
    assert gone["moves"][0]["from"] == "custom_nodes/plan-pack" and "trash" in gone["moves"][0]["to"]
    off = plan("disable", "plan-pack")
    assert off["packs"]["disabled"][0]["name"] == "plan-pack" and ".disabled" in off["moves"][0]["to"]
    fix = plan("fix", "plan-pack")
    assert fix["ok"] and fix["python"]["added"] == [] and "installed" in " ".join(fix["notes"])
    again = plan("install", "plan-pack")
    assert [b["code"] for b in again["blockers"]] == ["pack_exists"]
    switched = plan("switch_version", "plan-pack", commit=_repo.commits[0])
    assert switched["packs"]["changed"][0]["to"] == _repo.commits[0][:12]
    assert plan("update_all", "all")["packs"]["changed"][0]["name"] == "plan-pack"
    assert _snap(env, python) == before


# --- the CLI --------------------------------------------------------------------------------------------
def test_cli_dry_run_prints_the_plan_and_queues_nothing(world):
    env, python, _repo, new, trap = world
    root = env.manager.layout.comfyui_root
    before = _snap(env, python)
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("CM_") and k != "COMFYUI_PATH"}
    out = subprocess.run(
        [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(root), "update", "plan-pack", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=300,
        env=cli_env,
        cwd=root.parent,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "plan: update plan-pack" in text
    assert "python downgraded" in text and "cm-plan-lib" in text and "2.0" in text and "1.0" in text
    assert "held back" in text and "asked by plan-pack (blacklisted)" in text
    assert new[:12] in text
    assert _snap(env, python) == before
    assert trap.count == 0
    listed = subprocess.run(
        [
            sys.executable,
            str(REPO / "cm-cli.py"),
            "--comfyui",
            str(root),
            "--json",
            "uninstall",
            "plan-pack",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=cli_env,
        cwd=root.parent,
    )
    assert listed.returncode == 0, listed.stderr
    assert '"removed"' in listed.stdout and (root / "custom_nodes" / "plan-pack").is_dir()


# --- the API ----------------------------------------------------------------------------------------------
async def test_api_dry_run_answers_plans_and_queues_nothing(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    (root / "custom_nodes" / "plain-pack").mkdir()
    (root / "custom_nodes" / "plain-pack" / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    packs = ["plain-pack"]
    before = listing(root / "custom_nodes")
    resp = await client.post(
        f"{PREFIX}/queue",
        json={
            "tasks": [{"kind": "disable", "target": packs[0]}, {"kind": "uninstall", "target": packs[0]}],
            "dry_run": True,
        },
    )
    body = await resp.json()
    assert resp.status == 200, body
    data = body.get("data", body)
    assert data["dry_run"] is True and [p["kind"] for p in data["plans"]] == ["disable", "uninstall"]
    assert data["plans"][0]["packs"]["disabled"][0]["name"] == packs[0]
    assert data["plans"][1]["packs"]["removed"][0]["name"] == packs[0]
    one = await client.post(f"{PREFIX}/queue", json={"kind": "enable", "target": packs[0], "dry_run": True})
    plan = (await one.json()).get("data", {})["plans"][0]
    assert plan["ok"] is False and plan["blockers"][0]["code"] == "not_found"
    # an install from the demo channel's git repository: cloned aside to read it, never into the tree
    got = await client.post(f"{PREFIX}/queue", json={"kind": "install", "target": "demo-image-tools", "dry_run": True})
    install = (await got.json()).get("data", {})["plans"][0]
    assert install["ok"] is True, install["blockers"]
    assert install["packs"]["added"][0]["source"] == "git" and len(install["packs"]["added"][0]["to"]) == 12
    assert listing(root / "custom_nodes") == before
    assert not api.manager.queue.pending() and not api.manager.queue.history()


def test_snapshot_restore_plan_is_the_shared_record(world, uv_bin):
    from manager.snapshots import save_now

    env, python, _repo, _new, trap = world
    m = env.manager
    save_now(m, "before-plan", reason="manual")
    subprocess.run(
        [
            uv_bin,
            "pip",
            "install",
            "--python",
            str(python),
            "--offline",
            "--no-index",
            "--no-config",
            "--find-links",
            str(m.layout.wheelhouse_dir),
            "cm-plan-lib==1.0",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    before = _snap(env, python)
    answer = m.preview(m.plan("snapshot_restore", "before-plan", {"dry_run": True}, listen="127.0.0.1", enforce=False))
    assert "steps" in answer["plan"]  # the snapshot engine's own plan stays as it was
    shared = answer["shared_plan"]
    assert shared["kind"] == "snapshot_restore" and shared["target"] == "before-plan"
    assert shared["python"]["upgraded"] == [{"change": "upgraded", "name": "cm-plan-lib", "from": "1.0", "to": "2.0"}]
    assert _snap(env, python) == before and trap.count == 0


def test_a_git_pack_with_local_edits_is_a_blocker_of_its_update_plan(world):
    env, python, _repo, _new, _trap = world
    pack = env.manager.layout.custom_nodes / "plan-pack"
    (pack / "nodes.py").write_text("VERSION = 'edited'\n")
    before = _snap(env, python)
    plan = preview_plan(env.manager, env.manager.plan("update", "plan-pack", {}, listen="127.0.0.1"))
    assert plan["ok"] is False and [b["code"] for b in plan["blockers"]] == ["git_local_changes"]
    assert plan["packs"]["changed"] == [] and _snap(env, python) == before


def test_pip_dry_run_report_resolves_a_downgrade_offline(tmp_path, monkeypatch, uv_bin, socket_audit_log):
    """The pip backend: ``pip install --dry-run --report`` against the wheelhouse only."""
    from manager.deps.installer import DependencyInstaller
    from manager.deps.plan import PackSource
    from manager.deps.policy import DepsPolicy
    from manager.network import NetworkGate, NetworkMode, NetworkPolicy

    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    trap = ConnectTrap()
    for key, value in trap.proxy_env().items():
        monkeypatch.setenv(key, value)
    try:
        python = make_venv(tmp_path / "venv", with_pip=True, uv=uv_bin, cache_dir=tmp_path / "uv-cache")
        wheelhouse = tmp_path / "wheelhouse"
        for version in ("1.0", "2.0"):
            build_wheel(wheelhouse, "cm-plan-lib", version)
        subprocess.run(
            [
                uv_bin,
                "pip",
                "install",
                "--python",
                str(python),
                "--offline",
                "--no-index",
                "--no-config",
                "--find-links",
                str(wheelhouse),
                "cm-plan-lib==2.0",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        pack = tmp_path / "p"
        pack.mkdir()
        (pack / "requirements.txt").write_text("cm-plan-lib<2\n")
        policy = DepsPolicy(python=str(python), use_uv=False, wheelhouse_dirs=(wheelhouse,))
        installer = DependencyInstaller(policy, NetworkGate(NetworkPolicy(mode=NetworkMode.OFFLINE)))
        assert installer.choice.name == "pip"
        before = listing(python.parent.parent)
        socket_audit_log.reset()
        deps = installer.plan_for([PackSource("p", pack)])
        run = installer.dry_run(deps)
        plan = deps.to_plan("fix", "p", after=run.after, removed=run.removed, resolver=run.resolver).to_dict()
        assert run.blockers == () and plan["python"]["downgraded"] == [
            {"change": "downgraded", "name": "cm-plan-lib", "from": "2.0", "to": "1.0"}
        ]
        assert "--report" in run.commands[0] and "--no-index" in run.commands[0]
        assert listing(python.parent.parent) == before
        assert socket_audit_log.inet_connects() == [] and trap.count == 0
    finally:
        trap.close()
