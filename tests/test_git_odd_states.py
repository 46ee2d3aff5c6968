"""Git packs in odd states (issue 19, item 6), on real repositories: a detached HEAD, local edits,
a remote moved or gone, a shallow clone. ``update`` and ``switch_version`` decide what they do
(check the default branch out, refuse with a code, fetch deeper) before changing anything
(``manager/operations/git_state.py``), and an update whose dependency step fails puts the pack
back at its previous commit."""

from __future__ import annotations

import pytest

from manager.inventory import scan
from manager.operations.git_state import assess
from support.gitrepos import git, make_repo
from support.ops_fixtures import catalog_entry, make_env, tree_listing

MOVED_URL = "https://example.invalid/new-home/example-pack"


@pytest.fixture
def repo(tmp_path):
    r = make_repo(tmp_path / "src" / "example-pack", name="example-pack")
    # the pack's own pyproject names the repository's new home (a moved repository)
    r.commit(
        "urls",
        {
            "pyproject.toml": '[project]\nname = "example-pack"\nversion = "1.2.0"\n'
            f'[project.urls]\nRepository = "{MOVED_URL}"\n'
        },
    )
    return r


@pytest.fixture
def env(tmp_path, repo):
    e = make_env(tmp_path, packs=[catalog_entry("example-pack", repo.url)])
    assert e.run("install", "example-pack").state.value == "done"
    e.deps.calls.clear()
    yield e
    e.close()


def _pack(env, name="example-pack"):
    return next(p for p in scan(env.manager.layout).packs if p.name == name)


def _files(path):
    return {k: v for k, v in tree_listing(path).items() if not k.startswith(".git/")}


def _head(path):
    return git(path, "rev-parse", "HEAD"), git(path, "rev-parse", "--abbrev-ref", "HEAD")


def test_detached_head_on_the_branch_history_checks_the_default_branch_out(env, repo):
    pack = env.custom_nodes / "example-pack"
    git(pack, "checkout", "-q", "--detach", repo.tags["v1.1.0"])
    decision = assess(env.ops, _pack(env), "update")
    assert decision.action == "checkout_branch" and decision.branch == "main", decision
    assert "detached HEAD" in decision.reason and "main" in decision.reason
    notes, blockers = decision.plan_notes()
    assert blockers == [] and notes[0] == decision.reason
    new = repo.commit("fifth", {"nodes.py": "VERSION = 5\n"})
    task = env.run("update", "example-pack")
    assert task.state.value == "done", task.error
    assert _head(pack) == (new, "main")
    assert task.result["previous"] == repo.tags["v1.1.0"] and task.result["changed"] is True
    assert task.result["notes"][0].startswith("checked out main (was pinned to")


def test_detached_head_off_the_branch_history_is_refused_untouched(env, repo):
    pack = env.custom_nodes / "example-pack"
    git(pack, "checkout", "-q", "--detach", repo.tags["v1.0.0"])
    git(pack, "-c", "user.email=t@x", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "local pin")
    head = _head(pack)
    before = tree_listing(pack)
    task = env.run("update", "example-pack")
    assert task.state.value == "failed" and task.error["code"] == "git_detached_head"
    assert "not in the history of main" in task.error["message"]
    assert task.error["details"]["decision"] == "refuse"
    assert _head(pack) == head and tree_listing(pack) == before


def test_local_edits_are_refused_by_update_and_switch_version(env, repo):
    pack = env.custom_nodes / "example-pack"
    (pack / "nodes.py").write_text("MY PATCH\n")
    decision = assess(env.ops, _pack(env), "switch_version", ref="v1.0.0")
    assert decision.action == "refuse" and decision.error is not None
    assert decision.plan_notes()[1][0]["code"] == "git_local_changes"
    before = tree_listing(pack)
    for kind, params in (("update", {}), ("switch_version", {"version": "v1.0.0"})):
        task = env.run(kind, "example-pack", **params)
        assert task.state.value == "failed" and task.error["code"] == "git_local_changes", (kind, task.error)
        assert task.error["details"]["files"] == ["nodes.py"] and "stash" in task.error["hint"]
    assert tree_listing(pack) == before and (pack / "nodes.py").read_text() == "MY PATCH\n"


