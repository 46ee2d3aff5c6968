"""Disable/enable with the classic naming, the same pack in both places, uninstall to the trash,
restore, empty the trash; nothing is ever overwritten."""

from __future__ import annotations

import json
import os

import pytest

from manager.inventory import scan
from manager.operations.remove import list_trash
from manager.operations.staging import RenameTxn, prepare_tree
from support.gitrepos import make_repo
from support.ops_fixtures import catalog_entry, cnr_files, make_env, tree_listing


@pytest.fixture
def env(tmp_path):
    plain = make_repo(tmp_path / "src" / "Plain-Git", name="plain-git")
    registry_git = make_repo(tmp_path / "src" / "ComfyUI-Reg-Pack", name="reg-pack")
    e = make_env(tmp_path, packs=[catalog_entry("plain-git", plain.url), catalog_entry("reg-pack", registry_git.url)])
    # a git pack without a registry identity: drop pyproject.toml from the clone after install
    yield e
    e.close()


def _cnr_pack(env, node_id: str, version: str, folder: str | None = None):
    dest = env.custom_nodes / (folder or node_id)
    dest.mkdir(parents=True)
    files = cnr_files(node_id, version)
    for rel, text in files.items():
        (dest / rel).write_text(text)
    (dest / ".tracking").write_text("\n".join(files) + "\n")
    return dest


def test_disable_enable_registry_pack_uses_versioned_name(env):
    _cnr_pack(env, "demo-pack", "1.2.3")
    task = env.run("disable", "demo-pack")
    assert task.state.value == "done", task.error
    assert (env.custom_nodes / ".disabled" / "demo-pack@1_2_3").is_dir()
    assert not (env.custom_nodes / "demo-pack").exists() and task.restart_required
    task = env.run("enable", "demo-pack")
    assert task.state.value == "done", task.error
    assert (env.custom_nodes / "demo-pack" / ".tracking").is_file()


def test_git_pack_with_registry_identity_becomes_nightly_and_gets_its_folder_back(env):
    assert env.run("install", "reg-pack").state.value == "done"  # folder ComfyUI-Reg-Pack, cnr id reg-pack
    assert env.run("disable", "ComfyUI-Reg-Pack").state.value == "done"
    assert (env.custom_nodes / ".disabled" / "reg-pack@nightly" / ".git").is_dir()
    assert env.run("enable", "reg-pack").state.value == "done"
    assert (env.custom_nodes / "ComfyUI-Reg-Pack" / ".git").is_dir()


def test_unknown_git_pack_keeps_its_folder_name(env):
    assert env.run("install", "plain-git").state.value == "done"
    (env.custom_nodes / "Plain-Git" / "pyproject.toml").unlink()
    assert env.run("disable", "Plain-Git").state.value == "done"
    assert (env.custom_nodes / ".disabled" / "Plain-Git" / ".git").is_dir()
    assert env.run("enable", "Plain-Git").state.value == "done"
    assert (env.custom_nodes / "Plain-Git").is_dir()


def test_same_pack_in_both_places_is_refused_never_overwritten(env):
    _cnr_pack(env, "demo-pack", "1.0.0")
    assert env.run("disable", "demo-pack").state.value == "done"
    _cnr_pack(env, "demo-pack", "1.0.0")  # the same version installed again
    (env.custom_nodes / "demo-pack" / "mine.txt").write_text("enabled copy")
    before = tree_listing(env.custom_nodes)
    task = env.run("disable", "demo-pack")
    assert task.state.value == "failed" and task.error["code"] == "pack_conflict"
    assert "uninstall" in task.error["hint"].lower()
    task = env.run("enable", "demo-pack")
    assert task.state.value == "failed" and task.error["code"] == "pack_conflict"
    assert "switch_version" in task.error["hint"]
    assert tree_listing(env.custom_nodes) == before
    # a different version next to it is fine: both sit side by side in .disabled/
    (env.custom_nodes / "demo-pack" / "pyproject.toml").write_text('[project]\nname = "demo-pack"\nversion = "2.0.0"\n')
    assert env.run("disable", "demo-pack").state.value == "done"
    disabled = sorted(p.name for p in (env.custom_nodes / ".disabled").iterdir() if not p.name.startswith("."))
    assert disabled == ["demo-pack@1_0_0", "demo-pack@2_0_0"]
    task = env.run("enable", "demo-pack")
    assert task.state.value == "failed" and task.error["code"] == "pack_ambiguous"
    assert env.run("enable", "demo-pack", version="2.0.0").state.value == "done"
    assert (env.custom_nodes / "demo-pack" / "mine.txt").read_text() == "enabled copy"


def test_old_suffix_style_is_enabled_by_dropping_the_suffix(env):
    legacy = env.custom_nodes / "legacy.disabled"
    legacy.mkdir()
    (legacy / "__init__.py").write_text("")
    assert env.run("enable", "legacy").state.value == "done"
    assert (env.custom_nodes / "legacy" / "__init__.py").is_file()


