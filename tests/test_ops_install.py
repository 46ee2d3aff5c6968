"""Install through the task queue from real sources: file:// repos from the catalog, raw git URLs
(git daemon, smart HTTP), local folders, zips and .py files, with install scripts and failures."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from manager.inventory import scan
from manager.records import PolicyDecision
from support.gitrepos import GitDaemon, git, make_repo, serve_smart_http
from support.ops_fixtures import DepsRecorder, build_zip, catalog_entry, make_env, tree_listing, write_config

ALLOW = PolicyDecision.allow("install", "git_url", "test").to_dict()
ALLOW_LOCAL = PolicyDecision.allow("install", "local_path", "test").to_dict()


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "src" / "example-pack", name="example-pack")


@pytest.fixture
def env(tmp_path, repo):
    e = make_env(tmp_path, packs=[catalog_entry("example-pack", repo.url)])
    yield e
    e.close()


def _installed(env) -> dict[str, object]:
    return {p.name: p for p in scan(env.manager.layout).packs}


def test_install_catalog_git_pack_offline_from_file_repo(env, repo, socket_audit_log):
    task = env.run("install", "example-pack")
    assert task.state.value == "done", task.error
    dest = env.custom_nodes / "example-pack"
    assert (dest / "nodes.py").read_text() == "VERSION = 3\n"
    assert task.result["commit"] == repo.commits[-1] and task.result["source"] == "git"
    assert task.restart_required
    stages = env.stages(task.id)
    assert stages[:3] == ["resolve", "stage", "clone"]
    assert stages.index("deps") < stages.index("rename") < stages.index("done")
    # the deps step ran on the staged folder, before the rename
    ((staged_dir, name),) = env.deps.calls
    assert ".cm-staging.disabled" in staged_dir and name == "example-pack"
    assert (dest / ".deps-ran").read_text() == staged_dir
    assert not (env.custom_nodes / ".cm-staging.disabled").exists()
    pack = _installed(env)["example-pack"]
    assert pack.kind == "git" and pack.commit == repo.commits[-1]
    assert socket_audit_log.inet_connects() == []


def test_install_tag_branch_and_commit(env, repo):
    for ref, name, commit in (
        ("v1.0.0", "at-tag", repo.tags["v1.0.0"]),
        ("dev", "at-dev", repo.dev_commit),
        (repo.commits[1], "at-commit", repo.commits[1]),
    ):
        task = env.run("install", "example-pack", ref=ref, name=name)
        assert task.state.value == "done", task.error
        assert _installed(env)[name].commit == commit


def test_second_install_refused_pack_exists(env):
    assert env.run("install", "example-pack").state.value == "done"
    before = tree_listing(env.custom_nodes)
    task = env.run("install", "example-pack")
    assert task.state.value == "failed" and task.error["code"] == "pack_exists"
    assert tree_listing(env.custom_nodes) == before


def test_install_script_runs_in_staging_with_host_python_and_streams_output(tmp_path, repo):
    repo.commit(
        "add install.py",
        {"install.py": "import os, sys\nprint('cwd=' + os.getcwd())\nprint('exe=' + sys.executable)\n"},
    )
    env = make_env(tmp_path, packs=[catalog_entry("example-pack", repo.url)])
    try:
        task = env.run("install", "example-pack")
        assert task.state.value == "done", task.error
        lines = [
            e.data["line"]
            for e in env.events
            if e.name == "progress" and e.data["stage"] == "install-script" and e.data["line"]
        ]
        cwd = next(line for line in lines if line.startswith("cwd="))[4:]
        assert ".cm-staging.disabled" in cwd and cwd.endswith("example-pack")
        assert any(line.startswith("exe=") for line in lines)
    finally:
        env.close()


def test_failing_install_script_leaves_tree_unchanged_with_step_and_tail(tmp_path, repo):
    repo.commit("bad install.py", {"install.py": "print('preparing')\nraise SystemExit('no wheel for torch')\n"})
    env = make_env(tmp_path, packs=[catalog_entry("example-pack", repo.url)])
    try:
        before = tree_listing(env.custom_nodes)
        task = env.run("install", "example-pack")
        assert task.state.value == "failed"
        err = task.error
        assert err["code"] == "install_script_failed"
        assert err["details"]["step"] == "install-script"
        assert "no wheel for torch" in " ".join(err["details"]["output_tail"])
        assert "install-script failed" in err["message"]
        assert not (env.custom_nodes / "example-pack").exists()
        assert not (env.custom_nodes / ".cm-staging.disabled").exists()
        assert tree_listing(env.custom_nodes) == before
        assert not task.restart_required
    finally:
        env.close()


def test_failing_deps_step_leaves_tree_unchanged(tmp_path, repo):
    env = make_env(tmp_path, packs=[catalog_entry("example-pack", repo.url)], deps=DepsRecorder(fail=True))
    try:
        task = env.run("install", "example-pack")
        assert task.state.value == "failed"
        assert task.error["code"] == "deps_install_failed" and task.error["details"]["step"] == "deps"
        assert task.error["details"]["output_tail"] == ["ERROR: boom"]  # the installer's own tail is kept
        assert "deps failed" in task.error["message"]
        assert [p.name for p in scan(env.manager.layout).packs] == []
        assert not (env.custom_nodes / ".cm-staging.disabled").exists()
    finally:
        env.close()


def test_raw_git_url_needs_policy_decision(env, repo, tmp_path):
    task = env.run("install", repo.url)
    assert task.state.value == "failed" and task.error["code"] == "policy_denied"
    denied = PolicyDecision(
        False, "install", "git_url", "security_level", "security_level is normal", "set security_level = weak"
    ).to_dict()
    task = env.run("install", repo.url, policy=denied)
    assert task.error["code"] == "policy_denied" and task.error["hint"] == "set security_level = weak"
    assert not (env.custom_nodes / "example-pack").exists()
    task = env.run("install", repo.url, policy=ALLOW)
    assert task.state.value == "done", task.error
    assert (env.custom_nodes / "example-pack" / ".git").is_dir()


def test_offline_refuses_remote_git_url_before_any_socket(env, socket_audit_log):
    task = env.run("install", "https://github.com/example/some-pack.git", policy=ALLOW)
    assert task.state.value == "failed" and task.error["code"] == "offline_mode"
    assert "file://" in task.error["hint"] and task.error["details"]["step"] == "clone"
    assert socket_audit_log.inet_connects() == []
    assert not (env.custom_nodes / "some-pack").exists()


def test_install_through_git_daemon_and_smart_http(tmp_path, repo, http_server, socket_audit_log):
    bare = tmp_path / "served"
    bare.mkdir()
    git(bare, "clone", "-q", "--bare", str(repo.path), str(bare / "example-pack.git"))
    env = make_env(tmp_path, mode="public")
    try:
        with GitDaemon(bare) as daemon:
            task = env.run("install", daemon.url("example-pack.git"), policy=ALLOW, name="via-daemon")
            assert task.state.value == "done", task.error
        url = serve_smart_http(http_server, bare, "example-pack.git")
        task = env.run("install", url, policy=ALLOW, name="via-http")
        assert task.state.value == "done", task.error
        packs = _installed(env)
        assert packs["via-daemon"].commit == packs["via-http"].commit == repo.commits[-1]
        hosts = {c[0] for c in socket_audit_log.inet_connects()} if socket_audit_log.inet_connects() else set()
        assert all(h in ("127.0.0.1", "::1") for h in hosts)
    finally:
        env.close()


def test_local_folder_zip_and_py_file_need_local_policy(env, tmp_path):
    folder = tmp_path / "plain-pack"
    folder.mkdir()
    (folder / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    archive = build_zip(
        tmp_path / "zipped-pack.zip", {"__init__.py": "X = 1\n", "sub/a.py": "A = 1\n"}, top="zipped-pack-main"
    )
    single = tmp_path / "single_node.py"
    single.write_text("NODE_CLASS_MAPPINGS = {}\n")
    assert env.run("install", str(folder)).error["code"] == "policy_denied"
    for spec, name in ((str(folder), "plain-pack"), (archive.as_uri(), "zipped-pack"), (str(single), "single_node.py")):
        task = env.run("install", spec, policy=ALLOW_LOCAL)
        assert task.state.value == "done", task.error
        assert (env.custom_nodes / name).exists()
    assert (env.custom_nodes / "zipped-pack" / "sub" / "a.py").read_text() == "A = 1\n"
    kinds = {p.name: p.kind for p in scan(env.manager.layout).packs}
    assert kinds == {"plain-pack": "folder", "zipped-pack": "folder", "single_node.py": "file"}


def test_catalog_copy_and_unzip_packs_over_loopback_http(tmp_path, http_server, socket_audit_log):
    http_server.static("/raw/my_node.py", b"NODE_CLASS_MAPPINGS = {'MyNode': object}\n")
    zip_path = build_zip(tmp_path / "z.zip", {"__init__.py": "Z = 1\n"}, top="Zipped")
    http_server.static("/dl/zipped.zip", zip_path.read_bytes())
    packs = [
        catalog_entry("my-copy", http_server.url("/raw/my_node.py"), install_type="copy"),
        catalog_entry("my-unzip", http_server.url("/dl/zipped.zip"), install_type="unzip"),
    ]
    env = make_env(tmp_path, mode="public", packs=packs)
    try:
        assert env.run("install", "my-copy").state.value == "done"
        assert (env.custom_nodes / "my_node.py").read_text().startswith("NODE_CLASS_MAPPINGS")
        task = env.run("install", "my-unzip")
        assert task.state.value == "done", task.error
        assert (env.custom_nodes / "my-unzip" / "__init__.py").read_text() == "Z = 1\n"
        assert "download" in env.stages(task.id) and "extract" in env.stages(task.id)
    finally:
        env.close()
    # a fresh tree offline: nothing cached, refused before any socket with what to pre-fetch
    fresh = make_env(tmp_path / "fresh", mode="offline", packs=packs)
    try:
        task = fresh.run("install", "my-unzip")
        assert task.state.value == "failed" and task.error["code"] == "offline_mode"
        assert "cm-cli.py install" in task.error["hint"] and task.error["details"]["step"] == "download"
    finally:
        fresh.close()
    # the same tree offline: the archive and the file come from the cache
    assert env.run("uninstall", "my-unzip").state.value == "done"
    assert env.run("uninstall", "my_node.py").state.value == "done"
    http_server.requests.clear()
    connects = len(socket_audit_log.inet_connects())
    write_config(env.root, network_mode="offline", channel_url=(tmp_path / "channel").as_uri())
    offline = make_env(tmp_path, mode="offline", packs=packs)
    try:
        assert offline.run("install", "my-unzip").state.value == "done"
        assert offline.run("install", "my-copy").state.value == "done"
        assert (offline.custom_nodes / "my-unzip" / "__init__.py").is_file()
        assert (offline.custom_nodes / "my_node.py").is_file()
        assert http_server.requests == [] and len(socket_audit_log.inet_connects()) == connects
    finally:
        offline.close()


@pytest.mark.parametrize(
    "target, params",
    [
        ("../x", {}),
        ("", {}),
        (".disabled", {}),
        ("..", {}),
        ("x/../../y", {}),
        ("example-pack", {"name": "../escape"}),
        ("example-pack", {"name": ".cm-staging.disabled"}),
        ("example-pack", {"name": "__pycache__"}),
        ("example-pack", {"name": "evil.disabled"}),
        ("example-pack", {"name": "a/b"}),
    ],
)
def test_hostile_names_are_refused_and_write_nothing(env, tmp_path, target, params):
    before = tree_listing(tmp_path)
    if not target:
        from manager.errors import InvalidName
        from manager.operations import Reporter
        from manager.operations.install import install

        with pytest.raises(InvalidName):
            install(env.ops, target, Reporter())
    else:
        task = env.run("install", target, policy=ALLOW, **params)
        assert task.state.value == "failed"
        assert task.error["code"] == "invalid_name", task.error
    after = tree_listing(tmp_path)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    # only the Manager's own data (lock file, channel cache) may appear; never a pack or anything outside
    assert all(k.startswith("ComfyUI/user/__manager") for k in changed), changed


def test_leftover_staging_from_a_killed_process_is_cleaned(env):
    staging = env.custom_nodes / ".cm-staging.disabled"
    (staging / "example-pack-deadbeef").mkdir(parents=True)
    (staging / "example-pack-deadbeef" / "__init__.py").write_text("half")
    assert [p.name for p in scan(env.manager.layout).packs] == []
    assert env.run("install", "example-pack").state.value == "done"
    assert not staging.exists()


def test_relative_path_is_not_a_source(env):
    task = env.run("install", "./some/where", policy=ALLOW_LOCAL)
    assert task.state.value == "failed" and task.error["code"] == "invalid_name"


def test_local_bare_repo_path(env, repo, tmp_path):
    bare = tmp_path / "bare" / "example-pack.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(bare)], check=True)
    task = env.run("install", str(bare), policy=ALLOW_LOCAL)
    assert task.state.value == "done", task.error
    assert os.path.isdir(env.custom_nodes / "example-pack" / ".git")


def test_docs_cover_every_kind_and_stage():
    from manager.kinds import KINDS
    from manager.operations.reporting import STAGES

    doc = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text(encoding="utf-8")
    verbs = ("install", "reinstall", "uninstall", "update", "fix", "disable", "enable", "switch-version", "trash")
    pack_kinds = [k.name for k in KINDS if k.cli.split()[:1] and k.cli.split()[0] in verbs]
    for name in (*pack_kinds, *STAGES):
        assert f"`{name}`" in doc, name


def test_a_catalog_pip_list_is_installed_like_requirements(tmp_path, repo):
    """The catalog entry's plain ``pip`` specs go through the pack's dependency step (same policy
    as requirements.txt), before the rename; a URL spec is refused with the reason (issue 19)."""
    pip = ["numpy>=1.0", "pillow", "git+https://example.invalid/x.git"]
    e = make_env(tmp_path, packs=[{**catalog_entry("example-pack", repo.url), "pip": pip}])
    try:
        e.manager.catalog_view()  # the catalog a door has loaded when it queues an install
        task = e.run("install", "example-pack")
        assert task.state.value == "done", task.error
        dirs = [Path(d).name for d, _ in e.deps.calls]
        assert dirs == ["example-pack", ".catalog-pip"], e.deps.calls
        assert task.result["catalog_pip"]["packages"] == ["numpy>=1.0", "pillow"]
        assert task.result["catalog_pip"]["result"] == {"requirements": ["numpy>=1.0", "pillow"]}
        (refused,) = task.result["pip_not_installed"]
        assert refused["packages"] == ["git+https://example.invalid/x.git"] and "allow_pip_install" in refused["why"]
        assert not (e.custom_nodes / "example-pack" / ".catalog-pip").exists()
    finally:
        e.close()


def test_a_failing_catalog_pip_list_leaves_the_tree_as_it_was(tmp_path, repo):
    e = make_env(tmp_path, packs=[{**catalog_entry("example-pack", repo.url), "pip": ["pillow"]}])
    try:
        e.manager.catalog_view()
        e.deps.fail = True
        task = e.run("install", "example-pack")
        assert task.state.value == "failed" and task.error["code"] == "deps_install_failed"
        assert not (e.custom_nodes / "example-pack").exists()
        e.deps.fail = False
        task = e.run("install", "example-pack", skip_deps=True)
        assert task.state.value == "done" and e.deps.calls[-1:] != [(None, ".catalog-pip")]
        assert "skip_deps" in task.result["pip_not_installed"][0]["why"]
    finally:
        e.close()
