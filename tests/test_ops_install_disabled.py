"""Installing a pack that is already installed but disabled enables it, in the core, so every
door (v1 queue, CLI, panel, classic, /v2) gets it: never a second copy (issue 19, item 7)."""

from __future__ import annotations

import pytest

from manager.inventory import scan
from support.gitrepos import make_repo
from support.ops_fixtures import catalog_entry, make_env


@pytest.fixture
def env(tmp_path):
    repo = make_repo(tmp_path / "src" / "example-pack", name="example-pack")
    e = make_env(tmp_path, packs=[catalog_entry("example-pack", repo.url)])
    assert e.run("install", "example-pack").state.value == "done"
    assert e.run("disable", "example-pack").state.value == "done"
    yield e
    e.close()


def _packs(env):
    return [(p.name, p.enabled) for p in scan(env.manager.layout).packs]


def test_installing_a_disabled_pack_enables_it(env):
    assert _packs(env) == [("example-pack@nightly", False)]
    task = env.run("install", "example-pack")
    assert task.state.value == "done", task.error
    assert task.result["action"] == "enable" and task.result["enabled_instead"] == "example-pack@nightly"
    assert "enabled instead of installing a second copy" in task.result["notes"][0]
    assert _packs(env) == [("example-pack", True)]
    assert "resolve" in env.stages(task.id) and "clone" not in env.stages(task.id)


def test_an_install_naming_another_version_or_folder_installs(env):
    task = env.run("install", "example-pack", name="second-copy")
    assert task.state.value == "done", task.error
    assert sorted(_packs(env)) == [("example-pack@nightly", False), ("second-copy", True)]
