"""Registry (cnr) packs: real zips served by the fake registry on 127.0.0.1; .tracking, update with
file removal and user files kept, offline installs from cached archives, switch version,
update-all plans (shown, run, stopped by a failure), hostile archives."""

from __future__ import annotations

import pytest

from manager.inventory import read_tracking, scan
from manager.operations import Reporter
from manager.operations.remove import list_trash
from manager.operations.update import Plan, plan_update_all
from support.fake_registry import FakeRegistry, make_node, make_version
from support.gitrepos import make_repo
from support.ops_fixtures import build_zip, catalog_entry, cnr_files, make_env, tree_listing, write_config

NODE = "demo-pack"
VERSIONS = {
    "1.0.0": cnr_files(NODE, "1.0.0", extra={"old.py": "OLD = 1\n"}),
    "1.1.0": cnr_files(NODE, "1.1.0", extra={"new.py": "NEW = 1\n", "web/x.js": "// js\n"}),
}


@pytest.fixture
def registry(http_server, tmp_path):
    base = http_server.url("/cdn")
    versions = [
        make_version(NODE, "pub", v, created_at=f"2025-0{i + 1}-01T00:00:00Z", download_base=base)
        for i, v in enumerate(("1.1.0", "1.0.0"))
    ]
    for v, files in VERSIONS.items():
        data = build_zip(tmp_path / "zips" / f"{v}.zip", files).read_bytes()
        http_server.static(f"/cdn/pub/{NODE}/{v}/node.zip", data, content_type="application/zip")
    evil = make_version("evil-pack", "pub", "1.0.0", created_at="2025-01-01T00:00:00Z", download_base=base)
    http_server.static(
        "/cdn/pub/evil-pack/1.0.0/node.zip",
        build_zip(tmp_path / "zips" / "evil.zip", {"__init__.py": "", "../../escaped.py": "x"}).read_bytes(),
    )
    nodes = [
        make_node(
            NODE,
            name="Demo",
            publisher_id="pub",
            publisher_name="Pub",
            repository="https://github.com/example/demo-pack",
            versions=versions,
        ),
        make_node(
            "evil-pack",
            name="Evil",
            publisher_id="pub",
            publisher_name="Pub",
            repository="https://github.com/example/evil",
            versions=[evil],
        ),
    ]
    fake = FakeRegistry(nodes, {NODE: versions, "evil-pack": [evil]}, prefix="/api").install(http_server)
    return fake


@pytest.fixture
def env(tmp_path, http_server, registry):
    e = make_env(tmp_path, mode="public", registry_url=http_server.url("/api"))
    yield e
    e.close()


def _pack(env, name):
    return next(p for p in scan(env.manager.layout).packs if p.name == name)


def test_install_pinned_version_writes_tracking(env, http_server):
    task = env.run("install", f"{NODE}@1.0.0")
    assert task.state.value == "done", task.error
    dest = env.custom_nodes / NODE
    assert sorted(read_tracking(dest)) == sorted(VERSIONS["1.0.0"])
    pack = _pack(env, NODE)
    assert (pack.kind, pack.cnr_id, pack.version) == ("cnr", NODE, "1.0.0")
    stages = env.stages(task.id)
    for stage in ("resolve", "stage", "download", "extract", "tracking", "rename", "done"):
        assert stage in stages
    assert stages.index("tracking") < stages.index("rename")
    assert http_server.count(f"/cdn/pub/{NODE}/1.0.0/node.zip") == 1


def test_install_bare_id_takes_latest_from_registry(env):
    task = env.run("install", NODE)
    assert task.state.value == "done", task.error
    assert task.result["version"] == "1.1.0" and (env.custom_nodes / NODE / "web" / "x.js").is_file()


