"""Snapshots with one bad entry among good ones (issue 17, finding 5).

A real tree: two packs installed from real git repositories (file://, offline), a real venv and
a wheelhouse. Each case stores a snapshot whose entries are good except one, of one bad-entry
class. Every door must refuse it with a coded error before the first change: the library restore,
the task table at submit time, the queued runner (which checks again), the CLI on a file; the
dry run shows it as a blocker. The whole tmp tree is checksummed before and after.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hostile.harness import Case, Sealed
from manager.context import Manager
from manager.host import StandaloneHost
from manager.layout import Layout
from manager.records import PolicyDecision
from manager.snapshots import restore_preview, store_of
from manager.snapshots.capture import capture
from manager.snapshots.plan import RestoreOptions
from manager.snapshots.restore import restore
from manager.tasks import TaskSpec
from support.gitrepos import git
from support.ops_fixtures import write_channel, write_config
from support.wheels import Pkg, build_wheels, make_venv

pytestmark = pytest.mark.hostile("snapshot-entry")

ALLOW = PolicyDecision.allow("snapshot_restore", "", "test")
LOCKS = ("ComfyUI/user/__manager/locks", "ComfyUI/user/__manager/logs")
GOOD_PIP = {"name": "beta", "version": "1.0", "kind": "index"}


def _repo(path: Path, text: str) -> str:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n" + text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "v1")
    return git(path, "rev-parse", "HEAD")


@pytest.fixture
def world(tmp_path: Path, uv_bin: str, own_caches: Any):
    from manager.operations import Ops, Reporter
    from manager.operations.install import install

    src = tmp_path / "src"
    commits = {name: _repo(src / name, f"# {name}\n") for name in ("alpha", "bravo")}
    root = tmp_path / "ComfyUI"
    for sub in ("custom_nodes", "models/checkpoints", "user"):
        (root / sub).mkdir(parents=True)
    write_config(root, network_mode="offline", channel_url=write_channel(tmp_path / "channel", []))
    house = root / "user" / "__manager" / "wheelhouse"
    build_wheels(house, [Pkg("beta", "1.0")])
    python = make_venv(tmp_path / "venv", uv=uv_bin)
    host = StandaloneHost.from_root(root)
    host.python = str(python)
    manager = Manager.create(host, env={})
    allow = PolicyDecision.allow("install", "git_url", "test")
    for name in ("alpha", "bravo"):
        install(Ops(manager), (src / name).as_uri(), Reporter(), name=name, policy=allow)
    good = capture(manager).to_json()
    yield manager, good, src, commits
    manager.queue.stop(timeout=10)


def _ours(good: dict[str, Any], bad: dict[str, Any]) -> dict[str, Any]:
    """The captured state, with bravo left out (a restore would remove it first) and one bad entry added."""
    doc = json.loads(json.dumps(good))
    doc["packs"] = [p for p in doc["packs"] if p["name"] != "bravo"]
    section, entry = next(iter(bad.items()))
    if section == "packs":
        doc["packs"].append(entry)
    elif section == "python":
        doc["python"]["packages"] = [GOOD_PIP, entry]
    else:
        doc["models"] = [entry]
    return doc


def _classic(good_urls: dict[str, str], commits: dict[str, str], bad: dict[str, Any]) -> dict[str, Any]:
    """A classic snapshot: alpha only (bravo would be disabled), one good pip, and the bad entry."""
    doc: dict[str, Any] = {
        "comfyui": None,
        "git_custom_nodes": {good_urls["alpha"]: {"hash": commits["alpha"], "disabled": False}},
        "cnr_custom_nodes": {},
        "file_custom_nodes": [],
        "pips": {"beta==1.0": ""},
    }
    for key, value in bad.items():
        if isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return doc


HEX = "0123456789abcdef0123456789abcdef01234567"
CASES = [
    # pack names and keys
    Case("name-with-slash", {"packs": {"name": "a/b", "kind": "git", "url": "file:///x", "commit": HEX}}, ""),
    Case("name-dotdot", {"packs": {"name": "..", "kind": "folder"}}, ""),
    Case("name-backslash", {"packs": {"name": "..\\evil", "kind": "folder"}}, ""),
    Case("name-device", {"packs": {"name": "NUL", "kind": "git", "url": "https://example.com/nul.git"}}, ""),
    Case("name-disabled-folder", {"packs": {"name": "x.disabled", "kind": "folder"}}, ""),
    Case("same-folder-twice", {"packs": {"name": "alpha", "kind": "cnr", "id": "alpha", "version": "1.0.0"}}, ""),
    # git URLs
    Case("url-ext-helper", {"packs": {"name": "evil", "kind": "git", "url": "ext::sh -c touch% /tmp/pwned"}}, ""),
    Case("url-fd-helper", {"packs": {"name": "evil", "kind": "git", "url": "fd::17"}}, ""),
    Case("url-option", {"packs": {"name": "evil", "kind": "git", "url": "--upload-pack=touch /tmp/x"}}, ""),
    Case("url-ssh-proxy", {"packs": {"name": "evil", "kind": "git", "url": "ssh://-oProxyCommand=id/x"}}, ""),
    Case("url-scheme", {"packs": {"name": "evil", "kind": "git", "url": "javascript:alert(1)//x"}}, ""),
    Case("url-relative-path", {"packs": {"name": "evil", "kind": "git", "url": "../../outside"}}, ""),
    # refs and versions
    Case(
        "branch-option",
        {"packs": {"name": "evil", "kind": "git", "url": "https://e.com/e.git", "branch": "--upload-pack=x"}},
        "",
    ),
    Case(
        "branch-dotdot",
        {"packs": {"name": "evil", "kind": "git", "url": "https://e.com/e.git", "branch": "a/../b"}},
        "",
    ),
    Case(
        "commit-not-hex",
        {"packs": {"name": "evil", "kind": "git", "url": "https://e.com/e.git", "commit": "--force"}},
        "",
    ),
    Case("version-option", {"packs": {"name": "evil", "kind": "cnr", "id": "evil", "version": "-rf"}}, ""),
    Case("cnr-id-path", {"packs": {"name": "evil", "kind": "cnr", "id": "../../x", "version": "1.0"}}, ""),
    Case("kind-unknown", {"packs": {"name": "evil", "kind": "shell"}}, ""),
    # python packages
    Case(
        "pip-source-index-url",
        {"python": {"name": "evil", "version": "1", "kind": "url", "source": "--index-url=http://127.0.0.1:9/simple"}},
        "",
    ),
    Case(
        "pip-source-extra-option",
        {
            "python": {
                "name": "evil",
                "version": "1",
                "kind": "url",
                "source": "https://e.com/e.whl --extra-index-url http://127.0.0.1:9",
            }
        },
        "",
    ),
    Case(
        "pip-source-scheme",
        {"python": {"name": "evil", "version": "1", "kind": "url", "source": "ftp://e.com/e.whl"}},
        "",
    ),
    Case(
        "pip-local-not-file",
        {"python": {"name": "evil", "version": "1", "kind": "local", "source": "https://e.com/e.whl"}},
        "",
    ),
    Case("pip-name-marker", {"python": {"name": "evil; os_name=='posix'", "version": "1"}}, ""),
    Case("pip-version-option", {"python": {"name": "evil", "version": "--pre"}}, ""),
    # models
    Case("model-climbs-out", {"models": {"folder": "checkpoints", "name": "../../custom_nodes/x.py", "size": 1}}, ""),
    Case("model-folder-dotdot", {"models": {"folder": "..", "name": "x.safetensors", "size": 1}}, ""),
]
CLASSIC = [
    Case(
        "classic-url-ext-helper",
        {"git_custom_nodes": {"ext::sh -c touch% /tmp/pwned": {"hash": "", "disabled": False}}},
        "",
    ),
    Case(
        "classic-url-option", {"git_custom_nodes": {"--upload-pack=touch /tmp/x": {"hash": HEX, "disabled": False}}}, ""
    ),
    Case("classic-url-dotdot", {"git_custom_nodes": {"https://e.com/..": {"hash": HEX, "disabled": False}}}, ""),
    Case("classic-pip-index-url", {"pips": {"--index-url http://127.0.0.1:9/simple": ""}}, ""),
    Case("classic-pip-extra-option", {"pips": {"beta==1.0 --extra-index-url http://127.0.0.1:9": ""}}, ""),
    Case("classic-pip-option-url", {"pips": {"evil": "--index-url=http://127.0.0.1:9/simple"}}, ""),
    Case("classic-cnr-id-path", {"cnr_custom_nodes": {"../../x": "1.0.0"}}, ""),
    Case("classic-file-path", {"file_custom_nodes": [{"filename": "../x.py", "disabled": False}]}, ""),
]


def _store(manager: Manager, name: str, doc: dict[str, Any]) -> Path:
    path = store_of(manager).folder / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _every_door_refuses(manager: Manager, name: str, tmp_path: Path, path: Path) -> None:
    from manager.cli.main import main as cli_main

    sealed = Sealed(tmp_path, Layout.from_root(tmp_path / "ComfyUI"))
    nodes = tmp_path / "ComfyUI" / "custom_nodes"
    assert {"alpha", "bravo"} <= {p.name for p in nodes.iterdir()}
    # the library restore: refused before the tree is read (no probe, no git: no program started)
    sealed.refuses(
        "snapshot_invalid",
        lambda: restore(manager, store_of(manager).load(name), RestoreOptions(), where=name, policy=ALLOW),
        no_spawn=True,
    )
    # the task table at submit time: a coded refusal, never a queued task
    sealed.refuses(
        "snapshot_invalid", lambda: manager.plan("snapshot_restore", name, {}, listen="127.0.0.1"), no_spawn=True
    )
    assert manager.queue.status()["total_count"] == 0

    # the queued runner (a task that reached the queue some other way) checks again before its first change
    def queued() -> None:
        task = manager.queue.enqueue(TaskSpec("snapshot_restore", name, {"policy": ALLOW.to_dict()}))
        assert manager.queue.run_until_idle(timeout=120)
        final = manager.queue.get(task.id)
        assert final.state.value == "failed"
        from manager.errors import SnapshotInvalid

        raise SnapshotInvalid(final.error["message"], hint=final.error["hint"], details=final.error["details"])

    err = sealed.refuses("snapshot_invalid", queued, allowed=LOCKS)
    assert err.details.get("field"), err.details
    # the dry run: the entry is a blocker (or the file does not even load: the same coded refusal)
    before = sealed.snapshot()
    try:
        preview = restore_preview(manager, name, RestoreOptions(), ALLOW)
    except Exception as exc:  # noqa: BLE001 - asserted to be the coded refusal
        assert getattr(exc, "code", "") == "snapshot_invalid", exc
    else:
        assert preview["blockers"] and preview["blockers"][0]["code"] == "snapshot_invalid", preview
        assert preview["plan"]["refused"], preview["plan"]
        assert any(line.startswith("refused: ") for line in preview["plan"]["lines"])
    assert not sealed.snapshot().keys() ^ before.keys()
    # the CLI on a file outside the store: exit 1 with the code, nothing imported, nothing changed
    outside = tmp_path / f"{name}-copy.json"
    outside.write_bytes(path.read_bytes())
    before = sealed.snapshot()
    rc = cli_main(["--comfyui", str(tmp_path / "ComfyUI"), "snapshot", "restore", str(outside)])
    after = sealed.snapshot()
    from support.treesum import changes

    assert rc == 1
    assert not changes(before, after).outside(*LOCKS), changes(before, after).describe()
    assert {"alpha", "bravo"} <= {p.name for p in nodes.iterdir()}


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_one_bad_entry_among_good_ones_is_refused_before_any_change(world, tmp_path, case: Case):
    manager, good, _src, _commits = world
    name = "hostile-" + case.id
    path = _store(manager, name, _ours(good, case.payload))
    _every_door_refuses(manager, name, tmp_path, path)


@pytest.mark.parametrize("case", [c.param() for c in CLASSIC])
def test_classic_snapshot_with_one_bad_entry_is_refused_before_any_change(world, tmp_path, case: Case):
    manager, _good, src, commits = world
    name = "2024-05-01_10-00-00_snapshot"
    urls = {n: (src / n).as_uri() for n in ("alpha", "bravo")}
    path = _store(manager, name, _classic(urls, commits, case.payload))
    _every_door_refuses(manager, name, tmp_path, path)


def test_skipped_entry_is_reported_and_the_cli_exits_non_zero(world, tmp_path, capsys):
    """An editable line of a classic pip freeze is left out: not "nothing to do" with exit 0."""
    from manager.cli.main import main as cli_main

    manager, _good, src, commits = world
    name = "2024-05-02_10-00-00_snapshot"
    doc = {
        "comfyui": None,
        "git_custom_nodes": {(src / n).as_uri(): {"hash": commits[n], "disabled": False} for n in ("alpha", "bravo")},
        "cnr_custom_nodes": {},
        "file_custom_nodes": [],
        "pips": {"-e git+https://example.com/x.git#egg=x": ""},
    }
    _store(manager, name, doc)
    preview = restore_preview(manager, name, RestoreOptions(), ALLOW)
    assert preview["blockers"] == [] and preview["plan"]["empty"]
    assert [s["status"] for s in preview["plan"]["skipped"]] == ["skipped"]
    assert any(line.startswith("skipped: ") and "editable" in line for line in preview["plan"]["lines"])
    result = restore(manager, store_of(manager).load(name), RestoreOptions(), where=name, policy=ALLOW)
    assert result.ok and [p.field for p in result.skipped] == ["pips['-e git+https://example.com/x.git#egg=x']"]
    rc = cli_main(["--comfyui", str(tmp_path / "ComfyUI"), "snapshot", "restore", name])
    out = capsys.readouterr()
    # 3 = partial (docs/cli.md): what could be restored was, the skipped entry is named, cron sees it
    assert rc == 3 and "skipped" in out.err and "partial (exit 3)" in out.err, out
