"""A restore from an imported bundle asks git only when the bundle's header and manifest cannot
answer: a pinned commit below every ref tip makes the bare repository beside the bundle (its
requirements.txt read by git for the offline check), and the pack is cloned at that commit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from manager.bundles import Selection, create_bundle, import_bundle
from manager.context import Manager
from manager.records import PolicyDecision
from manager.snapshots.model import PackState, Snapshot
from manager.snapshots.plan import RestoreOptions
from manager.snapshots.restore import restore
from manager.snapshots.store import read_snapshot_file
from support import tools
from support.bundles import make_creator, make_tree
from support.gitrepos import git, make_repo

pytestmark = pytest.mark.offline_suite


def test_commit_below_the_tips_is_read_through_git(tmp_path: Path) -> None:
    tools.require("git")
    creator = make_creator(tmp_path)
    made = create_bundle(
        Manager.standalone(creator.root, env={}), Selection(snapshot=str(creator.snapshot)), tmp_path / "b.tar"
    )
    box = Manager.standalone(make_tree(tmp_path / "box" / "ComfyUI"), env={})
    import_bundle(box, Path(made.path))
    bundle = box.layout.git_mirror_dir / "example.invalid" / "test" / "pack-a.bundle"
    bare = bundle.with_name("pack-a.git")
    assert bundle.is_file() and not bare.exists()

    snap = read_snapshot_file(Path(creator.snapshot))
    older = creator.repo.commits[2]  # "third": no ref points at it; its requirements.txt names packaging
    pinned = dataclasses.replace(
        snap, packs=tuple(dataclasses.replace(p, commit=older) for p in snap.packs if p.kind == "git")
    )
    result = restore(box, pinned, RestoreOptions(), policy=PolicyDecision.allow("snapshot_restore", "git_url", "test"))
    assert result.ok, result
    assert bare.is_dir() and bundle.is_file(), "git answered from the repository made beside the bundle"
    pack = box.layout.comfyui_root / "custom_nodes" / "pack-a"
    assert git(pack, "rev-parse", "HEAD").strip() == older
    assert git(pack, "rev-parse", "--abbrev-ref", "HEAD").strip() == "HEAD"  # detached at the pin
    assert git(pack, "remote", "get-url", "origin").strip() == creator.pack_url  # the public URL, not the mirror
    assert (pack / "requirements.txt").read_text() == "packaging\n"


def test_mirror_clones_made_ahead_land_like_a_clone(tmp_path: Path) -> None:
    """Two packs from the git mirror (a kept bundle and a bare repository): the restore clones
    them side by side first, each step vets and moves its clone in; staging is left empty."""
    tools.require("git")
    box = Manager.standalone(make_tree(tmp_path / "box" / "ComfyUI"), env={})
    packs = []
    for i, form in enumerate(("bundle", "bare")):
        repo = make_repo(tmp_path / "src" / f"pack-{i}", name=f"pack-{i}")
        where = box.layout.git_mirror_dir / "example.invalid" / "t" / f"pack-{i}.{form if form == 'bundle' else 'git'}"
        where.parent.mkdir(parents=True, exist_ok=True)
        if form == "bundle":
            git(repo.path, "bundle", "create", "-q", str(where), "--all")
        else:
            git(tmp_path, "clone", "-q", "--mirror", str(repo.path), str(where))
        url = f"https://example.invalid/t/pack-{i}"
        packs.append(PackState(name=f"pack-{i}", kind="git", id=f"pack-{i}", url=url, commit=repo.commits[i]))
    snap = Snapshot(created_at="2026-12-01T00:00:00Z", packs=tuple(packs))
    result = restore(box, snap, RestoreOptions(), policy=PolicyDecision.allow("snapshot_restore", "git_url", "test"))
    assert result.ok, result
    for pack in packs:
        folder = box.layout.custom_nodes / pack.name
        assert git(folder, "rev-parse", "HEAD").strip() == pack.commit
        assert git(folder, "status", "--porcelain").strip() == ""
        assert git(folder, "remote", "get-url", "origin").strip() == pack.url
    staging = box.layout.staging_dir
    assert not staging.exists() or not list(staging.iterdir()), "the clones made ahead must not stay behind"