def test_update_removes_dropped_files_keeps_user_files_and_trashes_old(env):
    assert env.run("install", f"{NODE}@1.0.0").state.value == "done"
    dest = env.custom_nodes / NODE
    (dest / "user_settings.json").write_text('{"mine": true}')
    task = env.run("update", NODE)
    assert task.state.value == "done", task.error
    assert (task.result["previous"], task.result["version"]) == ("1.0.0", "1.1.0")
    assert not (dest / "old.py").exists() and (dest / "new.py").is_file()
    assert (dest / "user_settings.json").read_text() == '{"mine": true}'
    assert sorted(read_tracking(dest)) == sorted(VERSIONS["1.1.0"])
    trash = list_trash(env.manager.layout)
    assert [(t.name, t.reason, t.version) for t in trash] == [(NODE, "update", "1.0.0")]
    assert env.run("update", NODE).result["changed"] is False


def test_offline_installs_from_cached_archives_only(env, tmp_path, http_server, socket_audit_log):
    assert env.run("install", f"{NODE}@1.0.0").state.value == "done"
    assert env.run("uninstall", NODE).state.value == "done"
    env.close()
    write_config(
        env.root,
        network_mode="offline",
        channel_url=(tmp_path / "channel").as_uri(),
        registry_url=http_server.url("/api"),
    )
    offline = make_env(tmp_path, mode="offline", registry_url=http_server.url("/api"))
    http_server.requests.clear()
    connects = len(socket_audit_log.inet_connects())
    try:
        task = offline.run("install", f"{NODE}@1.1.0")
        assert task.state.value == "failed" and task.error["code"] == "offline_mode"
        assert "cm-cli.py install demo-pack@1.1.0" in task.error["hint"] and "1.1.0.zip" in task.error["hint"]
        task = offline.run("install", f"{NODE}@latest")  # newest cached version
        assert task.state.value == "done", task.error
        assert task.result["version"] == "1.0.0"
        assert http_server.requests == [] and len(socket_audit_log.inet_connects()) == connects
    finally:
        offline.close()


def test_switch_version_parks_old_copy_disabled_and_swaps_back(env, http_server):
    assert env.run("install", f"{NODE}@1.0.0").state.value == "done"
    task = env.run("switch_version", NODE, version="1.1.0")
    assert task.state.value == "done", task.error
    assert (env.custom_nodes / ".disabled" / f"{NODE}@1_0_0" / "old.py").is_file()
    assert _pack(env, NODE).version == "1.1.0"
    downloads = http_server.count(f"/cdn/pub/{NODE}/1.0.0/node.zip")
    task = env.run("switch_version", NODE, version="1.0.0")
    assert task.state.value == "done", task.error
    assert _pack(env, NODE).version == "1.0.0"
    assert (env.custom_nodes / ".disabled" / f"{NODE}@1_1_0" / "new.py").is_file()
    assert http_server.count(f"/cdn/pub/{NODE}/1.0.0/node.zip") == downloads  # swapped, not fetched


def test_switch_a_registry_pack_to_nightly_clones_the_catalog_repo(env, tmp_path):
    """A registry install switched to ``nightly`` becomes a git clone of the catalog's repository
    (this path once died on a local name shadowing the catalog lookup: internal_error)."""
    repo = make_repo(tmp_path / "src" / NODE, name=NODE)
    env2 = make_env(
        tmp_path / "two",
        mode="public",
        packs=[catalog_entry(NODE, repo.url)],
        registry_url=env.manager.config["registry_url"],
    )
    try:
        assert env2.run("install", f"{NODE}@1.0.0").state.value == "done"
        task = env2.run("switch_version", NODE, version="nightly")
        assert task.state.value == "done", task.error
        pack = _pack(env2, NODE)
        assert pack.kind == "git" and pack.commit == repo.commits[-1]
        assert (env2.custom_nodes / ".disabled" / f"{NODE}@1_0_0" / "old.py").is_file()
    finally:
        env2.close()


