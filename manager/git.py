"""Git work for node packs: clone, fetch, fast-forward update, checkout, tags.

Every remote URL is checked here (no option injection, no ``ext::``-style helpers, only
https/http/ssh/git/file and local paths) and then passes the network gate *before* git is
started, so offline mode refuses without a socket. Commands run through GitPython's
``Git.execute`` (imported on first use: importing GitPython runs git) with prompts off,
``protocol.ext.allow=never``, an allow-list of transports, and ``--`` before URLs and paths.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import (
    GitDetachedHead,
    GitDiverged,
    GitError,
    GitLocalChanges,
    GitUnavailable,
    InvalidGitRef,
    NotFound,
    OfflineModeEnabled,
)
from .git_hints import hint_for_stderr
from .git_local import _GIT_ENV, _LOCAL_TIMEOUT, GitState, UpdateResult, run_local, set_origin_url
from .git_mirror import at_source_head, find_mirror
from .git_refs import _COMMIT_RE, check_ref, check_remote_url
from .inventory import parse_git_config, read_git_meta
from .network import NetworkGate, redact_url
from .procs import child_launch, kill_tree

__all__ = ["GitClient", "GitState", "UpdateResult", "check_remote_url", "check_ref", "run_local"]

Progress = Callable[[str], None]
_NETWORK_TIMEOUT = 900.0
_TAIL_LINES = 20
_NEUTRAL_DIR = Path(os.path.abspath(os.sep))  # cwd for commands that need no repository


def _emit(progress: Progress | None, line: str) -> None:
    if progress is None:
        return
    try:
        progress(line)
    except Exception:  # a broken listener must not stall git's stderr pipe
        logging.getLogger("offline_manager.git").exception("git progress callback failed")


@dataclass(frozen=True)
class _Result:
    rc: int
    out: str
    err_tail: str


class GitClient:
    """Git operations for one ``Manager``: holds the gate and the git executable; no globals."""

    def __init__(
        self,
        gate: NetworkGate,
        *,
        git_exe: str = "",
        network_timeout: float = _NETWORK_TIMEOUT,
        local_timeout: float = _LOCAL_TIMEOUT,
        logger: logging.Logger | None = None,
        mirror_root: Path | None = None,  # bare repos from bundles, preferred (manager/git_mirror.py)
    ):
        self.gate = gate
        self.mirror_root = mirror_root
        self.git_exe = git_exe or "git"
        self.network_timeout = network_timeout
        self.local_timeout = local_timeout
        self.log = logger or logging.getLogger("offline_manager.git")
        self._version: str | None = None

    # -- running git ------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        return dict(_GIT_ENV)

    def _argv(self, args: Sequence[str]) -> list[str]:
        return [
            self.git_exe,
            "-c",
            "protocol.ext.allow=never",
            "-c",
            "protocol.fd.allow=never",
            "-c",
            "core.askPass=",
            *args,
        ]

    def _spawn(self, argv: list[str], cwd: Path) -> tuple[Any, subprocess.Popen[bytes]]:
        # own process group (a timeout stops git's helpers too), and killed with us so an
        # orphan never writes on into a staging folder the next operation is cleaning
        try:
            from git.cmd import Git
            from git.exc import GitCommandNotFound
        except ImportError:  # GitPython finds no git on PATH at import; git_exe may still work
            pass
        else:
            try:
                launched, spawn = child_launch(argv, must_exist=True)
                handle = Git(str(cwd)).execute(launched, as_process=True, env=self._env(), **spawn)
            except FileNotFoundError as exc:
                raise self._unavailable(str(exc)) from exc
            except GitCommandNotFound as exc:
                raise self._unavailable(str(exc)) from exc
            return handle, handle.proc
        try:
            launched, spawn = child_launch(argv, must_exist=True)
            proc = subprocess.Popen(
                launched,
                cwd=cwd,
                env={**os.environ, **self._env()},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                **spawn,
            )
        except OSError as exc:
            raise self._unavailable(str(exc)) from exc
        return proc, proc

    def _unavailable(self, why: str) -> GitUnavailable:
        return GitUnavailable(
            f"git could not be run ({self.git_exe!r}): {why}",
            hint=f"Install git, or set git_exe in config.ini to the full path of git (now: {self.git_exe!r}).",
            details={"git_exe": self.git_exe},
        )

    def _run(
        self, args: Sequence[str], cwd: Path, *, progress: Progress | None = None, timeout: float | None = None
    ) -> _Result:
        """Run git; stderr lines (split on CR and LF) go to ``progress``; never raises on exit code."""
        argv = self._argv(args)
        handle, proc = self._spawn(argv, cwd)
        tail: list[str] = []
        timed_out = threading.Event()

        def pump() -> None:
            buf = b""
            assert proc.stderr is not None
            while True:
                chunk = proc.stderr.read1(4096) if hasattr(proc.stderr, "read1") else proc.stderr.read(4096)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = re.split(rb"[\r\n]", buf)
                for raw in lines:
                    self._line(raw, tail, progress)
            if buf:
                self._line(buf, tail, progress)

        def kill() -> None:
            timed_out.set()
            kill_tree(proc)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timer = threading.Timer(timeout or self.local_timeout, kill)
        timer.start()
        try:
            out = proc.stdout.read() if proc.stdout is not None else b""
            proc.wait()
            reader.join()
        except BaseException:  # Ctrl-C or a failing read: leave no git behind
            kill_tree(proc)
            raise
        finally:
            timer.cancel()
            del handle
        if timed_out.is_set():
            tail.append(f"killed after {timeout or self.local_timeout:.0f} s")
        return _Result(
            proc.returncode if not timed_out.is_set() else -9, out.decode("utf-8", "replace"), "\n".join(tail)
        )

    @staticmethod
    def _line(raw: bytes, tail: list[str], progress: Progress | None) -> None:
        line = raw.decode("utf-8", "replace").strip()
        if not line:
            return
        if tail and tail[-1].split(":", 1)[0] == line.split(":", 1)[0] and "%" in line:
            tail[-1] = line  # keep one line per progress phase
        else:
            tail.append(line)
            del tail[:-_TAIL_LINES]
        _emit(progress, line)

    def _check(self, res: _Result, what: str, *, details: dict[str, Any] | None = None) -> str:
        if res.rc != 0:
            raise GitError(
                f"git {what} failed (exit {res.rc}): {res.err_tail.splitlines()[-1] if res.err_tail else ''}",
                hint=hint_for_stderr(res.err_tail),
                details={"step": what, "exit_code": res.rc, "output_tail": res.err_tail, **(details or {})},
            )
        return res.out

    def _git(self, repo: Path, *args: str, timeout: float | None = None) -> _Result:
        return self._run(args, repo, timeout=timeout)

    # -- detection --------------------------------------------------------------------
    def version(self) -> str:
        """``git --version`` of the configured executable; raises ``GitUnavailable``."""
        if self._version is None:
            res = self._run(["--version"], _NEUTRAL_DIR, timeout=30)
            if res.rc != 0 or not res.out.startswith("git version"):
                raise self._unavailable(res.err_tail or res.out or f"exit {res.rc}")
            self._version = res.out.strip()[len("git version ") :]
        return self._version

    # -- URLs -------------------------------------------------------------------------
    def resolve_remote(self, url: str) -> str:
        """Checked, gated source for git: a remote URL (mirror map applied) or an absolute local path.

        Runs before git is started, so offline mode and refused URLs open no socket at all.
        """
        checked = check_remote_url(url)
        mirrored = find_mirror(self.mirror_root, checked)  # any mode, before the gate: a local copy
        if mirrored is not None:
            return str(mirrored)
        try:
            final = self.gate.decide(checked, "git")
        except OfflineModeEnabled as exc:
            shown = redact_url(checked)
            raise OfflineModeEnabled(
                f"offline mode: refused to reach git remote {shown}",
                hint=(
                    f"Offline, git works only with local repositories. On a machine with network run "
                    f"`git clone {shown}`, copy the folder here and install from its path or a file:// "
                    "URL; or set network_mode in config.ini."
                ),
                details=exc.details,
            ) from exc
        if final != checked:
            final = check_remote_url(final)
        if not self.gate.is_local(final):
            return final
        path = self.gate.local_path(final)
        if not path.is_absolute():
            path = path.absolute()
        if not path.exists():
            raise NotFound(
                f"local git repository {str(path)!r} does not exist",
                hint="Check the path; a file:// URL needs three slashes (file:///abs/path).",
                details={"path": str(path)},
            )
        return final if final.lower().startswith("file:") else str(path)

    # -- clone ------------------------------------------------------------------------
    def clone(
        self,
        url: str,
        dest: str | os.PathLike[str],
        *,
        ref: str | None = None,
        shallow: bool | None = None,
        progress: Progress | None = None,
    ) -> GitState:
        """Clone ``url`` into ``dest`` (absent or empty) at ``ref`` (branch, tag or commit).

        ``shallow=None`` clones with ``--depth 1`` when that is safe: a remote URL and no commit
        pinned. On failure a ``dest`` this call created is removed.
        """
        source = self.resolve_remote(url)
        ref = check_ref(ref) if ref else None
        self.version()
        dest = Path(dest).absolute()
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise GitError(
                f"clone destination {str(dest)!r} is not empty",
                hint="Clone into a new staging folder.",
                details={"dest": str(dest)},
            )
        is_commit = bool(ref and _COMMIT_RE.match(ref))
        if shallow is None:
            shallow = not is_commit and not self.gate.is_local(source)
        args = ["clone", "--progress", "--no-recurse-submodules"]
        if shallow and not is_commit:
            args += ["--depth", "1"]
        if ref and not is_commit:
            args += ["--branch", ref]
        # a pinned commit that is the source's HEAD: the plain clone checks it out (one git run)
        at_head = is_commit and at_source_head(source, ref or "")
        if is_commit and not at_head:
            args.append("--no-checkout")
        args += ["--", source, str(dest)]
        created = not dest.exists()
        dest.parent.mkdir(parents=True, exist_ok=True)
        shown = redact_url(source)
        _emit(progress, f"cloning {shown}" + (f" at {ref}" if ref else ""))
        try:
            res = self._run(args, dest.parent, progress=progress, timeout=self.network_timeout)
            if res.rc and "--depth" in args and "support shallow" in res.err_tail:  # a dumb-HTTP mirror
                if created:
                    shutil.rmtree(dest, ignore_errors=True)
                at = args.index("--depth")
                full = args[:at] + args[at + 2 :]
                res = self._run(full, dest.parent, progress=progress, timeout=self.network_timeout)
            self._check(res, "clone", details={"url": shown, "ref": ref or ""})
            if is_commit:
                assert ref is not None
                self._detach(dest, ref, at_head, shown)
            if source != url and find_mirror(self.mirror_root, url) is not None:  # keep the public URL
                if not set_origin_url(dest, url):
                    self._git(dest, "remote", "set-url", "origin", url)
        except BaseException:
            if created and dest.exists():
                shutil.rmtree(dest, onerror=self._log_rm_error)
            raise
        return self.state(dest)

    def _detach(self, dest: Path, ref: str, at_head: bool, shown: str) -> None:
        """HEAD detached at ``ref``: written directly when the clone checked that commit out
        (what ``checkout --detach`` would leave), else checked out by git."""
        if at_head:
            try:
                commit = read_git_meta(dest).commit
            except (OSError, ValueError):
                commit = ""
            if commit and commit.lower() == ref.lower():
                (dest / ".git" / "HEAD").write_text(f"{commit}\n", encoding="ascii")  # a fresh clone in staging
                return
        self._check(
            self._git(dest, "checkout", "-q", "--detach", ref, "--"), "checkout", details={"url": shown, "ref": ref}
        )

    def _log_rm_error(self, func: Any, path: str, exc: Any) -> None:
        self.log.warning("could not remove %s after a failed clone: %s", path, exc)

    # -- inspection -------------------------------------------------------------------
    def state(self, repo: str | os.PathLike[str]) -> GitState:
        """Commit, branch and remote of a checkout, read from disk (no process)."""
        try:
            meta = read_git_meta(repo)
        except (OSError, ValueError) as exc:
            raise GitError(
                f"{str(repo)!r} is not a readable git checkout: {exc}",
                hint="Reinstall the pack, or check the folder's .git metadata.",
                details={"path": str(repo)},
            ) from exc
        return GitState(
            path=str(Path(repo)),
            commit=meta.commit,
            branch=meta.branch,
            detached=meta.detached,
            remote_url=meta.remote_url,
        )

    def local_changes(self, repo: str | os.PathLike[str]) -> list[str]:
        """Tracked files changed in the working tree or index (untracked files do not count)."""
        out = self._check(self._git(Path(repo), "status", "--porcelain=v1", "--untracked-files=no", "-z"), "status")
        return [item[3:] for item in out.split("\0") if len(item) > 3]

    def is_shallow(self, repo: str | os.PathLike[str]) -> bool:
        """True for a shallow clone (``git clone --depth N``): its history stops at a boundary."""
        try:
            return (Path(read_git_meta(repo).git_dir) / "shallow").exists()
        except (OSError, ValueError):
            return False

    def default_branch(self, repo: str | os.PathLike[str]) -> str:
        """The branch a detached checkout would go back to, from local refs only (no fetch): the
        remote's HEAD (``refs/remotes/<remote>/HEAD``, set by clone), else a remote-tracking or
        local ``main``/``master``; ``""`` when none is known."""
        repo = Path(repo)
        remote = self._remote_name(repo)
        res = self._git(repo, "symbolic-ref", "-q", f"refs/remotes/{remote}/HEAD")
        prefix = f"refs/remotes/{remote}/"
        if res.rc == 0 and res.out.strip().startswith(prefix):
            return res.out.strip()[len(prefix) :]
        for name in ("main", "master"):
            if self._rev(repo, f"refs/remotes/{remote}/{name}") or self._rev(repo, f"refs/heads/{name}"):
                return name
        return ""

    def branch_head(self, repo: str | os.PathLike[str], branch: str, *, local_only: bool = False) -> str:
        """The commit of a local branch, else (unless ``local_only``) of the remote-tracking one;
        ``""`` when neither exists."""
        repo = Path(repo)
        local = self._rev(repo, f"refs/heads/{branch}")
        if local or local_only:
            return local
        return self._rev(repo, f"refs/remotes/{self._remote_name(repo)}/{branch}")

    def knows(self, repo: str | os.PathLike[str], ref: str) -> bool:
        """True when ``ref`` (branch, tag or commit) is known locally, so checking it out needs no fetch."""
        try:
            ref = check_ref(ref)
        except InvalidGitRef:
            return False
        repo = Path(repo)
        return self._known(repo, ref, self._remote_name(repo))

    def contains(self, repo: str | os.PathLike[str], commit: str, ref: str) -> bool:
        """True when ``commit`` is in the history of ``ref`` (moving to ``ref`` loses no commit)."""
        return bool(commit) and bool(ref) and self._is_ancestor(Path(repo), commit, ref)

    def restore_head(
        self, repo: str | os.PathLike[str], commit: str, *, branch: str = "", moved: str = "", moved_was: str = ""
    ) -> None:
        """Put a checkout back where it was (the rollback of a failed update): ``branch`` checked
        out at ``commit``, or (``branch`` empty) a detached HEAD at ``commit``. ``moved`` is a
        branch the update checked out from a detached HEAD: reset to ``moved_was``, or deleted
        when the update created it."""
        repo = Path(repo)
        where = {"path": str(repo), "commit": commit}
        if branch:
            self._check(self._git(repo, "checkout", "-q", "-B", branch, commit, "--"), "checkout", details=where)
        else:
            self._check(self._git(repo, "checkout", "-q", "--detach", commit, "--"), "checkout", details=where)
        self._check(self._git(repo, "reset", "-q", "--hard", commit), "reset", details=where)
        if moved and not branch:
            if moved_was:
                self._check(
                    self._git(repo, "update-ref", f"refs/heads/{moved}", moved_was), "update-ref", details=where
                )
            else:
                self._check(self._git(repo, "branch", "-q", "-D", moved), "branch -D", details=where)

    def list_tags(self, repo: str | os.PathLike[str]) -> list[str]:
        """Tags of a local checkout, newest first."""
        out = self._check(
            self._git(Path(repo), "for-each-ref", "--sort=-creatordate", "--format=%(refname:strip=2)", "refs/tags"),
            "for-each-ref",
        )
        return [line for line in out.splitlines() if line]

    def remote_refs(self, url: str) -> dict[str, str]:
        """``{ref name: commit}`` of a remote's branches and tags (``git ls-remote``, gated)."""
        source = self.resolve_remote(url)
        self.version()
        out = self._check(
            self._run(["ls-remote", "--heads", "--tags", "--", source], _NEUTRAL_DIR, timeout=self.network_timeout),
            "ls-remote",
            details={"url": redact_url(source)},
        )
        refs: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name.endswith("^{}"):  # peeled tag: the commit it points to wins
                refs[name[:-3]] = sha
            else:
                refs.setdefault(name, sha)
        return refs

    def _rev(self, repo: Path, expr: str) -> str:
        res = self._git(repo, "rev-parse", "--verify", "-q", "--end-of-options", expr)
        return res.out.strip() if res.rc == 0 else ""

    def _is_ancestor(self, repo: Path, a: str, b: str) -> bool:
        res = self._git(repo, "merge-base", "--is-ancestor", a, b)
        if res.rc not in (0, 1):
            self._check(res, "merge-base")
        return res.rc == 0

    # -- fetch / update ---------------------------------------------------------------
    def fetch(
        self,
        repo: str | os.PathLike[str],
        *,
        refspecs: Sequence[str] | None = None,
        tags: bool = True,
        unshallow: bool = False,
        progress: Progress | None = None,
    ) -> str:
        """Fetch the pack's remote (through the gate) into ``refs/remotes/<remote>/``; returns the URL used."""
        repo = Path(repo)
        meta = self.state(repo)
        if not meta.remote_url:
            raise GitError(
                f"{str(repo)!r} has no remote to fetch from",
                hint="Reinstall the pack from its repository URL.",
                details={"path": str(repo)},
            )
        source = self.resolve_remote(meta.remote_url)
        self.version()
        remote = self._remote_name(repo)
        args = ["fetch", "--progress", "--no-recurse-submodules"]
        args.append("--tags" if tags else "--no-tags")
        if unshallow and (Path(read_git_meta(repo).git_dir) / "shallow").exists():
            args.append("--unshallow")
        args += ["--", source, *(refspecs or [f"+refs/heads/*:refs/remotes/{remote}/*"])]
        self._check(
            self._run(args, repo, progress=progress, timeout=self.network_timeout),
            "fetch",
            details={"url": redact_url(source)},
        )
        return source

    def _remote_name(self, repo: Path) -> str:
        return read_git_meta(repo).remote_name or "origin"

    def _upstream_branch(self, repo: Path, branch: str) -> str:
        meta = read_git_meta(repo)
        try:
            config = parse_git_config((Path(meta.git_dir) / "config").read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            config = {}
        merge = (config.get(f"branch.{branch}.merge") or [""])[0]
        return merge[len("refs/heads/") :] if merge.startswith("refs/heads/") else branch

    def update(self, repo: str | os.PathLike[str], *, progress: Progress | None = None) -> UpdateResult:
        """Fetch and fast-forward the current branch.

        Refuses with ``git_local_changes`` (modified tracked files, or untracked files the update
        would overwrite), ``git_diverged`` (local and remote both moved) or ``git_detached_head``.
        """
        repo = Path(repo)
        st = self.state(repo)
        if st.detached or not st.branch:
            raise GitDetachedHead(
                f"{repo.name} is not on a branch (HEAD at {st.commit[:12]})",
                details={"path": str(repo), "commit": st.commit},
            )
        self.version()
        changed = self.local_changes(repo)
        if changed:
            raise GitLocalChanges(
                f"{repo.name} has local changes in {len(changed)} file(s): " + ", ".join(changed[:5]),
                details={"path": str(repo), "files": changed[:50]},
            )
        upstream = self._upstream_branch(repo, st.branch)
        remote = self._remote_name(repo)
        tracking = f"refs/remotes/{remote}/{upstream}"
        self.fetch(repo, refspecs=[f"+refs/heads/{upstream}:{tracking}"], tags=False, progress=progress)
        target = self._rev(repo, tracking)
        before = st.commit
        if not target:
            raise GitError(
                f"remote branch {upstream!r} of {repo.name} not found after fetch",
                hint="The branch was deleted upstream; switch the pack to another version.",
                details={"path": str(repo), "branch": upstream},
            )
        if target == before:
            return UpdateResult(str(repo), st.branch, before, before, "up_to_date")
        if self._is_ancestor(repo, target, before):
            return UpdateResult(str(repo), st.branch, before, before, "ahead")
        if not self._is_ancestor(repo, before, target):
            raise GitDiverged(
                f"{repo.name}: local branch {st.branch!r} and {remote}/{upstream} have diverged",
                details={"path": str(repo), "local": before, "remote": target},
            )
        res = self._git(repo, "merge", "--ff-only", "-q", target)
        if res.rc != 0 and "would be overwritten" in res.err_tail:
            raise GitLocalChanges(
                f"{repo.name}: untracked files would be overwritten by the update",
                hint="Move the files listed in the details out of the pack folder, then retry.",
                details={"path": str(repo), "output_tail": res.err_tail},
            )
        self._check(res, "merge --ff-only", details={"path": str(repo)})
        return UpdateResult(str(repo), st.branch, before, self.state(repo).commit, "updated")

    # -- checkout ---------------------------------------------------------------------
    def checkout(self, repo: str | os.PathLike[str], ref: str, *, progress: Progress | None = None) -> GitState:
        """Switch to a branch (tracking the remote one if only that exists), tag or commit.

        Fetches (through the gate, deepening a shallow clone) only when ``ref`` is not known locally.
        """
        repo = Path(repo)
        ref = check_ref(ref)
        self.state(repo)
        self.version()
        changed = self.local_changes(repo)
        if changed:
            raise GitLocalChanges(
                f"{repo.name} has local changes in {len(changed)} file(s): " + ", ".join(changed[:5]),
                details={"path": str(repo), "files": changed[:50]},
            )
        remote = self._remote_name(repo)
        if not self._known(repo, ref, remote):
            self.fetch(repo, unshallow=True, progress=progress)
            if not self._known(repo, ref, remote):
                raise NotFound(
                    f"{ref!r} is not a branch, tag or commit of {repo.name}",
                    hint="List the pack's versions (tags) and pick one, or use nightly.",
                    details={"path": str(repo), "ref": ref},
                )
        if self._rev(repo, f"refs/heads/{ref}"):
            args = ["checkout", "-q", ref, "--"]
        elif self._rev(repo, f"refs/remotes/{remote}/{ref}"):
            args = ["checkout", "-q", "-b", ref, "--track", f"{remote}/{ref}", "--"]
        else:
            args = ["checkout", "-q", "--detach", self._rev(repo, f"{ref}^{{commit}}"), "--"]
        self._check(self._git(repo, *args), "checkout", details={"path": str(repo), "ref": ref})
        return self.state(repo)

    def _known(self, repo: Path, ref: str, remote: str) -> bool:
        return bool(self._rev(repo, f"{ref}^{{commit}}") or self._rev(repo, f"refs/remotes/{remote}/{ref}"))
