"""Incremental bundles: ``--since`` carries only what changed (by sha256; a git bundle by its refs);
an increment whose base was never imported is refused naming the base, and changes nothing; with
the base imported first, the increment brings the new commit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from manager.bundles import Selection, create_bundle, import_bundle, verify_bundle
from manager.bundles.errors import BundleBaseMissing
from manager.context import Manager
from manager.git_mirror import find_mirror, repository_for
from support import tools
from support.bundles import make_creator, make_tree, members
from support.gitrepos import git
from support.treesum import listing

pytestmark = pytest.mark.offline_suite  # no socket at all: the sources are a git mirror and the archive cache

REPO = Path(__file__).resolve().parents[1]
CM = REPO / "cm-cli.py"


def test_increment_carries_only_changes_and_needs_its_base(tmp_path: Path) -> None:
    tools.require("git")
    creator = make_creator(tmp_path)
    maker = Manager.standalone(creator.root, env={})
    selection = Selection(snapshot=str(creator.snapshot))
    base = create_bundle(maker, selection, tmp_path / "base.tar")

    same = create_bundle(maker, selection, tmp_path / "same.tar", since=Path(base.path))
    assert [n for n, _ in members(Path(same.path))] == ["manifest.json", "snapshot.json"], "nothing changed"
    assert same.carried_over == 7 and same.base is not None and same.base.sha256 == base.manifest_sha256

    new = creator.repo.commit("fix", {"nodes.py": "VERSION = 4\n"})
    mirror = creator.root / "user" / "__manager" / "git-mirror" / "example.invalid" / "test" / "pack-a.git"
    git(mirror, "fetch", "-q", "origin", "+refs/heads/*:refs/heads/*")
    out = subprocess.run(
        [sys.executable, str(CM), "--comfyui", str(creator.root), "bundle", "create", "--snapshot"]
        + [str(creator.snapshot), "--since", base.path, "-o", str(tmp_path / "inc.tar")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "increment of" in out.stdout, out.stdout + out.stderr
    inc = tmp_path / "inc.tar"
    assert [n for n, _ in members(inc)] == ["manifest.json", "git/example.invalid/test/pack-a.bundle", "snapshot.json"]

    box = Manager.standalone(make_tree(tmp_path / "box" / "ComfyUI"), env={})
    report = verify_bundle(box, inc)
    assert report.ok and report.manifest is not None and report.manifest.base is not None
    before = listing(box.layout.comfyui_root)
    with pytest.raises(BundleBaseMissing) as err:
        import_bundle(box, inc)
    assert base.manifest_sha256 in err.value.message and base.created_at in err.value.message
    assert listing(box.layout.comfyui_root) == before, "a refused increment changed the tree"

    import_bundle(box, Path(base.path))
    kept = box.layout.git_mirror_dir / "example.invalid" / "test" / "pack-a.bundle"
    assert find_mirror(box.layout.git_mirror_dir, "https://example.invalid/test/pack-a") == kept  # as it came
    old = repository_for("git", kept)  # the bare repository a restore makes from the base's bundle
    assert git(old, "rev-parse", "refs/heads/main") != new
    result = import_bundle(box, inc)
    assert {c.store: c.action for c in result.changes}["git"] == "replace"
    assert not old.exists(), "the repository made from the older bundle must go: the newest bundle wins"
    repo = repository_for("git", find_mirror(box.layout.git_mirror_dir, "https://example.invalid/test/pack-a") or kept)
    assert git(repo, "rev-parse", "refs/heads/main") == new
    assert (box.layout.cache_dir / "archives" / "cnr" / "reg-pack" / "1.0.0.zip").is_file()  # from the base
    assert len(list(box.layout.bundles_dir.glob("*.json"))) == 2