def test_hostile_registry_zip_is_refused_and_tree_unchanged(env, tmp_path):
    before = tree_listing(env.custom_nodes)
    task = env.run("install", "evil-pack@1.0.0")
    assert task.state.value == "failed" and task.error["code"] == "archive_unsafe"
    assert task.error["details"]["step"] == "extract"
    assert not (tmp_path / "escaped.py").exists() and not (env.root / "escaped.py").exists()
    after = {k: v for k, v in tree_listing(env.custom_nodes).items()}
    assert after == before


def test_update_all_plan_then_run(env, tmp_path):
    repo = make_repo(tmp_path / "src" / "git-pack", name="git-pack")
    env2 = make_env(
        tmp_path / "two",
        mode="public",
        packs=[catalog_entry("git-pack", repo.url)],
        registry_url=env.manager.config["registry_url"],
    )
    try:
        assert env2.run("install", "git-pack").state.value == "done"
        assert env2.run("install", f"{NODE}@1.0.0").state.value == "done"
        new = repo.commit("fourth", {"nodes.py": "VERSION = 4\n"})
        plan = plan_update_all(env2.ops, Reporter())
        shown = {s.pack: (s.kind, s.from_version, s.to_version) for s in plan.steps}
        assert shown == {"git-pack": ("git", repo.commits[-2][:12], new[:12]), NODE: ("cnr", "1.0.0", "1.1.0")}
        assert plan.skipped == ()
        task = env2.run("update_all", "all", plan=plan.to_dict())
        assert task.state.value == "done", task.error
        assert [d["pack"] for d in task.result["done"]] == [s.pack for s in plan.steps]
        step_lines = [e.data["line"] for e in env2.events if e.name == "progress" and e.data["stage"] == "step"]
        assert len(step_lines) == 2 and "->" in step_lines[0]
        assert _pack(env2, "git-pack").commit == new and _pack(env2, NODE).version == "1.1.0"
        assert plan_update_all(env2.ops).steps == ()
        # the state before the update was saved, so a restore can undo it
        from manager.snapshots import store_of

        undo = task.result["auto_snapshot"]
        assert undo and "auto" in undo
        before = {p.name: p for p in store_of(env2.manager).load(undo).packs}
        assert before["git-pack"].commit == repo.commits[-2] and before[NODE].version == "1.0.0"
    finally:
        env2.close()


def test_update_all_stops_at_first_failure_and_says_what_was_done(env, tmp_path, http_server):
    one = make_repo(tmp_path / "src" / "git-one", name="git-one")
    two = make_repo(tmp_path / "src" / "git-two", name="git-two")
    env2 = make_env(
        tmp_path / "two",
        mode="public",
        packs=[catalog_entry("git-one", one.url), catalog_entry("git-two", two.url)],
        registry_url=env.manager.config["registry_url"],
    )
    try:
        for spec in ("git-one", "git-two", f"{NODE}@1.0.0"):
            assert env2.run("install", spec).state.value == "done"
        one.commit("fourth", {"nodes.py": "VERSION = 4\n"})
        two.commit("fourth", {"nodes.py": "VERSION = 4\n"})
        plan = plan_update_all(env2.ops)
        rank = {NODE: 0, "git-one": 1, "git-two": 2}
        ordered = Plan(tuple(sorted(plan.steps, key=lambda s: rank[s.pack])))
        (env2.custom_nodes / "git-one" / "nodes.py").write_text("LOCAL EDIT\n")  # step 2 will fail
        task = env2.run("update_all", "all", plan=ordered.to_dict())
        assert task.state.value == "failed" and task.error["code"] == "update_all_incomplete", task.error
        details = task.error["details"]
        assert [d["pack"] for d in details["done"]] == [NODE]
        assert details["failed"]["pack"] == "git-one"
        assert details["failed"]["error"]["code"] == "git_local_changes"
        assert [d["pack"] for d in details["not_done"]] == ["git-two"]
        assert _pack(env2, NODE).version == "1.1.0" and _pack(env2, "git-two").commit == two.commits[-2]
    finally:
        env2.close()
