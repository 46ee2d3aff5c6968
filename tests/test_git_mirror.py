"""The git mirror's two forms (a bundle file kept as imported, a bare repository) on real
repositories: the header reader agrees with git, clones from either land detached at the pinned
commit with a clean tree and the public URL as origin, whichever way the clone was made."""

from __future__ import annotations

from pathlib import Path

import pytest

from manager.git import GitClient
from manager.git_local import set_origin_url
from manager.git_mirror import bundle_refs, find_mirror, repository_for, source_head
from manager.network import NetworkGate, NetworkMode, NetworkPolicy
from support.gitrepos import RepoInfo, git, make_repo

pytestmark = pytest.mark.usefixtures("git_bin")

URL = "https://example.invalid/owner/example-pack"


@pytest.fixture
def upstream(tmp_path: Path) -> RepoInfo:
    return make_repo(tmp_path / "src" / "example-pack")


def _bundle_mirror(upstream: RepoInfo, root: Path) -> Path:
    bundle = root / "example.invalid" / "owner" / "example-pack.bundle"
    bundle.parent.mkdir(parents=True)
    git(upstream.path, "bundle", "create", "-q", str(bundle), "--all")
    return bundle


def test_bundle_header_reader_agrees_with_git(upstream: RepoInfo, tmp_path: Path) -> None:
    bundle = _bundle_mirror(upstream, tmp_path / "mirror")
    listed = {}
    for line in git(upstream.path, "bundle", "list-heads", str(bundle)).splitlines():
        oid, name = line.split(" ", 1)
        listed[name] = oid
    assert bundle_refs(bundle) == listed and listed["HEAD"] == upstream.commits[-1]
    assert source_head(bundle) == upstream.commits[-1]
    thin = tmp_path / "thin.bundle"  # prerequisites: not vouched for without git
    git(upstream.path, "bundle", "create", "-q", str(thin), "main~1..main")
    assert bundle_refs(thin) is None and source_head(thin) == ""
    bare = repository_for("git", bundle)  # made once beside the bundle; the lookup then prefers it
    assert bare == bundle.with_name("example-pack.git") and source_head(bare) == upstream.commits[-1]
    assert find_mirror(tmp_path / "mirror", URL) == bare and repository_for("git", bundle) == bare


@pytest.mark.parametrize("form", ["bundle", "bare"])
@pytest.mark.parametrize("which", [-1, 0])  # the source's HEAD (one git run), an older commit (checkout)
def test_clone_from_mirror_detached_at_commit_with_public_origin(
    upstream: RepoInfo, tmp_path: Path, form: str, which: int
) -> None:
    root = tmp_path / "mirror"
    bundle = _bundle_mirror(upstream, root)
    if form == "bare":
        repository_for("git", bundle)
    commit = upstream.commits[which]
    gc = GitClient(NetworkGate(NetworkPolicy(mode=NetworkMode.OFFLINE)), mirror_root=root)
    dest = tmp_path / "out" / "pack"
    st = gc.clone(URL, dest, ref=commit)
    assert st.commit == commit and st.detached and st.remote_url == URL
    assert git(dest, "rev-parse", "HEAD").strip() == commit
    assert git(dest, "status", "--porcelain").strip() == "", "the tree must match the commit"
    assert git(dest, "config", "--get-all", "remote.origin.url").strip() == URL
    assert git(dest, "rev-parse", "--abbrev-ref", "HEAD").strip() == "HEAD"  # detached
    assert (dest / "nodes.py").read_text() == f"VERSION = {len(upstream.commits) if which == -1 else 1}\n"


def test_set_origin_url_leaves_unusual_values_to_git(upstream: RepoInfo, tmp_path: Path) -> None:
    dest = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(upstream.path), str(dest))
    before = (dest / ".git" / "config").read_bytes()
    assert not set_origin_url(dest, 'https://example.invalid/a"b')
    assert not set_origin_url(dest, "https://example.invalid/a;b")
    assert (dest / ".git" / "config").read_bytes() == before
    assert set_origin_url(dest, URL)
    assert git(dest, "remote", "get-url", "origin").strip() == URL
