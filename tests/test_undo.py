"""Undo for real: a real venv as ComfyUI's python (with pip, so `pip freeze` is the judge), hand-built
wheels in the wheelhouse, a real local git repository for the pack, network_mode = offline.

The done-when of issue 19 item 2: a pack that downgrades a package is installed, then undone
offline, and `pip freeze` is byte for byte what it was; the pack goes to the trash."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from manager import undo
from manager.context import Manager
from manager.host import StandaloneHost
from manager.records import PolicyDecision
from manager.tasks import TaskSpec
from support.gitrepos import git
from support.ops_fixtures import write_channel, write_config
from support.wheels import Pkg, build_wheels, installed_names, make_venv

PACK = "undo-pack"
WHEELS = [Pkg("libx", "1.0"), Pkg("libx", "2.0"), Pkg("liby", "1.0")]


@pytest.fixture(autouse=True)
def _own_caches(own_caches):
    return own_caches


@dataclass
class World:
    root: Path
    manager: Manager
    python: Path
    url: str
    house: Path

    def freeze(self) -> bytes:
        return subprocess.run(
            [str(self.python), "-m", "pip", "freeze"], capture_output=True, check=True, timeout=120
        ).stdout

    def run(self, kind: str, target: str, **params: Any) -> Any:
        task = self.manager.queue.enqueue(TaskSpec(kind, target, params))
        assert self.manager.queue.run_until_idle(timeout=300)
        return self.manager.queue.get(task.id)

    def submit(self, kind: str, target: str, **params: Any) -> Any:
        """Through the table, as every door does: plan (params, policy), submit, run."""
        planned = self.manager.plan(kind, target, params, listen="127.0.0.1")
        (task,) = self.manager.submit([planned])
        assert self.manager.queue.run_until_idle(timeout=300)
        return self.manager.queue.get(task.id)


@pytest.fixture
def world(tmp_path, uv_bin):
    src = tmp_path / "src" / PACK
    src.mkdir(parents=True)
    git(src, "init", "-q", "-b", "main")
    (src / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (src / "requirements.txt").write_text("libx==1.0\nliby==1.0\n")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "v1")
    built = build_wheels(tmp_path / "wheels", WHEELS)
    python = make_venv(tmp_path / "venv", with_pip=True, uv=uv_bin)
    two = next(w for w in built if w.name.startswith("libx-2.0"))
    subprocess.run(
        [uv_bin, "pip", "install", "--python", str(python), "--offline", "--no-config"]
        + ["--no-index", "--find-links", str(two.parent), "libx==2.0"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    root = tmp_path / "ComfyUI"
    for sub in ("custom_nodes", "models", "user"):
        (root / sub).mkdir(parents=True)
    # python_executable: every installer of the Manager (packs, install_pip, undo) runs this venv's python
    write_config(
        root,
        network_mode="offline",
        channel_url=write_channel(tmp_path / "channel", []),
        python_executable=str(python),
    )
    house = root / "user" / "__manager" / "wheelhouse"
    house.mkdir(parents=True)
    for whl in built:
        shutil.copy(whl, house)
    host = StandaloneHost.from_root(root)
    host.python = str(python)
    manager = Manager.create(host, env={})
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: manager.queue.stop(timeout=10))
        yield World(root, manager, python, src.as_uri(), house)


def _install(w: World) -> Any:
    allow = PolicyDecision.allow("install", "git_url", "test")
    task = w.run("install", w.url, name=PACK, policy=allow.to_dict())
    assert task.state.value == "done", task.error
    assert installed_names(w.python)["libx"] == "1.0"  # the pack downgraded it
    assert installed_names(w.python)["liby"] == "1.0"  # and added one
    assert (w.root / "custom_nodes" / PACK).is_dir()
    return task


def test_undo_of_an_install_that_downgrades_puts_pip_freeze_back_byte_for_byte(world):
    w = world
    before = w.freeze()
    assert b"libx==2.0" in before and b"liby" not in before
    task = _install(w)

    record = json.loads((w.root / "user" / "__manager" / "logs" / "undo" / f"{task.id}.json").read_text())
    assert record["kind"] == "install" and record["ok"] and record["result"]["pack"] == PACK
    was = {p["name"]: p for p in record["before"]}
    now = {p["name"]: p for p in record["after"]}
    assert was["libx"] == {"name": "libx", "version": "2.0", "source": "index", "url": ""}
    assert now["libx"]["version"] == "1.0" and "liby" not in was and now["liby"]["source"] == "index"
    assert [r["task_id"] for r in undo.list_records(w.manager)] == [task.id]

    # a dry run resolves and changes nothing
    after_install = w.freeze()
    dry = w.submit("undo", task.id, dry_run=True)
    assert dry.state.value == "done", dry.error
    plan = dry.result["plan"]
    assert [p["name"] + "==" + p["version"] for p in plan["install"]] == ["libx==2.0"]
    assert plan["remove"] == ["liby"] and plan["pack"] == {"action": "uninstall", "pack": PACK}
    assert w.freeze() == after_install and (w.root / "custom_nodes" / PACK).is_dir()

    # the real undo, offline, through the task table (plan, policy, submit, the kind's runner)
    done = w.submit("undo", task.id)
    assert done.state.value == "done", done.error
    assert w.freeze() == before  # byte for byte
    assert not (w.root / "custom_nodes" / PACK).exists()
    trashed = [e for e in Path(w.manager.layout.trash_dir).iterdir() if (e / PACK).is_dir()]
    assert len(trashed) == 1  # restorable: `trash restore <entry>`
    assert (
        json.loads((w.root / "user" / "__manager" / "logs" / "undo" / f"{task.id}.json").read_text())["undone_by"]
        == done.id
    )
    # the undo is itself recorded (so it can be undone), and the admin prunes the records
    assert {r["task_id"] for r in undo.list_records(w.manager)} == {task.id, done.id}
    assert sorted(undo.prune_records(w.manager)) == sorted([task.id, done.id])
    assert undo.list_records(w.manager) == []


def test_undo_refuses_before_changing_anything_when_a_wheel_is_missing(world):
    w = world
    task = _install(w)
    for whl in w.house.glob("libx-2.0-*.whl"):
        whl.unlink()
    after_install = w.freeze()
    refused = w.submit("undo", task.id)
    assert refused.state.value == "failed"
    assert refused.error["code"] == "deps_missing_wheels"
    assert refused.error["details"]["missing"] == ["libx==2.0"]
    assert "libx==2.0" in refused.error["message"]
    # never a half-undo: liby is still there, the pack too
    assert w.freeze() == after_install and (w.root / "custom_nodes" / PACK).is_dir()


def test_torch_family_is_held_back_unless_asked(world):
    w = world
    torch = build_wheels(w.house, [Pkg("torch", "9.9")])[0]
    allow = PolicyDecision.allow("install_pip", "pip_package", "test")
    task = w.run("install_pip", "torch==9.9", packages=["torch==9.9"], policy=allow.to_dict())
    assert task.state.value == "done", task.error
    assert torch.exists() and installed_names(w.python)["torch"] == "9.9"
    plan = undo.plan_undo(w.manager, task.id)
    assert plan.remove == [] and plan.held_back[0]["name"] == "torch"
    assert undo.plan_undo(w.manager, task.id, include_torch=True).remove == ["torch"]


def test_an_unknown_or_hostile_task_id_is_refused(world):
    with pytest.raises(Exception) as exc:
        undo.load_record(world.manager, "../../etc/passwd")
    assert getattr(exc.value, "code", "") == "request_invalid"
    with pytest.raises(Exception) as exc2:
        undo.load_record(world.manager, "no-such-task")
    assert getattr(exc2.value, "code", "") == "not_found"


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return Path(out.stdout.strip())


def test_a_failed_undo_puts_the_package_set_back_as_it_was(world):
    """The undo's first half (libx 2.0 back) runs, its second half (liby out) fails for real: liby's
    RECORD is gone, so the installer cannot uninstall it. The undo rolls libx back to 1.0 from the
    wheelhouse: `pip freeze` equals the state before the undo byte for byte; the pack stays."""
    w = world
    task = _install(w)
    records = list(_site_packages(w.python).glob("liby-1.0.dist-info/RECORD"))
    assert len(records) == 1
    records[0].unlink()  # a damaged install: nothing lists liby's files any more
    before_undo = w.freeze()
    assert b"libx==1.0" in before_undo and b"liby==1.0" in before_undo

    failed = w.submit("undo", task.id)

    assert failed.state.value == "failed", failed.result
    error = failed.error
    assert error["code"] == "deps_install_failed", error
    assert "rolled back" in error["message"], error["message"]
    rolled = error["details"]["rolled_back"]
    assert rolled["state"] == "complete" and rolled["reinstalled"] == ["libx==1.0"], rolled
    assert error["details"]["undo_steps_done"] == ["install"]  # libx 2.0 had been put back first
    assert w.freeze() == before_undo  # byte for byte: libx is 1.0 again, liby still there
    assert (w.root / "custom_nodes" / PACK).is_dir()  # the pack step (last) never ran
    record = json.loads((w.root / "user" / "__manager" / "logs" / "undo" / f"{task.id}.json").read_text())
    assert "undone_by" not in record  # the undo can be run again once liby is repaired
