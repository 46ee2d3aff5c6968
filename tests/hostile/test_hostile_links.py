"""Symbolic links planted in our working folders (issue 17, finding 6).

A local user, or anything that can write beside the Manager, plants a link where one of our
working folders belongs: as the folder itself, as a folder on the way to it, or as an entry
inside it. Every case runs the real operation on a real tree (``make_env``: a ComfyUI tree, a
Manager, a local channel and git repository) with a real ``os.symlink`` to a folder *outside*
the ComfyUI tree, and demands a ``working_folder_link`` refusal naming the link and the fix, and
an unchanged checksum listing of both the tree and the link's target (the whole ``tmp_path``).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from manager.channel_cache import ChannelCache
from manager.errors import WorkingFolderLink
from manager.fsops import file_lock
from manager.inventory import scan
from manager.models import install_entry, load_model_folders
from manager.network import NetworkGate, NetworkMode, NetworkPolicy
from manager.operations import Reporter
from manager.operations.install import install
from manager.operations.remove import empty_trash, restore_trash, uninstall
from manager.operations.staging import prepare_tree
from manager.operations.toggle import disable, enable
from manager.records import ModelEntry
from manager.snapshots import store_of
from manager.snapshots.model import Snapshot
from support import treesum
from support.gitrepos import make_repo
from support.ops_fixtures import OpsEnv, catalog_entry, make_env

pytestmark = pytest.mark.hostile("links")

TRASH_ID = "20240101T000000-evil-pack-abc123"


@dataclass
class World:
    tmp: Path
    env: OpsEnv
    outside: Path  # the link targets live here, outside the ComfyUI tree

    @property
    def cn(self) -> Path:
        return self.env.custom_nodes

    @property
    def mgr(self) -> Path:
        return self.env.root / "user" / "__manager"

    def link(self, at: Path, target: Path) -> Path:
        at.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, at, target_is_directory=target.is_dir())
        return at


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    repo = make_repo(tmp_path / "src" / "Link-Pack", name="link-pack")
    env = make_env(tmp_path, packs=[catalog_entry("link-pack", repo.url)])
    env.manager.catalog_view()  # the channel is read (and cached) before the checksums
    real = env.custom_nodes / "Real-Pack"
    real.mkdir()
    (real / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    outside = tmp_path / "outside"
    evil = outside / "evil-pack"
    evil.mkdir(parents=True)
    (evil / "__init__.py").write_text("import os  # would run inside ComfyUI\n")
    (outside / "precious.txt").write_text("the user's own file\n")
    entry = outside / "trash-entry"
    entry.mkdir()
    manifest = {"format": 1, "id": TRASH_ID, "name": "evil-pack", "original": "evil-pack", "trashed_at": 1}
    (entry / "manifest.json").write_text(json.dumps({**manifest, "reason": "uninstall"}))
    (entry / "evil-pack").mkdir()
    (entry / "evil-pack" / "__init__.py").write_text("# planted\n")
    for name in ("disabled", "staging", "trash", "snaps", "cache", "channels", "locks", "cnr"):
        (outside / name).mkdir()
    w = World(tmp_path, env, outside)
    yield w
    env.close()


def refused(world: World, action: Callable[[], Any], link: Path) -> WorkingFolderLink:
    """Run ``action``; demand ``working_folder_link`` naming ``link`` and nothing written anywhere."""
    before = treesum.listing(world.tmp)
    with pytest.raises(WorkingFolderLink) as info:
        action()
    err = info.value
    assert err.code == "working_folder_link" and err.http_status == 409
    assert err.details["path"] == str(link), err.details
    assert str(link) in err.message and "rm " in err.hint and "link" in err.hint
    diff = treesum.changes(before, treesum.listing(world.tmp))
    assert not diff, f"a refused link case changed files: {diff.describe()}"
    return err


def _rep() -> Reporter:
    return Reporter()


def _snapshot() -> Snapshot:
    return Snapshot(created_at="2026-01-02T03:04:05.000000Z", python_version="3.11")


# --- custom_nodes/.disabled/ ------------------------------------------------------------------------
def test_disabled_folder_is_a_link(world: World) -> None:
    link = world.link(world.cn / ".disabled", world.outside / "disabled")
    refused(world, lambda: disable(world.env.ops, "Real-Pack", _rep()), link)
    refused(world, lambda: install(world.env.ops, "link-pack", _rep()), link)
    notices = [n for n in scan(world.env.manager.layout).notices if n.code == "working_folder_link"]
    assert notices and notices[0].details["path"] == str(link)


def test_disabled_entry_is_a_link_is_not_a_pack(world: World) -> None:
    (world.cn / ".disabled").mkdir()
    link = world.link(world.cn / ".disabled" / "evil-pack", world.outside / "evil-pack")
    inv = scan(world.env.manager.layout)
    assert not inv.find("evil-pack"), "a link in .disabled/ must never be listed (so never enabled)"
    assert any(n.code == "working_folder_link" and n.details["path"] == str(link) for n in inv.notices)
    refused(world, lambda: enable(world.env.ops, "evil-pack", _rep()), link)
    refused(world, lambda: disable(world.env.ops, "Real-Pack", _rep()), link)
    refused(world, lambda: uninstall(world.env.ops, "Real-Pack", _rep()), link)
    assert not (world.cn / "evil-pack").exists()


def test_disabled_hidden_entry_is_a_link(world: World) -> None:
    (world.cn / ".disabled").mkdir()
    link = world.link(world.cn / ".disabled" / ".cm-origins.json", world.outside / "precious.txt")
    refused(world, lambda: disable(world.env.ops, "Real-Pack", _rep()), link)


# --- staging ----------------------------------------------------------------------------------------
def test_staging_folder_is_a_link_nothing_is_cloned_through_it(world: World) -> None:
    link = world.link(world.cn / ".cm-staging.disabled", world.outside / "staging")
    refused(world, lambda: install(world.env.ops, "link-pack", _rep()), link)
    refused(world, lambda: disable(world.env.ops, "Real-Pack", _rep()), link)
    assert list((world.outside / "staging").iterdir()) == []


def test_staging_entry_is_a_link(world: World) -> None:
    (world.cn / ".cm-staging.disabled").mkdir()
    link = world.link(world.cn / ".cm-staging.disabled" / "leftover-1234", world.outside)
    refused(world, lambda: install(world.env.ops, "link-pack", _rep()), link)
    refused(world, lambda: prepare_tree(world.env.manager.layout), link)


def test_staging_journal_is_a_link(world: World) -> None:
    (world.cn / ".cm-staging.disabled").mkdir()
    link = world.link(world.cn / ".cm-staging.disabled" / ".txn-0123456789ab.json", world.outside / "precious.txt")
    refused(world, lambda: uninstall(world.env.ops, "Real-Pack", _rep()), link)


# --- trash ------------------------------------------------------------------------------------------
def test_trash_folder_is_a_link(world: World) -> None:
    link = world.link(world.cn / ".cm-trash.disabled", world.outside / "trash")
    refused(world, lambda: uninstall(world.env.ops, "Real-Pack", _rep()), link)
    refused(world, lambda: empty_trash(world.env.ops, _rep()), link)


def test_trash_entry_is_a_link(world: World) -> None:
    (world.cn / ".cm-trash.disabled").mkdir()
    link = world.link(world.cn / ".cm-trash.disabled" / TRASH_ID, world.outside / "trash-entry")
    refused(world, lambda: restore_trash(world.env.ops, TRASH_ID, _rep()), link)
    refused(world, lambda: empty_trash(world.env.ops, _rep()), link)
    refused(world, lambda: uninstall(world.env.ops, "Real-Pack", _rep()), link)
    assert not (world.cn / "evil-pack").exists()


# --- <user>/__manager: snapshots, caches, locks -------------------------------------------------------
def test_snapshots_folder_is_a_link(world: World) -> None:
    link = world.link(world.mgr / "snapshots", world.outside / "snaps")
    store = store_of(world.env.manager)
    refused(world, lambda: store.save(_snapshot(), "planted"), link)
    refused(world, lambda: store.entries(), link)
    refused(world, lambda: install(world.env.ops, "link-pack", _rep()), link)


def test_manager_folder_is_a_link_as_a_parent(world: World) -> None:
    moved = world.outside / "manager"
    os.rename(world.mgr, moved)
    link = world.link(world.mgr, moved)
    refused(world, lambda: store_of(world.env.manager).save(_snapshot(), "planted"), link)
    refused(world, lambda: install(world.env.ops, "link-pack", _rep()), link)
    cache = ChannelCache(world.env.manager.layout.cache_dir / "channels", NetworkGate(NetworkPolicy()))
    refused(world, lambda: cache.put("https://example.invalid/custom-node-list.json", b"{}"), link)


def test_cache_folder_is_a_link_as_a_parent(world: World) -> None:
    layout = world.env.manager.layout
    if layout.cache_dir.exists():
        os.rename(layout.cache_dir, world.outside / "cache" / "moved")
        link = world.link(layout.cache_dir, world.outside / "cache" / "moved")
    else:
        link = world.link(layout.cache_dir, world.outside / "cache")
    cache = ChannelCache(layout.cache_dir / "channels", NetworkGate(NetworkPolicy()))
    refused(world, lambda: cache.put("https://example.invalid/custom-node-list.json", b"{}"), link)
    refused(world, lambda: disable(world.env.ops, "Real-Pack", _rep()), link)


@pytest.mark.parametrize("sub", ["channels", "registry"])
def test_channel_cache_folder_is_a_link(world: World, sub: str) -> None:
    layout = world.env.manager.layout
    if (layout.cache_dir / sub).exists():
        os.rename(layout.cache_dir / sub, world.outside / "channels" / "moved")
        link = world.link(layout.cache_dir / sub, world.outside / "channels" / "moved")
    else:
        link = world.link(layout.cache_dir / sub, world.outside / "channels")
    cache = ChannelCache(layout.cache_dir / sub, NetworkGate(NetworkPolicy()))
    refused(world, lambda: cache.put("https://example.invalid/custom-node-list.json", b"{}"), link)
    gate = NetworkGate(NetworkPolicy(mode=NetworkMode.OFFLINE))
    refused(
        world,
        lambda: asyncio.run(ChannelCache(layout.cache_dir / sub, gate).aget("https://example.invalid/x.json")),
        link,
    )
    refused(world, lambda: install(world.env.ops, "link-pack", _rep()), link)


def test_archive_cache_entry_is_a_link(world: World) -> None:
    layout = world.env.manager.layout
    link = world.link(layout.cache_dir / "archives" / "cnr" / "some-pack", world.outside / "cnr")
    refused(world, lambda: install(world.env.ops, "link-pack", _rep()), link)


def test_locks_folder_is_a_link(world: World) -> None:
    layout = world.env.manager.layout
    link = world.link(layout.locks_dir, world.outside / "locks")

    def take() -> None:
        with file_lock(layout.locks_dir / "operations.lock", anchor=layout.user_dir):
            pass

    refused(world, take, link)
    refused(world, lambda: uninstall(world.env.ops, "Real-Pack", _rep()), link)


def test_lock_file_is_a_link_is_never_created_or_truncated_through(world: World) -> None:
    layout = world.env.manager.layout
    layout.locks_dir.mkdir(parents=True, exist_ok=True)
    link = world.link(layout.locks_dir / "operations.lock", world.outside / "precious.txt")

    def take() -> None:
        with file_lock(link):
            pass

    refused(world, take, link)
    assert (world.outside / "precious.txt").read_text() == "the user's own file\n"


# --- model partial downloads ------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".part", ".part.json", "lock"])
def test_model_partial_download_is_a_link(world: World, suffix: str) -> None:
    folders = load_model_folders(world.env.manager.host)
    entry = ModelEntry(
        name="m",
        type="checkpoint",
        filename="m.safetensors",
        url="https://127.0.0.1:9/m.safetensors",
        save_path="checkpoints",
    )
    folder = world.env.root / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    name = ".m.safetensors.lock" if suffix == "lock" else "m.safetensors" + suffix
    link = world.link(folder / name, world.outside / "precious.txt")
    gate = NetworkGate(NetworkPolicy(mode=NetworkMode.PUBLIC, connect_timeout=0.5, total_timeout=1.0))
    refused(world, lambda: asyncio.run(install_entry(entry, gate=gate, folders=folders)), link)