def test_remote_deleted_or_moved_away(env, repo, tmp_path):
    pack = env.custom_nodes / "example-pack"
    # the remote's folder is gone (moved to another place on disk)
    git(pack, "remote", "set-url", "origin", (tmp_path / "gone" / "example-pack").as_uri())
    task = env.run("update", "example-pack")
    assert task.state.value == "failed" and task.error["code"] == "git_failed"
    assert task.error["details"]["reason"] == "remote_missing" and "remote set-url" in task.error["hint"]
    # a version known locally needs no remote: the switch goes on
    task = env.run("switch_version", "example-pack", version="v1.1.0")
    assert task.state.value == "done", task.error
    git(pack, "checkout", "-q", "main")
    # no remote at all
    git(pack, "remote", "remove", "origin")
    task = env.run("update", "example-pack")
    assert task.state.value == "failed" and task.error["details"]["reason"] == "no_remote"
    task = env.run("switch_version", "example-pack", version="no-such-tag")
    assert task.state.value == "failed" and task.error["details"]["reason"] == "no_remote"


def test_a_remote_that_differs_from_the_listed_url_is_said(env, repo, tmp_path):
    pack = env.custom_nodes / "example-pack"
    old_home = tmp_path / "old-home" / "example-pack"
    git(tmp_path, "clone", "-q", "--bare", str(repo.path), str(old_home))
    git(pack, "remote", "set-url", "origin", old_home.as_uri())
    decision = assess(env.ops, _pack(env), "update")
    assert decision.action == "proceed"
    assert any("the catalog lists" in n and repo.url in n for n in decision.notes), decision.notes
    task = env.run("update", "example-pack")
    assert task.state.value == "done", task.error
    assert any("moved" in n for n in task.result["notes"])
    # no catalog loaded: the pack's own pyproject.toml names where it lives
    env.manager._catalog_view = None
    git(pack, "remote", "set-url", "origin", repo.url)
    decision = assess(env.ops, _pack(env), "update")
    assert any("pyproject.toml lists" in n and MOVED_URL in n for n in decision.notes), decision.notes


def test_shallow_clone_updates_and_switches_to_an_old_tag(env, repo):
    shallow = env.custom_nodes / "shallow-pack"
    git(env.custom_nodes, "clone", "-q", "--depth", "1", repo.url, "shallow-pack")
    assert (shallow / ".git" / "shallow").exists()
    decision = assess(env.ops, _pack(env, "shallow-pack"), "update")
    assert decision.action == "proceed" and any("shallow clone" in n for n in decision.notes)
    new = repo.commit("seventh", {"nodes.py": "VERSION = 7\n"})
    task = env.run("update", "shallow-pack")
    assert task.state.value == "done", task.error
    assert _head(shallow) == (new, "main")
    assert any("shallow clone" in n for n in task.result["notes"])
    task = env.run("switch_version", "shallow-pack", commit=repo.tags["v1.0.0"])
    assert task.state.value == "done", task.error
    assert git(shallow, "rev-parse", "HEAD") == repo.tags["v1.0.0"]
    assert any("full history" in n for n in task.result["notes"])


def test_update_whose_dependency_step_fails_rolls_the_pack_back(env, repo):
    pack = env.custom_nodes / "example-pack"
    before_head = _head(pack)
    before = _files(pack)
    repo.commit("needs more", {"nodes.py": "VERSION = 8\n", "requirements.txt": "packaging\nmore\n"})
    env.deps.fail = True
    task = env.run("update", "example-pack")
    assert task.state.value == "failed" and task.error["code"] == "deps_install_failed", task.error
    assert task.error["details"]["rolled_back_to"] == before_head[0]
    assert "put back at its previous commit" in task.error["hint"]
    assert _head(pack) == before_head
    assert _files(pack) == before
    assert git(pack, "status", "--porcelain", "--untracked-files=no") == ""


def test_rollback_of_a_pinned_pack_returns_to_the_pin(env, repo):
    pack = env.custom_nodes / "example-pack"
    git(pack, "checkout", "-q", "--detach", repo.tags["v1.1.0"])
    main_before = git(pack, "rev-parse", "refs/heads/main")
    repo.commit("needs more", {"nodes.py": "VERSION = 9\n", "requirements.txt": "packaging\nmore\n"})
    env.deps.fail = True
    task = env.run("update", "example-pack")
    assert task.state.value == "failed" and task.error["details"]["rolled_back_to"] == repo.tags["v1.1.0"]
    assert _head(pack) == (repo.tags["v1.1.0"], "HEAD")  # detached again, at the pin
    assert git(pack, "rev-parse", "refs/heads/main") == main_before
    assert (pack / "nodes.py").read_text() == "VERSION = 2\n"
