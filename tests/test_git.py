"""GitClient against real repositories: file://, local paths, git daemon and smart HTTP on 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from manager.errors import (
    GitDetachedHead,
    GitDiverged,
    GitError,
    GitLocalChanges,
    GitUnavailable,
    InvalidGitRef,
    InvalidGitUrl,
    NetworkBlocked,
    NotFound,
    OfflineModeEnabled,
)
from manager.git import GitClient, check_ref, check_remote_url
from manager.network import NetworkGate, NetworkMode, NetworkPolicy
from support.gitrepos import GitDaemon, RepoInfo, git, make_repo, serve_smart_http

pytestmark = pytest.mark.usefixtures("git_bin")  # no git: every test here FAILS with the install command


def client(mode: NetworkMode = NetworkMode.PUBLIC, **policy) -> GitClient:
    return GitClient(NetworkGate(NetworkPolicy(mode=mode, **policy)))


@pytest.fixture
def upstream(tmp_path: Path) -> RepoInfo:
    return make_repo(tmp_path / "srv" / "example-pack")


@pytest.fixture
def daemon(upstream: RepoInfo):
    with GitDaemon(upstream.path.parent) as d:
        yield d


# --- clone ----------------------------------------------------------------------------
def test_clone_file_url_default_branch(upstream: RepoInfo, tmp_path: Path):
    lines: list[str] = []
    st = client().clone(upstream.url, tmp_path / "out" / "pack", progress=lines.append)
    assert st.commit == upstream.commits[-1] and st.branch == "main" and not st.detached
    assert st.remote_url == upstream.url
    assert (tmp_path / "out" / "pack" / "nodes.py").read_text() == "VERSION = 3\n"
    assert lines and lines[0].startswith("cloning ")


@pytest.mark.parametrize("ref,detached", [("v1.0.0", True), ("dev", False), ("COMMIT0", True), ("SHORT1", True)])
def test_clone_at_tag_branch_and_commit(upstream: RepoInfo, tmp_path: Path, ref: str, detached: bool):
    expected = {
        "v1.0.0": upstream.tags["v1.0.0"],
        "dev": upstream.dev_commit,
        "COMMIT0": upstream.commits[0],
        "SHORT1": upstream.commits[1],
    }[ref]
    ref = {"COMMIT0": upstream.commits[0], "SHORT1": upstream.commits[1][:10]}.get(ref, ref)
    st = client().clone(str(upstream.path), tmp_path / "pack", ref=ref)  # plain local path
    assert st.commit == expected and st.detached is detached
    if not detached:
        assert st.branch == ref


def test_clone_missing_ref_fails_coded_and_leaves_nothing(upstream: RepoInfo, tmp_path: Path):
    with pytest.raises(GitError) as exc:
        client().clone(upstream.url, tmp_path / "pack", ref="v9.9.9")
    assert exc.value.code == "git_failed" and "does not exist" in exc.value.hint
    assert not (tmp_path / "pack").exists()


def test_clone_into_non_empty_destination_refused(upstream: RepoInfo, tmp_path: Path):
    dest = tmp_path / "pack"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(GitError):
        client().clone(upstream.url, dest)
    assert (dest / "keep.txt").read_text() == "mine" and len(list(dest.iterdir())) == 1


def test_clone_over_git_daemon_is_shallow_and_updates(
    upstream: RepoInfo, daemon: GitDaemon, tmp_path: Path, socket_audit_log
):
    gc = client()
    lines: list[str] = []
    dest = tmp_path / "pack"
    st = gc.clone(daemon.url("example-pack"), dest, progress=lines.append)
    assert st.commit == upstream.commits[-1] and st.branch == "main"
    assert (dest / ".git" / "shallow").exists()
    assert lines[0].startswith("cloning git://127.0.0.1:") and any("objects" in line for line in lines)
    assert socket_audit_log.inet_connects() == []  # git's sockets are its own process's
    new = upstream.commit("fourth", {"nodes.py": "VERSION = 4\n"})
    res = gc.update(dest)
    assert res.status == "updated" and res.before == upstream.commits[-2] and res.after == new
    assert gc.update(dest).status == "up_to_date"
    # an older tag is outside the shallow history: checkout deepens it through the gate
    assert gc.checkout(dest, "v1.0.0").commit == upstream.tags["v1.0.0"]


def test_clone_over_smart_http(upstream: RepoInfo, http_server, tmp_path: Path):
    url = serve_smart_http(http_server, upstream.path.parent, "example-pack")
    st = client().clone(url, tmp_path / "pack", ref="v1.1.0")
    assert st.commit == upstream.tags["v1.1.0"] and st.detached
    assert http_server.count("/git/example-pack/info/refs") >= 1
    assert client().remote_refs(url)["refs/tags/v1.0.0"] == upstream.tags["v1.0.0"]


def test_private_mode_mirror_map_rewrites_github_to_local_daemon(upstream: RepoInfo, tmp_path: Path):
    owner = upstream.path.parent / "owner"
    owner.mkdir()
    shutil.copytree(upstream.path, owner / "example-pack")
    with GitDaemon(upstream.path.parent) as d:
        mirror = f"git://127.0.0.1:{d.port}/"
        gc = client(NetworkMode.PRIVATE, private_mirrors=(mirror,), mirror_map=(("https://github.com/", mirror),))
        st = gc.clone("https://github.com/owner/example-pack", tmp_path / "pack")
        assert st.commit == upstream.commits[-1]
        with pytest.raises(NetworkBlocked):
            gc.clone("https://gitlab.com/owner/example-pack", tmp_path / "other")
    assert not (tmp_path / "other").exists()


# --- offline and hostile input ------------------------------------------------------------
def test_offline_refuses_remote_before_any_socket_and_allows_local(
    upstream: RepoInfo, tmp_path: Path, http_server, socket_audit_log
):
    gc = client(NetworkMode.OFFLINE)
    for url in (
        http_server.url("/git/example-pack"),
        "https://github.com/owner/example-pack",
        "git@github.com:owner/example-pack.git",
        "ssh://git@example.com/x.git",
    ):
        with pytest.raises(OfflineModeEnabled) as exc:
            gc.clone(url, tmp_path / "pack")
        assert "git clone" in exc.value.hint and "file://" in exc.value.hint
    assert socket_audit_log.inet_connects() == []
    assert http_server.requests == []
    assert not (tmp_path / "pack").exists()
    assert gc.clone(upstream.url, tmp_path / "a").commit == upstream.commits[-1]
    assert gc.clone(str(upstream.path), tmp_path / "b").commit == upstream.commits[-1]
    with pytest.raises(OfflineModeEnabled):  # a clone whose remote is online cannot update
        GitClient(NetworkGate(NetworkPolicy(mode=NetworkMode.OFFLINE))).update(_with_remote(tmp_path / "a"))
    assert socket_audit_log.inet_connects() == []


def _with_remote(repo: Path) -> Path:
    git(repo, "remote", "set-url", "origin", "https://github.com/owner/example-pack")
    return repo


HOSTILE_URLS = [
    "--upload-pack=touch /tmp/cm-pwned",
    "-oProxyCommand=touch /tmp/cm-pwned",
    "ext::sh -c touch% /tmp/cm-pwned",
    "fd::17",
    "ssh://-oProxyCommand=touch%20/tmp/cm-pwned/x",
    "ssh://-user@host/x",
    "-host:path",
    "git@-oProxyCommand=x:repo",
    "ftp://example.com/repo.git",
    "htps://github.com/owner/repo",
    "https://github.com/owner/repo\n--upload-pack=x",
    "",
    "   ",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_urls_refused_before_git_runs(url: str, tmp_path: Path, socket_audit_log):
    marker = Path("/tmp/cm-pwned")
    with pytest.raises((InvalidGitUrl, NetworkBlocked)) as exc:
        client().clone(url, tmp_path / "pack")
    assert exc.value.code in ("git_url_invalid", "network_blocked")
    assert not (tmp_path / "pack").exists() and not marker.exists()
    assert socket_audit_log.inet_connects() == []


@pytest.mark.parametrize(
    "ref",
    ["--upload-pack=x", "-b", "a..b", "a b", "x^{tree}", "a:b", ".hidden", "v1.lock", "@{-1}", "", "a/", "refs//x"],
)
def test_hostile_refs_refused(ref: str, upstream: RepoInfo, tmp_path: Path):
    with pytest.raises(InvalidGitRef):
        client().clone(upstream.url, tmp_path / "pack", ref=ref or " ")
    with pytest.raises(InvalidGitRef):
        check_ref(ref)
    assert not (tmp_path / "pack").exists()


def test_check_functions_accept_ordinary_input():
    for url in (
        "https://github.com/o/r",
        "http://127.0.0.1:8080/r.git",
        "ssh://git@host/o/r.git",
        "git@github.com:o/r.git",
        "git://host/r",
        "file:///srv/r",
        "/srv/repos/r",
        "C:\\repos\\r",
    ):
        assert check_remote_url(url) == url
    for ref in ("main", "v1.2.3", "feature/x-y_z", "0123abcd", "release-2024.01"):
        assert check_ref(ref) == ref


def test_missing_local_repository_is_not_found(tmp_path: Path):
    with pytest.raises(NotFound):
        client().clone(str(tmp_path / "nope"), tmp_path / "pack")


def test_git_unavailable_names_git_exe(upstream: RepoInfo, tmp_path: Path):
    gc = GitClient(NetworkGate(NetworkPolicy()), git_exe=str(tmp_path / "no-such-git"))
    with pytest.raises(GitUnavailable) as exc:
        gc.clone(upstream.url, tmp_path / "pack")
    assert "git_exe" in exc.value.hint and exc.value.http_status == 503
    assert not (tmp_path / "pack").exists()
    broken = tmp_path / "broken-git"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(GitUnavailable):
        GitClient(NetworkGate(NetworkPolicy()), git_exe=str(broken)).version()


# --- update / checkout -----------------------------------------------------------------------
@pytest.fixture
def cloned(upstream: RepoInfo, tmp_path: Path) -> Path:
    dest = tmp_path / "pack"
    client().clone(upstream.url, dest)
    return dest


def test_update_refuses_local_changes(upstream: RepoInfo, cloned: Path):
    (cloned / "nodes.py").write_text("mine\n")
    upstream.commit("fourth", {"nodes.py": "VERSION = 4\n"})
    with pytest.raises(GitLocalChanges) as exc:
        client().update(cloned)
    assert exc.value.details["files"] == ["nodes.py"]
    assert (cloned / "nodes.py").read_text() == "mine\n"


def test_update_refuses_untracked_file_that_would_be_overwritten(upstream: RepoInfo, cloned: Path):
    (cloned / "new.py").write_text("mine\n")
    upstream.commit("adds new.py", {"new.py": "theirs\n"})
    with pytest.raises(GitLocalChanges):
        client().update(cloned)
    assert (cloned / "new.py").read_text() == "mine\n"


def test_update_refuses_divergence_and_reports_ahead(upstream: RepoInfo, cloned: Path):
    git(cloned, "commit", "-q", "--allow-empty", "-m", "local")
    assert client().update(cloned).status == "ahead"
    upstream.commit("remote", {"nodes.py": "VERSION = 5\n"})
    with pytest.raises(GitDiverged):
        client().update(cloned)


def test_update_detached_head_refused(upstream: RepoInfo, cloned: Path):
    client().checkout(cloned, "v1.0.0")
    with pytest.raises(GitDetachedHead):
        client().update(cloned)


def test_checkout_commit_tag_branch_and_missing(upstream: RepoInfo, cloned: Path):
    gc = client()
    assert gc.checkout(cloned, upstream.commits[0]).commit == upstream.commits[0]
    st = gc.checkout(cloned, "dev")  # only a remote branch: a tracking branch is made
    assert st.branch == "dev" and st.commit == upstream.dev_commit
    st = gc.checkout(cloned, "main")
    assert st.branch == "main" and st.commit == upstream.commits[-1]
    with pytest.raises(NotFound):
        gc.checkout(cloned, "v7.7.7")
    assert set(gc.list_tags(cloned)) == {"v1.0.0", "v1.1.0"}


def test_checkout_refuses_local_changes(upstream: RepoInfo, cloned: Path):
    (cloned / "nodes.py").write_text("mine\n")
    with pytest.raises(GitLocalChanges):
        client().checkout(cloned, "v1.0.0")
    assert (cloned / "nodes.py").read_text() == "mine\n"


def test_state_of_non_repository_is_coded(tmp_path: Path):
    with pytest.raises(GitError):
        client().state(tmp_path)


def test_progress_listener_errors_do_not_break_the_clone(upstream: RepoInfo, tmp_path: Path):
    def listener(line: str) -> None:
        raise RuntimeError("listener bug")

    assert client().clone(upstream.url, tmp_path / "pack", progress=listener).commit == upstream.commits[-1]


def test_git_exe_works_when_git_is_not_on_path(upstream: RepoInfo, tmp_path: Path):
    """GitPython cannot even be imported without git on PATH; the configured git_exe still works."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from manager.git import GitClient\n"
        "from manager.errors import GitUnavailable\n"
        "from manager.network import NetworkGate, NetworkPolicy\n"
        f"gc = GitClient(NetworkGate(NetworkPolicy()), git_exe={shutil.which('git')!r})\n"
        f"print(gc.clone({upstream.url!r}, {str(tmp_path / 'pack')!r}).commit)\n"
        "try:\n"
        f"    GitClient(NetworkGate(NetworkPolicy())).clone({upstream.url!r}, {str(tmp_path / 'other')!r})\n"
        "except GitUnavailable as exc:\n"
        "    print(exc.code)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(tmp_path / "empty-bin"), "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [upstream.commits[-1], "git_unavailable"]


def test_stalled_remote_is_killed_after_the_timeout(tmp_path: Path):
    import socket
    import time

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        gc = GitClient(NetworkGate(NetworkPolicy()), network_timeout=1.0)
        start = time.monotonic()
        with pytest.raises(GitError) as exc:
            gc.clone(f"git://127.0.0.1:{port}/pack", tmp_path / "pack")
        assert time.monotonic() - start < 10
    assert "killed after" in exc.value.details["output_tail"]
    assert not (tmp_path / "pack").exists()
