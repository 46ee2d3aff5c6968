"""Capture from a real tree and venv site folder, diff between snapshots, and the restore plan
(order, flags with classic meanings, only/no_deps, unlisted packs, what is never touched)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from manager.context import Manager
from manager.errors import TaskInvalid
from manager.snapshots.capture import capture, read_python_packages
from manager.snapshots.diff import diff
from manager.snapshots.model import PackState, PythonPackage, Snapshot
from manager.snapshots.plan import RestoreOptions, build_plan
from support.gitrepos import git, make_repo
from support.ops_fixtures import write_config

C1, C2 = "1" * 40, "2" * 40


def snap(packs=(), python=(), origin="ours", **kw) -> Snapshot:
    return Snapshot(
        created_at="2026-01-01T00:00:00.000000Z", packs=tuple(packs), python=tuple(python), origin=origin, **kw
    )


def git_pack(name, commit=C1, enabled=True):
    return PackState(name, "git", enabled, id=name, url=f"https://github.com/x/{name}", commit=commit)


def cnr_pack(name, version="1.0.0", enabled=True):
    return PackState(name, "cnr", enabled, id=name, version=version, cnr_id=name)


# --- capture -----------------------------------------------------------------------------------
def _dist_info(site: Path, name: str, version: str, direct: dict | None = None) -> None:
    folder = site / f"{name}-{version}.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(f"Name: {name}\nVersion: {version}\n")
    if direct is not None:
        (folder / "direct_url.json").write_text(json.dumps(direct))


def test_python_packages_with_their_sources(tmp_path):
    site = tmp_path / "site-packages"
    _dist_info(site, "Typing_Extensions", "4.12.2")
    _dist_info(site, "mylib", "0.1", {"url": "https://github.com/x/mylib", "vcs_info": {"vcs": "git", "commit_id": C1}})
    _dist_info(site, "localwheel", "2.0", {"url": "file:///w/localwheel-2.0-py3-none-any.whl", "archive_info": {}})
    _dist_info(site, "remotewheel", "3.0", {"url": "https://files.example/remotewheel-3.0.whl", "archive_info": {}})
    pkgs = {p.name: p for p in read_python_packages([site, tmp_path / "absent"])}
    assert pkgs["typing-extensions"] == PythonPackage("typing-extensions", "4.12.2")
    assert pkgs["mylib"].kind == "url" and pkgs["mylib"].source == f"git+https://github.com/x/mylib@{C1}"
    assert pkgs["localwheel"].kind == "local" and pkgs["remotewheel"].kind == "url"


def test_capture_of_a_real_tree(tmp_path, comfy_tree):
    upstream = make_repo(tmp_path / "up" / "alpha", name="alpha")
    nodes = comfy_tree / "custom_nodes"
    git(tmp_path, "clone", "-q", str(upstream.path), str(nodes / "alpha"))
    (nodes / "solo.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    reg = nodes / ".disabled" / "regpack@1_2_0"
    reg.mkdir(parents=True)
    (reg / "pyproject.toml").write_text('[project]\nname = "regpack"\nversion = "1.2.0"\n')
    (reg / ".tracking").write_text("pyproject.toml\n")
    (comfy_tree / "models" / "checkpoints" / "m.safetensors").write_bytes(b"x" * 10)
    write_config(comfy_tree, network_mode="offline", pip_index_url="https://user:secret@mirror.example/simple")
    manager = Manager.standalone(comfy_tree, env={})
    s = capture(manager)
    packs = {p.name: p for p in s.packs}
    assert packs["alpha"].kind == "git" and packs["alpha"].commit == upstream.commits[-1]
    assert packs["alpha"].url == str(upstream.path) and packs["alpha"].branch == "main"
    assert packs["solo.py"].kind == "file" and len(packs["solo.py"].sha256) == 64
    assert packs["regpack"] == PackState("regpack", "cnr", False, id="regpack", version="1.2.0", cnr_id="regpack")
    assert s.dependencies["alpha"] == ("packaging",)
    assert any(p.name == "pytest" for p in s.python)  # the interpreter running the tests
    assert s.python_version == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert [(m.folder, m.name, m.size) for m in s.models] == [("checkpoints", "m.safetensors", 10)]
    assert s.config["network_mode"] == "offline"
    assert "pip_index_url" not in s.config and "secret" not in json.dumps(s.to_json())
    assert Snapshot.from_dict(json.loads(json.dumps(s.to_json()))) == s


# --- diff --------------------------------------------------------------------------------------
def test_diff_of_packs_packages_and_models():
    from manager.snapshots.model import ModelState

    current = snap(
        [git_pack("a", C2), git_pack("b", enabled=False), git_pack("gone"), cnr_pack("r", "1.1.0")],
        [PythonPackage("numpy", "2.0"), PythonPackage("extra", "1.0")],
        models=(ModelState("loras", "l.safetensors", 5),),
    )
    wanted = snap(
        [git_pack("a", C1), git_pack("b"), git_pack("new"), cnr_pack("r", "1.0.0")],
        [PythonPackage("numpy", "1.26.4"), PythonPackage("added", "3.0")],
        models=(ModelState("loras", "l.safetensors", 6), ModelState("vae", "v.pt", 1)),
    )
    d = diff(current, wanted)
    assert [(c.action, c.name) for c in d.packs] == [
        ("remove", "gone"),
        ("move", "a"),
        ("move", "r"),
        ("enable", "b"),
        ("add", "new"),
    ]
    assert [(c.action, c.name) for c in d.python] == [("add", "added"), ("change", "numpy"), ("remove", "extra")]
    assert [(c.action, c.key) for c in d.models] == [("different", "loras/l.safetensors"), ("missing", "vae/v.pt")]
    assert d.counts()["packs.move"] == 2 and not d.empty
    assert "move a from 2222222222 to 1111111111" in d.lines()
    assert diff(wanted, wanted).empty


def test_same_repository_under_another_url_spelling_is_the_same_pack():
    a = PackState("x", "git", True, url="https://github.com/o/x.git", commit=C1)
    b = PackState("x", "git", True, url="git@github.com:o/x", commit=C1[:12])
    assert diff(snap([a]), snap([b])).empty


# --- plan --------------------------------------------------------------------------------------
def _plan(current, wanted, **opts):
    return build_plan(wanted, diff(current, wanted), RestoreOptions(**opts))


def test_plan_order_and_steps():
    current = snap(
        [
            git_pack("a", C2),
            git_pack("b", enabled=False),
            git_pack("gone"),
            cnr_pack("r", "1.1.0"),
            git_pack("c", C2, enabled=False),
        ],
        [PythonPackage("numpy", "2.0")],
    )
    wanted = snap(
        [
            git_pack("a", C1),
            git_pack("b"),
            git_pack("new", enabled=False),
            cnr_pack("r", "1.0.0"),
            git_pack("c", C1, enabled=False),
        ],
        [PythonPackage("numpy", "1.26.4")],
    )
    plan = _plan(current, wanted)
    kinds = [(s.kind, s.target) for s in plan.steps]
    assert kinds == [
        ("pack_remove", "gone"),
        ("pack_checkout", "a"),
        ("pack_enable", "b"),
        # a disabled pack moves while enabled, then goes back
        ("pack_enable", "c"),
        ("pack_checkout", "c"),
        ("pack_disable", "c"),
        ("pack_switch", "r"),
        ("pack_install", "new"),
        ("pack_disable", "new"),
        ("pip_install", "python"),
    ]
    assert [s.index for s in plan.steps] == list(range(1, len(plan.steps) + 1))
    assert plan.steps[1].params["commit"] == C1
    assert plan.steps[-1].params["requirements"] == ["numpy==1.26.4"]
    assert "1. remove" in plan.lines()[0]


def test_pip_flags_have_the_classic_meanings():
    current = snap(python=[PythonPackage("a", "1"), PythonPackage("b", "1"), PythonPackage("c", "1")])
    wanted = snap(
        python=[
            PythonPackage("a", "2"),
            PythonPackage("b", "2", "url", "git+https://x/b@" + C1),
            PythonPackage("c", "2", "local", "file:///w/c-2-py3-none-any.whl"),
        ]
    )

    def reqs(**opts):
        plan = _plan(current, wanted, **opts)
        steps = [s for s in plan.steps if s.kind == "pip_install"]
        return (steps[0].params["requirements"] if steps else []), plan.skipped_python

    assert reqs()[0] == ["a==2"]  # default: index packages only
    assert len(reqs()[1]) == 2 and "--pip-non-local-url" in " ".join(reqs()[1])
    assert reqs(pip_non_local_url=True)[0] == ["b @ git+https://x/b@" + C1]
    assert reqs(pip_local_url=True)[0] == ["c @ file:///w/c-2-py3-none-any.whl"]
    assert len(reqs(pip_non_url=True, pip_non_local_url=True, pip_local_url=True)[0]) == 3
    assert reqs(only="nodes") == ([], ())


def test_only_nodes_only_pips_and_unlisted_modes():
    current = snap([git_pack("extra"), git_pack("a", C2)], [PythonPackage("numpy", "2.0")])
    wanted = snap([git_pack("a", C1)], [PythonPackage("numpy", "1.0")])
    assert [s.kind for s in _plan(current, wanted, only="pips").steps] == ["pip_install"]
    assert [s.kind for s in _plan(current, wanted, only="nodes").steps] == ["pack_remove", "pack_checkout"]
    assert [s.kind for s in _plan(current, wanted, only="nodes", unlisted="disable").steps][0] == "pack_disable"
    keep = _plan(current, wanted, only="nodes", unlisted="keep")
    assert [s.kind for s in keep.steps] == ["pack_checkout"] and any("extra" in n for n in keep.notes)
    # a classic snapshot disables unlisted packs by default, as the classic manager does
    classic = snap([git_pack("a", C1)], origin="classic")
    assert [s.kind for s in _plan(current, classic).steps][0] == "pack_disable"


def test_extra_packages_are_kept_unless_asked_and_installers_never_go():
    current = snap(
        python=[
            PythonPackage("numpy", "1"),
            PythonPackage("extra", "1"),
            PythonPackage("pip", "24"),
            PythonPackage("torch", "2.4"),
        ]
    )
    wanted = snap(python=[PythonPackage("numpy", "1")])
    plan = build_plan(wanted, diff(current, wanted), RestoreOptions())
    assert plan.steps == () and any("extra" in s for s in plan.skipped_python)
    plan = build_plan(
        wanted, diff(current, wanted), RestoreOptions(remove_extra_pips=True), protected=frozenset({"torch"})
    )
    (step,) = plan.steps
    assert step.kind == "pip_uninstall" and step.params["names"] == ["extra"]
    assert any("torch" in n for n in plan.notes) and any("pip" in n for n in plan.notes)


def test_packs_without_a_source_are_noted_not_guessed():
    current = snap()
    wanted = snap([PackState("solo.py", "file", True), PackState("plain", "folder", True)])
    plan = _plan(current, wanted)
    assert plan.steps == ()
    assert len([n for n in plan.notes if "no recorded source" in n]) == 2


def test_options_from_params():
    opts = RestoreOptions.from_params({"pip-non-url": True, "no_deps": True, "only": "nodes"})
    assert opts.pip_non_url and opts.no_deps and opts.only == "nodes"
    with pytest.raises(TaskInvalid):
        RestoreOptions.from_params({"only": "everything"})
    with pytest.raises(TaskInvalid):
        RestoreOptions.from_params({"no_deps": "yes"})


def test_a_python_that_cannot_run_stops_the_plan_instead_of_reinstalling_everything(tmp_path, comfy_tree):
    from manager.deps.errors import DepsInstallerUnavailable
    from manager.snapshots.restore import plan_restore

    write_config(comfy_tree, network_mode="offline", python_executable=str(tmp_path / "no-such-python"))
    manager = Manager.standalone(comfy_tree, env={})
    wanted = snap(python=[PythonPackage("numpy", "1.26.4")])
    assert any("python packages not captured" in n for n in capture(manager).notes)
    with pytest.raises(DepsInstallerUnavailable):
        plan_restore(manager, wanted, RestoreOptions())
    assert plan_restore(manager, wanted, RestoreOptions(only="nodes")).empty
