"""Restore for real: git repositories (file:// offline, git daemon on 127.0.0.1 online), registry
zips (archive cache offline, fake registry online), a real venv and wheelhouse / PEP 503 index,
real uv. Round trip A -> B -> A, a classic snapshot, dry run, offline pre-check, a failure mid-way."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from manager.context import Manager
from manager.errors import PolicyDenied, SnapshotRestoreFailed, SnapshotSourcesMissing
from manager.host import StandaloneHost
from manager.inventory import read_git_meta
from manager.records import PolicyDecision
from manager.snapshots import auto_snapshot, store_of
from manager.snapshots.capture import capture
from manager.snapshots.classic import from_classic
from manager.snapshots.plan import RestoreOptions
from manager.snapshots.restore import dependency_installer, plan_restore, restore
from manager.tasks import TaskSpec
from support.fake_registry import FakeRegistry, make_node, make_version
from support.gitrepos import GitDaemon, git
from support.ops_fixtures import build_zip, cnr_files, write_channel, write_config
from support.treesum import listing
from support.wheels import (
    ConnectTrap,
    Pkg,
    build_wheels,
    installed_names,
    make_venv,
    serve_simple_index,
)

ALLOW = PolicyDecision.allow("snapshot_restore", "", "test")
REG = "reg-pack"
LOCKS = "user/__manager/locks"
WHEELS = [Pkg("beta", "1.0"), Pkg("beta", "2.0"), Pkg("gamma", "1.0"), Pkg("gamma", "2.0"), Pkg("delta", "1.0")]
INIT = {"__init__.py": "NODE_CLASS_MAPPINGS = {}\n"}
PACKS = {
    "alpha": [
        {**INIT, "nodes.py": "V = 1\n", "requirements.txt": "beta==1.0\n"},
        {"nodes.py": "V = 2\n", "requirements.txt": "beta==2.0\n"},
    ],
    "bravo": [{**INIT, "nodes.py": "B = 1\n", "requirements.txt": "gamma==1.0\n"}],
    "charlie": [{**INIT, "nodes.py": "C = 1\n"}],
    "delta-pack": [{**INIT, "nodes.py": "D = 1\n", "requirements.txt": "delta==1.0\n"}],
}


@pytest.fixture(autouse=True)
def _own_caches(own_caches):
    return own_caches


def pack_repo(path: Path, versions: list[dict[str, str]]) -> list[str]:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    commits = []
    for i, files in enumerate(versions):
        for rel, text in files.items():
            (path / rel).write_text(text)
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"v{i + 1}")
        commits.append(git(path, "rev-parse", "HEAD"))
    return commits


@dataclass
class World:
    root: Path
    manager: Manager
    python: Path
    urls: dict[str, str]
    commits: dict[str, list[str]]
    src: Path
    wheels: Path
    events: list = field(default_factory=list)

    @property
    def nodes(self) -> Path:
        return self.root / "custom_nodes"

    @property
    def ops(self) -> Any:
        from manager.operations import Ops

        return Ops(self.manager)

    def rep(self) -> Any:
        from manager.operations import Reporter

        return Reporter()

    def run(self, kind: str, target: str, **params: Any) -> Any:
        task = self.manager.queue.enqueue(TaskSpec(kind, target, params))
        assert self.manager.queue.run_until_idle(timeout=300)
        return self.manager.queue.get(task.id)

    def state(self) -> dict[str, Any]:
        """Every pack (files without .git, commit) and every python package: what 'equal' means."""
        out: dict[str, Any] = {}
        for folder in (self.nodes, self.nodes / ".disabled"):
            if not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                if entry.name.startswith("."):
                    continue
                rel = entry.relative_to(self.nodes).as_posix()
                if entry.is_file():
                    out[rel] = hashlib.sha256(entry.read_bytes()).hexdigest()
                    continue
                files = {k: v for k, v in listing(entry, skip=(".git",)).items() if v != "dir"}
                commit = read_git_meta(entry).commit if (entry / ".git").exists() else ""
                out[rel] = (commit, files)
        out["python"] = installed_names(self.python)
        return out


def build_world(
    tmp_path: Path, uv_bin: str, *, mode: str, stack: contextlib.ExitStack, http_server: Any = None
) -> World:
    src = tmp_path / "src"
    commits = {name: pack_repo(src / name, versions) for name, versions in PACKS.items()}
    wheels = tmp_path / "wheels"
    built = build_wheels(wheels, WHEELS)
    zips = {v: build_zip(tmp_path / "zips" / f"{v}.zip", cnr_files(REG, v)) for v in ("1.0.0", "1.1.0")}
    python = make_venv(tmp_path / "venv", uv=uv_bin)
    root = tmp_path / "ComfyUI"
    for sub in ("custom_nodes", "models", "user"):
        (root / sub).mkdir(parents=True)
    channel = write_channel(tmp_path / "channel", [])
    if mode == "offline":
        urls = {name: (src / name).as_uri() for name in PACKS}
        write_config(root, network_mode="offline", channel_url=channel)
        house = root / "user" / "__manager" / "wheelhouse"
        house.mkdir(parents=True)
        for whl in built:
            shutil.copy(whl, house)
        for version, zpath in zips.items():
            dest = root / "user" / "__manager" / "cache" / "archives" / "cnr" / REG / f"{version}.zip"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(zpath, dest)
    else:
        daemon = stack.enter_context(GitDaemon(src))
        urls = {name: daemon.url(name) for name in PACKS}
        index = serve_simple_index(http_server, built)
        base = http_server.url("/cdn")
        versions = [
            make_version(REG, "pub", v, created_at=f"2025-0{i + 1}-01T00:00:00Z", download_base=base)
            for i, v in enumerate(("1.1.0", "1.0.0"))
        ]
        for v, zpath in zips.items():
            http_server.static(f"/cdn/pub/{REG}/{v}/node.zip", zpath.read_bytes(), content_type="application/zip")
        node = make_node(
            REG,
            name="Reg",
            publisher_id="pub",
            publisher_name="Pub",
            repository="https://github.com/example/reg-pack",
            versions=versions,
        )
        FakeRegistry([node], {REG: versions}, prefix="/api").install(http_server)
        write_config(
            root, network_mode="public", channel_url=channel, pip_index_url=index, registry_url=http_server.url("/api")
        )
    host = StandaloneHost.from_root(root)
    host.python = str(python)
    manager = Manager.create(host, env={})
    world = World(root, manager, python, urls, commits, src, wheels)
    manager.queue.subscribe(world.events.append)
    stack.callback(lambda: manager.queue.stop(timeout=10))
    return world


def make_state_a(w: World) -> None:
    from manager.operations.install import install

    allow = PolicyDecision.allow("install", "git_url", "test")
    install(w.ops, w.urls["alpha"], w.rep(), name="alpha", ref=w.commits["alpha"][0], policy=allow)
    for name in ("bravo", "charlie"):
        install(w.ops, w.urls[name], w.rep(), name=name, policy=allow)
    install(w.ops, REG, w.rep(), version="1.0.0")


def make_state_b(w: World) -> None:
    """Update one pack, disable one, remove one, install one, change a package (and a registry version)."""
    from manager.operations.install import install
    from manager.operations.remove import uninstall
    from manager.operations.toggle import disable
    from manager.operations.update import switch_version

    switch_version(w.ops, "alpha", w.rep(), commit=w.commits["alpha"][1])
    disable(w.ops, "bravo", w.rep())
    uninstall(w.ops, "charlie", w.rep())
    install(
        w.ops,
        w.urls["delta-pack"],
        w.rep(),
        name="delta-pack",
        policy=PolicyDecision.allow("install", "git_url", "test"),
    )
    switch_version(w.ops, REG, w.rep(), version="1.1.0")
    req = w.root / "gamma2.txt"
    req.write_text("gamma==2.0\n")
    dependency_installer(w.manager).install_requirements_file(req)


@pytest.fixture
def offline_world(tmp_path, uv_bin):
    with contextlib.ExitStack() as stack:
        yield build_world(tmp_path, uv_bin, mode="offline", stack=stack)


@pytest.fixture
def online_world(tmp_path, uv_bin, http_server):
    with contextlib.ExitStack() as stack:
        yield build_world(tmp_path, uv_bin, mode="online", stack=stack, http_server=http_server)


@pytest.fixture
def trap(monkeypatch):
    listener = ConnectTrap()
    for key, value in listener.proxy_env().items():
        monkeypatch.setenv(key, value)
    yield listener
    listener.close()


def _round_trip(w: World, *, through_queue: bool) -> dict[str, Any]:
    make_state_a(w)
    state_a = w.state()
    assert state_a["python"] == {"beta": "1.0", "gamma": "1.0"}
    saved = store_of(w.manager).save(capture(w.manager), "state-a")
    make_state_b(w)
    state_b = w.state()
    assert state_b != state_a
    assert state_b["python"] == {"beta": "2.0", "gamma": "2.0", "delta": "1.0"}
    assert "charlie" not in state_b and ".disabled/bravo" in state_b and "delta-pack" in state_b
    if through_queue:
        task = w.run("snapshot_restore", saved.name, remove_extra_pips=True, policy=ALLOW.to_dict())
        assert task.state.value == "done", task.error
        result = task.result
    else:
        result = restore(
            w.manager,
            store_of(w.manager).load(saved.name),
            RestoreOptions(remove_extra_pips=True),
            where=saved.name,
            policy=ALLOW,
        ).to_json()
    assert result["ok"] and result["failed"] is None and result["not_done"] == []
    assert w.state() == state_a
    # nothing half-done left behind, and the undo point exists
    assert (
        not any((w.nodes / ".cm-staging.disabled").glob("*")) if (w.nodes / ".cm-staging.disabled").exists() else True
    )
    assert result["auto_snapshot"] and store_of(w.manager).load(result["auto_snapshot"]).reason == "auto:restore"
    # a second restore has nothing to do and changes no file
    before = listing(w.root)
    again = restore(
        w.manager, store_of(w.manager).load(saved.name), RestoreOptions(remove_extra_pips=True), policy=ALLOW
    )
    assert again.ok and again.done == () and listing(w.root) == before
    return result


def test_round_trip_offline_from_local_sources(offline_world, trap, socket_audit_log):
    result = _round_trip(offline_world, through_queue=True)
    kinds = [d["step"]["kind"] for d in result["done"]]
    assert kinds == [
        "pack_remove",
        "pack_checkout",
        "pack_enable",
        "pack_switch",
        "pack_install",
        "pip_install",
        "pip_uninstall",
    ]
    steps = [e.data["line"] for e in offline_world.events if e.name == "progress" and e.data["stage"] == "step"]
    assert [s.split("]")[0] for s in steps] == [f"[{i}/7" for i in range(1, 8)]
    assert socket_audit_log.inet_connects() == []  # offline: not even loopback
    assert trap.count == 0  # and uv/pip never tried the network


def test_round_trip_online_through_loopback_servers(online_world, http_server):
    _round_trip(online_world, through_queue=False)
    assert http_server.count(f"/cdn/pub/{REG}/1.0.0/node.zip") >= 1
    assert any("/simple" in r for r in map(str, http_server.requests))


def test_dry_run_shows_the_plan_and_changes_nothing(offline_world):
    w = offline_world
    make_state_a(w)
    store_of(w.manager).save(capture(w.manager), "a")
    make_state_b(w)
    # the queue's own lock file is created on its first task: not the dry run's doing
    tree, venv = listing(w.root, skip=(LOCKS,)), listing(w.python.parent.parent)
    task = w.run("snapshot_restore", "a", dry_run=True, remove_extra_pips=True)
    assert task.state.value == "done", task.error
    lines = task.result["lines"]
    assert lines[0] == "1. remove delta-pack (git " + w.commits["delta-pack"][0][:10] + ") (not in the snapshot)"
    assert any(line.endswith("install 2 python package(s): beta==1.0, gamma==1.0") for line in lines)
    assert [s["kind"] for s in task.result["steps"]][-1] == "pip_uninstall"
    plan = plan_restore(w.manager, store_of(w.manager).load("a"), RestoreOptions())
    assert not plan.empty
    assert listing(w.root, skip=(LOCKS,)) == tree and listing(w.python.parent.parent) == venv


def test_offline_restore_lists_everything_missing_before_starting(offline_world):
    w = offline_world
    make_state_a(w)
    snap = capture(w.manager)
    make_state_b(w)
    shutil.rmtree(w.src / "charlie")  # a pack source gone
    (w.root / "user" / "__manager" / "wheelhouse" / "gamma-1.0-py3-none-any.whl").unlink()  # and a wheel
    tree, venv = listing(w.root), installed_names(w.python)
    with pytest.raises(SnapshotSourcesMissing) as err:
        restore(w.manager, snap, RestoreOptions(), policy=ALLOW)
    missing = {(m["name"], m["what"]) for m in err.value.details["missing"]}
    assert ("charlie", "repository") in missing or ("charlie", "commit") in missing
    assert any(m["what"] == "wheel" and "gamma" in m["needed"] for m in err.value.details["missing"])
    assert listing(w.root) == tree and installed_names(w.python) == venv  # nothing changed, no auto-snapshot


def test_failure_mid_restore_undoes_the_done_steps_in_reverse(online_world):
    """A clone that fails part-way (unknowable up front: the source moved) puts back every pack step done."""
    w = online_world
    make_state_a(w)
    snap = capture(w.manager)
    make_state_b(w)
    state_b = w.state()
    (w.src / "charlie").rename(w.src / "charlie-moved")  # its source became unreachable
    with pytest.raises(SnapshotRestoreFailed) as err:
        restore(w.manager, snap, RestoreOptions(remove_extra_pips=True), policy=ALLOW)
    details = err.value.details
    assert [d["step"]["kind"] for d in details["done"]] == [
        "pack_remove",
        "pack_checkout",
        "pack_enable",
        "pack_switch",
    ]
    assert details["failed"]["step"]["target"] == "charlie" and details["cause"]["code"] == "git_failed"
    assert [s["kind"] for s in details["not_done"]] == ["pip_install", "pip_uninstall"]
    assert details["auto_snapshot"] and err.value.code == "snapshot_restore_failed"
    # undone in reverse order, every one of them
    assert [d["step"]["kind"] for d in details["undone"]] == [
        "pack_switch",
        "pack_enable",
        "pack_checkout",
        "pack_remove",
    ], details["not_undone"]
    assert details["not_undone"] == []
    assert not (w.nodes / "charlie").exists()
    staging = w.nodes / ".cm-staging.disabled"
    assert not staging.exists() or not any(staging.iterdir())
    after = w.state()
    # the packs are exactly as before the restore; the requirements the checkout installed stay (the plan says so)
    assert {k: v for k, v in after.items() if k != "python"} == {k: v for k, v in state_b.items() if k != "python"}
    assert (w.nodes / "alpha" / "nodes.py").read_text() == "V = 2\n"
    assert "requirements it installed stay" in details["done"][1]["step"]["undo"]
    assert all(s["undo"].startswith("cannot be undone") for s in details["not_done"])


def test_git_installs_need_an_allowed_decision(offline_world):
    w = offline_world
    snap = from_classic({"git_custom_nodes": {w.urls["charlie"]: {"hash": w.commits["charlie"][0], "disabled": False}}})
    before = listing(w.root)
    with pytest.raises(PolicyDenied):
        restore(w.manager, snap, RestoreOptions(), policy=None)
    assert listing(w.root) == before


def test_classic_snapshot_restores(offline_world):
    w = offline_world
    classic = {
        "comfyui": None,
        "git_custom_nodes": {
            w.urls["alpha"]: {"hash": w.commits["alpha"][0], "disabled": False},
            w.urls["charlie"]: {"hash": w.commits["charlie"][0], "disabled": True},
        },
        "cnr_custom_nodes": {REG: "1.0.0"},
        "file_custom_nodes": [],
        "pips": {"gamma==1.0": "", "beta==1.0": ""},
    }
    path = w.root / "user" / "__manager" / "snapshots" / "2024-05-01_10-00-00_snapshot.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    import json

    path.write_text(json.dumps(classic))
    task = w.run("snapshot_restore", "2024-05-01_10-00-00_snapshot", policy=ALLOW.to_dict())
    assert task.state.value == "done", task.error
    state = w.state()
    assert state["alpha"][0] == w.commits["alpha"][0]
    assert state[".disabled/charlie"][0] == w.commits["charlie"][0]
    assert "reg-pack" in state and state["python"] == {"beta": "1.0", "gamma": "1.0"}


def test_auto_snapshot_retention(offline_world):
    w = offline_world
    write_config(w.root, network_mode="offline", snapshot_retention=2)
    manager = Manager.create(StandaloneHost(w.manager.layout, python=str(w.python)), env={})
    names = [auto_snapshot(manager, "update_all").name for _ in range(4)]
    kept = [e.name for e in store_of(manager).entries()]
    assert kept == names[:1:-1] and all("auto-update-all" in n for n in kept)


def test_save_runner_names_and_refuses_hostile_names(offline_world):
    w = offline_world
    task = w.run("snapshot_save", "-")
    assert task.state.value == "done", task.error
    assert task.result["name"].endswith("_snapshot") and task.result["summary"]["packs"] == 0
    bad = w.run("snapshot_save", "../outside")
    assert bad.state.value == "failed" and bad.error["code"] == "invalid_name"
    named = w.run("snapshot_save", "studio", reason="manual")
    assert named.state.value == "done" and store_of(w.manager).load("studio").python_version
    assert [e.name for e in store_of(w.manager).entries()][0] == "studio"
    assert not (w.root / "user" / "outside.json").exists()
