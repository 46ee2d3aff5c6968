"""Git updates (fast-forward; local changes, divergence and pinned commits refused), fix, and
switch version between commits, tags and the branch, on real repositories."""

from __future__ import annotations

import pytest

from manager.inventory import scan
from support.gitrepos import git, make_repo
from support.ops_fixtures import catalog_entry, make_env, tree_listing


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "src" / "example-pack", name="example-pack")


@pytest.fixture
def env(tmp_path, repo):
    e = make_env(tmp_path, packs=[catalog_entry("example-pack", repo.url)])
    assert e.run("install", "example-pack", ref="v1.1.0", name="pinned").state.value == "done"
    assert e.run("install", "example-pack").state.value == "done"
    e.deps.calls.clear()
    yield e
    e.close()


def _commit(env, name):
    return next(p for p in scan(env.manager.layout).packs if p.name == name).commit


def test_update_fast_forwards_and_reruns_deps_when_requirements_change(env, repo):
    new = repo.commit("fourth", {"nodes.py": "VERSION = 4\n", "requirements.txt": "packaging\nmore\n"})
    task = env.run("update", "example-pack")
    assert task.state.value == "done", task.error
    assert (task.result["previous"], task.result["commit"], task.result["changed"]) == (repo.commits[-2], new, True)
    assert _commit(env, "example-pack") == new and task.restart_required
    assert [name for _, name in env.deps.calls] == ["example-pack"]
    assert "fetch" in env.stages(task.id)
    task = env.run("update", "example-pack")
    assert task.result["changed"] is False and not task.restart_required


def test_update_without_requirement_change_skips_deps(env, repo):
    repo.commit("fourth", {"nodes.py": "VERSION = 4\n"})
    assert env.run("update", "example-pack").state.value == "done"
    assert env.deps.calls == []


def test_update_refuses_local_changes_and_divergence_and_pinned(env, repo):
    pack = env.custom_nodes / "example-pack"
    repo.commit("fourth", {"nodes.py": "VERSION = 4\n"})
    (pack / "nodes.py").write_text("MY EDIT\n")
    before = tree_listing(pack)
    task = env.run("update", "example-pack")
    assert task.state.value == "failed" and task.error["code"] == "git_local_changes"
    assert task.error["details"]["step"] == "fetch"
    assert tree_listing(pack) == before
    git(pack, "checkout", "--", "nodes.py")
    git(pack, "-c", "user.email=t@x", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "local")
    task = env.run("update", "example-pack")
    assert task.state.value == "failed" and task.error["code"] == "git_diverged"
    # a pin on the default branch's history is updated by checking that branch out (issue 19 item 6;
    # a pin off that history is still refused: tests/test_git_odd_states.py)
    task = env.run("update", "pinned")
    assert task.state.value == "done", task.error
    assert task.result["git"]["action"] == "checkout_branch"


def test_fix_reruns_dependency_installation_in_place(env, repo):
    (env.custom_nodes / "example-pack" / "install.py").write_text("print('fixing')\n")
    task = env.run("fix", "example-pack")
    assert task.state.value == "done", task.error
    assert env.deps.calls == [(str(env.custom_nodes / "example-pack"), "example-pack")]
    assert "install-script" in env.stages(task.id) and task.restart_required


def test_switch_version_between_commit_tag_and_branch(env, repo):
    task = env.run("switch_version", "example-pack", commit=repo.commits[0])
    assert task.state.value == "done", task.error
    assert _commit(env, "example-pack") == repo.commits[0]
    task = env.run("switch_version", "example-pack", version="v1.1.0")  # a tag of the checkout
    assert task.state.value == "done", task.error
    assert _commit(env, "example-pack") == repo.tags["v1.1.0"]
    # from a detached HEAD, back to the branch by name
    task = env.run("switch_version", "pinned", version="main")
    assert task.state.value == "done", task.error
    assert _commit(env, "pinned") == repo.commits[-1]
    task = env.run("switch_version", "pinned", version="v1.0.0")
    assert task.state.value == "done", task.error
    assert _commit(env, "pinned") == repo.tags["v1.0.0"]


def test_update_of_unknown_pack_kind_is_refused(env):
    (env.custom_nodes / "hand_made.py").write_text("X = 1\n")
    task = env.run("update", "hand_made.py")
    assert task.state.value == "failed" and task.error["code"] == "install_unsupported"
    assert env.run("update", "nothing-here").error["code"] == "not_found"


def test_reinstall_fetches_again_and_trashes_old_copy(env, repo):
    (env.custom_nodes / "example-pack" / "nodes.py").write_text("BROKEN\n")
    task = env.run("reinstall", "example-pack")
    assert task.state.value == "done", task.error
    assert (env.custom_nodes / "example-pack" / "nodes.py").read_text() == "VERSION = 3\n"
    trash = list((env.custom_nodes / ".cm-trash.disabled").iterdir())
    assert len(trash) == 1 and (trash[0] / "example-pack" / "nodes.py").read_text() == "BROKEN\n"