def test_uninstall_to_trash_restore_and_empty(env):
    assert env.run("install", "plain-git").state.value == "done"
    task = env.run("uninstall", "Plain-Git")
    assert task.state.value == "done", task.error
    assert not (env.custom_nodes / "Plain-Git").exists()
    assert [p.name for p in scan(env.manager.layout).packs] == []  # the trash is never a pack
    (entry,) = list_trash(env.manager.layout)
    assert entry.id == task.result["trash_entry"] and entry.original == "Plain-Git" and entry.kind == "git"
    manifest = json.loads((env.custom_nodes / ".cm-trash.disabled" / entry.id / "manifest.json").read_text())
    assert manifest["reason"] == "uninstall" and manifest["name"] == "Plain-Git"
    # a new copy in the way: restore refuses
    assert env.run("install", "plain-git").state.value == "done"
    task = env.run("restore_trash", entry.id)
    assert task.state.value == "failed" and task.error["code"] == "pack_conflict"
    assert env.run("uninstall", "Plain-Git").state.value == "done"
    assert len(list_trash(env.manager.layout)) == 2
    task = env.run("restore_trash", entry.id)
    assert task.state.value == "done", task.error
    assert (env.custom_nodes / "Plain-Git" / ".git").is_dir()
    assert env.run("restore_trash", "no-such-entry").error["code"] == "not_found"
    task = env.run("empty_trash", "trash")
    assert task.state.value == "done" and task.result["count"] == 1
    assert list_trash(env.manager.layout) == []


def test_uninstall_a_disabled_copy_and_restore_it_disabled(env):
    _cnr_pack(env, "demo-pack", "1.0.0")
    assert env.run("disable", "demo-pack").state.value == "done"
    task = env.run("uninstall", "demo-pack", enabled=False)
    assert task.state.value == "done" and not task.restart_required
    (entry,) = list_trash(env.manager.layout)
    assert entry.original == ".disabled/demo-pack@1_0_0"
    assert env.run("restore_trash", entry.id).state.value == "done"
    assert (env.custom_nodes / ".disabled" / "demo-pack@1_0_0").is_dir()


def test_interrupted_transaction_is_rolled_back_by_the_next_operation(env):
    """A journal left by a killed process: its completed moves are undone."""
    _cnr_pack(env, "demo-pack", "1.0.0")
    layout = env.manager.layout
    txn = RenameTxn(layout, label="simulated crash")
    layout.disabled_dir.mkdir(exist_ok=True)
    txn.move(env.custom_nodes / "demo-pack", layout.disabled_dir / "demo-pack@1_0_0")
    # no commit: the process "died" here, the journal is still on disk
    assert txn.journal.is_file()
    notes = prepare_tree(layout)
    assert any("rolled back" in n for n in notes)
    assert (env.custom_nodes / "demo-pack" / ".tracking").is_file()
    assert not (layout.disabled_dir / "demo-pack@1_0_0").exists() and not txn.journal.exists()


# --- links: our working folders refuse them; packs the user linked in keep working ----------------
def test_pack_linked_in_by_the_user_uninstalls_and_restores_but_never_enters_disabled(env, tmp_path):
    from manager.errors import WorkingFolderLink

    dev = tmp_path / "dev-checkout" / "my-dev-pack"
    dev.mkdir(parents=True)
    (dev / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (env.custom_nodes / "my-dev-pack").symlink_to(dev)
    pack = env.manager.inventory().find("my-dev-pack")[0]
    assert pack.is_link and pack.enabled
    before = tree_listing(tmp_path)
    task = env.run("disable", "my-dev-pack")
    assert task.state.value == "failed" and task.error["code"] == WorkingFolderLink.code
    assert "rm " in task.error["hint"] and task.error["details"]["path"] == str(env.custom_nodes / "my-dev-pack")
    queue_lock = "ComfyUI/user/__manager/locks"  # the queue's own lock, taken around every task
    after = tree_listing(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith(queue_lock)} == {
        k: v for k, v in before.items() if not k.startswith(queue_lock)
    }
    task = env.run("uninstall", "my-dev-pack")  # the link goes to the trash as it is
    assert task.state.value == "done", task.error
    [entry] = list_trash(env.manager.layout)
    assert (env.custom_nodes / ".cm-trash.disabled" / entry.id / "my-dev-pack").is_symlink()
    assert (dev / "__init__.py").is_file()
    assert env.run("restore_trash", entry.id).state.value == "done"
    assert (env.custom_nodes / "my-dev-pack").is_symlink() and os.readlink(env.custom_nodes / "my-dev-pack") == str(dev)


def test_custom_nodes_itself_may_be_a_link(tmp_path):
    real = tmp_path / "big-disk" / "custom_nodes"
    plain = make_repo(tmp_path / "src" / "Plain-Git", name="plain-git")
    e = make_env(tmp_path, packs=[catalog_entry("plain-git", plain.url)])
    try:
        real.parent.mkdir(parents=True)
        os.rename(e.custom_nodes, real)
        e.custom_nodes.symlink_to(real)
        assert e.run("install", "plain-git").state.value == "done"
        assert e.run("disable", "Plain-Git").state.value == "done"
        assert (real / ".disabled").is_dir() and not (real / ".disabled").is_symlink()
        assert e.run("enable", "Plain-Git").state.value == "done"
        assert (real / "Plain-Git" / ".git").is_dir()
    finally:
        e.close()
