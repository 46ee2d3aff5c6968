"""Hostile archives and clones: native libraries, pickles, ELF executables, and packs on a
known-compromise list (by id, repository URL or file hash).

Real parts: real zips served by the fake registry on 127.0.0.1, real local archives and git
repositories, the real install path (staging, inspection, rename). Each case ends in a coded
refusal and an unchanged tree, or, where ``security_level`` allows, an install whose result
lists the findings.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest

from manager.compromised import parse_channel_list, scan_installed, startup_alerts
from manager.errors import CompromiseListInvalid
from manager.inspect_files import decide_findings, inspect_tree
from manager.records import PolicyDecision
from support import treesum
from support.fake_registry import FakeRegistry, make_node, make_version
from support.gitrepos import git, make_repo
from support.ops_fixtures import build_zip, catalog_entry, cnr_files, make_env

pytestmark = pytest.mark.hostile("archive")

ALLOW_LOCAL = PolicyDecision.allow("install", "local_path", "test").to_dict()
CREATED = "2025-01-01T00:00:00Z"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 120
PICKLE = pickle.dumps({"weights": [1, 2, 3]}, protocol=4)


def torch_style_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", PICKLE)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


EVIL = {
    "native": {"lib/_fast.cpython-311-x86_64-linux-gnu.so": ELF},
    "pickle": {"weights/model.pt": PICKLE},
    "zip-pickle": {"weights/model.ckpt": torch_style_zip()},
    "elf": {"bin/helper": ELF},
}


def _registry(http_server, tmp_path: Path, packs: dict[str, dict[str, str | bytes]]) -> None:
    base = http_server.url("/cdn")
    nodes, versions = [], {}
    for node_id, extra in packs.items():
        v = make_version(node_id, "pub", "1.0.0", created_at=CREATED, download_base=base)
        files: dict[str, str | bytes] = {**cnr_files(node_id, "1.0.0"), **extra}
        data = build_zip(tmp_path / "zips" / f"{node_id}.zip", files).read_bytes()
        http_server.static(f"/cdn/pub/{node_id}/1.0.0/node.zip", data, content_type="application/zip")
        repo = f"https://github.com/example/{node_id}"
        nodes.append(make_node(node_id, name=node_id, publisher_id="pub", publisher_name="P", repository=repo))
        nodes[-1]["latest_version"] = v
        versions[node_id] = [v]
    FakeRegistry(nodes, versions, prefix="/api").install(http_server)


def _env(tmp_path: Path, http_server, level: str = "normal", **kw):
    return make_env(tmp_path, mode="public", registry_url=http_server.url("/api"), security_level=level, **kw)


def _tree(env) -> dict[str, str]:
    return treesum.listing(env.root)


def _unchanged(env, before: dict[str, str]) -> None:
    diff = treesum.changes(before, _tree(env)).outside("user/__manager")  # locks and caches aside
    assert not diff, diff.describe()


def _local_archive(
    tmp_path: Path, name: str, files: dict[str, str | bytes], *, exec_names: tuple[str, ...] = ()
) -> Path:
    path = tmp_path / "archives" / f"{name}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for rel, data in {"__init__.py": "NODE_CLASS_MAPPINGS = {}\n", **files}.items():
            info = zipfile.ZipInfo(f"{name}/{rel}")
            info.create_system = 3
            info.external_attr = (0o100755 if rel in exec_names else 0o100644) << 16
            zf.writestr(info, data)
    return path


# -- the inspector on its own -------------------------------------------------------------------
def test_inspector_lists_what_it_should_and_nothing_else(tmp_path):
    root = tmp_path / "pack"
    files: dict[str, bytes] = {
        "a.so.1": ELF,
        "b.dll": b"MZ" + b"\x00" * 200,
        "c.pyd": b"",
        "d.dylib": b"\xcf\xfa\xed\xfe" + b"\x00" * 60,
        "e.pkl": b"anything",
        "f.bin": PICKLE,
        "g.bin": b"\x00\x01 plain tensor bytes",  # a .bin that is no pickle
        "h.pth": torch_style_zip(),
        "tool": ELF,
        "run.sh": b"#!/bin/sh\necho hi\n",
        "data.txt": b"text",
        "nodes.py": b"X = 1\n",
        ".git/objects/xx": ELF,  # git's own folder is never inspected
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for rel in ("run.sh", "data.txt", "nodes.py"):
        os.chmod(root / rel, 0o755)
    found = {f.path: f.kind for f in inspect_tree(root).findings}
    assert found == {
        "a.so.1": "native_library",
        "b.dll": "native_library",
        "c.pyd": "native_library",
        "d.dylib": "native_library",
        "e.pkl": "pickle",
        "f.bin": "pickle",
        "h.pth": "pickle",
        "tool": "executable",
        "data.txt": "exec_bit",
    }
    findings = inspect_tree(root).findings
    assert decide_findings(findings, "normal", outside_catalog=False) == []
    assert {f.kind for f in decide_findings(findings, "normal", outside_catalog=True)} == {
        "native_library",
        "pickle",
        "executable",
    }
    assert decide_findings(findings, "normal-", outside_catalog=True) == []
    assert decide_findings(findings, "weak", outside_catalog=True) == []
    assert len(decide_findings(findings, "strong", outside_catalog=False)) == 8


# -- registry archives ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(EVIL))
def test_registry_pack_findings_are_reported_at_normal(case, tmp_path, http_server):
    _registry(http_server, tmp_path, {"bin-pack": EVIL[case]})
    env = _env(tmp_path, http_server)
    try:
        task = env.run("install", "bin-pack@1.0.0")
        assert task.state.value == "done", task.error
        (rel,) = EVIL[case]
        assert [(f["path"], f["kind"]) for f in task.result["findings"]] == [
            (rel, "native_library" if case == "native" else "executable" if case == "elf" else "pickle")
        ]
    finally:
        env.close()


@pytest.mark.parametrize("case", sorted(EVIL))
def test_registry_pack_findings_are_refused_at_strong(case, tmp_path, http_server):
    _registry(http_server, tmp_path, {"bin-pack": EVIL[case]})
    env = _env(tmp_path, http_server, level="strong")
    try:
        before = _tree(env)
        task = env.run("install", "bin-pack@1.0.0")
        assert task.state.value == "failed"
        assert task.error["code"] == "archive_content_refused", task.error
        assert task.error["details"]["findings"][0]["path"] == next(iter(EVIL[case]))
        assert "security_level" in task.error["hint"]
        _unchanged(env, before)
    finally:
        env.close()


# -- archives and clones from outside the catalog -------------------------------------------------
@pytest.mark.parametrize("case", sorted(EVIL))
def test_local_archive_with_binaries_is_refused_at_normal(case, tmp_path, http_server):
    archive = _local_archive(tmp_path, "outside-pack", EVIL[case], exec_names=("bin/helper",))
    env = _env(tmp_path, http_server)
    try:
        before = _tree(env)
        task = env.run("install", str(archive), policy=ALLOW_LOCAL)
        assert task.state.value == "failed"
        err = task.error
        assert err["code"] == "archive_content_refused" and err["details"]["outside_catalog"] is True
        assert "normal-" in err["hint"] and str(env.manager.config.path) in err["hint"]
        _unchanged(env, before)
        assert not (env.custom_nodes / ".cm-staging.disabled").exists()
    finally:
        env.close()


def test_local_archive_with_binaries_is_reported_at_normal_minus(tmp_path, http_server):
    files = {**EVIL["native"], **EVIL["pickle"], "bin/helper": ELF, "README.md": "x"}
    archive = _local_archive(tmp_path, "outside-pack", files, exec_names=("bin/helper", "README.md"))
    env = _env(tmp_path, http_server, level="normal-")
    try:
        task = env.run("install", str(archive), policy=ALLOW_LOCAL)
        assert task.state.value == "done", task.error
        kinds = {f["path"]: f["kind"] for f in task.result["findings"]}
        assert kinds == {
            "lib/_fast.cpython-311-x86_64-linux-gnu.so": "native_library",
            "weights/model.pt": "pickle",
            "bin/helper": "executable",
            "README.md": "exec_bit",
        }
    finally:
        env.close()


def test_git_clone_with_a_native_library_is_refused_before_its_scripts_run(tmp_path, http_server):
    repo = make_repo(tmp_path / "src" / "clone-pack")
    (repo.path / "install.py").write_text("open('SCRIPT_RAN', 'w').write('x')\n")
    (repo.path / "_ext.so").write_bytes(ELF)
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-q", "-m", "binary")
    env = _env(tmp_path, http_server)
    try:
        before = _tree(env)
        task = env.run("install", str(repo.path), policy=ALLOW_LOCAL)
        assert task.state.value == "failed"
        assert task.error["code"] == "archive_content_refused", task.error
        assert [f["path"] for f in task.error["details"]["findings"]] == ["_ext.so"]
        assert "install-script" not in env.stages(task.id)
        _unchanged(env, before)
    finally:
        env.close()


# -- the known-compromise list --------------------------------------------------------------------
def test_local_list_blocks_a_pack_id_before_the_download(tmp_path, http_server):
    _registry(http_server, tmp_path, {"bad-pack": {}})
    env = _env(tmp_path, http_server)
    try:
        listing = env.root / "user" / "__manager" / "compromised.list"
        listing.write_text("# incidents\nid:bad-pack  # stole tokens in 1.0.0\n")
        before = _tree(env)
        task = env.run("install", "bad-pack@1.0.0")
        assert task.state.value == "failed"
        err = task.error
        assert err["code"] == "pack_compromised" and "stole tokens" in err["message"]
        assert err["details"]["list"] == str(listing) and err["details"]["entry"]["line"] == 2
        assert http_server.count("/cdn/pub/bad-pack/1.0.0/node.zip") == 0
        _unchanged(env, before)
    finally:
        env.close()


def test_channel_list_blocks_a_repository_url(tmp_path, http_server):
    repo = make_repo(tmp_path / "src" / "listed-pack")
    env = _env(tmp_path, http_server, packs=[catalog_entry("listed-pack", repo.url)])
    try:
        channel = tmp_path / "channel"
        (channel / "compromised-list.json").write_text(
            json.dumps({"version": 1, "entries": [{"repository": repo.url + ".git/", "reason": "taken over"}]})
        )
        before = _tree(env)
        task = env.run("install", "listed-pack")
        assert task.state.value == "failed"
        assert task.error["code"] == "pack_compromised", task.error
        assert task.error["details"]["list"].endswith("compromised-list.json")
        _unchanged(env, before)
    finally:
        env.close()


def test_listed_file_hash_is_refused_after_staging(tmp_path, http_server):
    import hashlib

    payload = b"print('exfiltrate')\n"
    _registry(http_server, tmp_path, {"hash-pack": {"evil.py": payload}})
    env = _env(tmp_path, http_server)
    try:
        (env.root / "user" / "__manager" / "compromised.list").write_text(
            f"sha256:{hashlib.sha256(payload).hexdigest()} # known dropper\n"
        )
        before = _tree(env)
        task = env.run("install", "hash-pack@1.0.0")
        assert task.state.value == "failed"
        assert task.error["code"] == "pack_compromised" and "evil.py" in task.error["message"]
        _unchanged(env, before)
    finally:
        env.close()


def test_broken_local_list_fails_closed(tmp_path, http_server):
    _registry(http_server, tmp_path, {"fine-pack": {}})
    env = _env(tmp_path, http_server)
    try:
        (env.root / "user" / "__manager" / "compromised.list").write_text("sha256:nothex\n")
        before = _tree(env)
        task = env.run("install", "fine-pack@1.0.0")
        assert task.error["code"] == "compromise_list_invalid" and ":1" in task.error["message"]
        _unchanged(env, before)
    finally:
        env.close()


def test_bad_channel_list_is_a_coded_error_and_ignored_for_installs(tmp_path, http_server):
    with pytest.raises(CompromiseListInvalid):
        parse_channel_list(b'{"entries": [{"reason": "no key"}]}', "chan")
    _registry(http_server, tmp_path, {"fine-pack": {}})
    env = _env(tmp_path, http_server)
    try:
        (tmp_path / "channel" / "compromised-list.json").write_text("{not json")
        assert env.run("install", "fine-pack@1.0.0").state.value == "done"
    finally:
        env.close()


def test_installed_pack_on_the_list_is_warned_about_never_removed(tmp_path, http_server):
    _registry(http_server, tmp_path, {"later-bad": {}})
    env = _env(tmp_path, http_server)
    try:
        assert env.run("install", "later-bad@1.0.0").state.value == "done"
        (env.root / "user" / "__manager" / "compromised.list").write_text("id:later-bad # revoked\n")
        before = _tree(env)
        notices = scan_installed(env.manager)
        assert [(n.level, n.code, n.details["pack"]) for n in notices] == [("warning", "pack_compromised", "later-bad")]
        assert "never removes" in notices[0].hint
        alerts = startup_alerts(env.manager)  # what /manager/startup_alerts adds
        assert [a["level"] for a in alerts] == ["warning"] and "later-bad" in alerts[0]["message"]
        assert (env.custom_nodes / "later-bad" / "__init__.py").is_file()
        _unchanged(env, before)
    finally:
        env.close()
