"""Local git state without a network gate: the records ``GitClient`` returns, the environment
every git command runs with, and ``run_local`` for read-only commands in a local repository.
Re-exported by ``manager.git``.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .procs import child_launch, kill_tree
from .records import _Record

__all__ = ["GitState", "UpdateResult", "run_local", "set_origin_url"]

_LOCAL_TIMEOUT = 120.0
# no prompt ever (a task would hang), only these transports, and English output for the hints
_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GCM_INTERACTIVE": "never",
    "GIT_PROTOCOL_FROM_USER": "0",
    "GIT_ALLOW_PROTOCOL": "https:http:ssh:git:file",
    "LC_ALL": "C",
    "LANGUAGE": "C",
}


@dataclass(frozen=True)
class GitState(_Record):
    """Where a checkout stands, read from ``.git`` on disk."""

    path: str
    commit: str
    branch: str  # "" when detached
    detached: bool
    remote_url: str


@dataclass(frozen=True)
class UpdateResult(_Record):
    """Outcome of ``GitClient.update``: ``status`` is updated | up_to_date | ahead."""

    path: str
    branch: str
    before: str
    after: str
    status: str

    @property
    def updated(self) -> bool:
        return self.status == "updated"


def run_local(
    git_exe: str, repo: Path, *args: str, timeout: float = _LOCAL_TIMEOUT, stdin: bytes | None = None
) -> tuple[int, bytes]:
    """A read-only git command in a local repository, for callers that hold no network gate
    (restore preflight, the host's ComfyUI commit): exit code and stdout; ``(1, b"")`` when git
    cannot run or overruns ``timeout``. ``stdin`` is fed to it (``cat-file --batch`` questions).
    Never give it a command that reaches a remote."""
    try:
        argv, spawn = child_launch([git_exe, "-C", str(repo), *args], must_exist=True)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **_GIT_ENV},
            **spawn,
        )
    except OSError:
        return 1, b""
    try:
        out, _ = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        proc.communicate()
        return 1, b""
    except BaseException:  # Ctrl-C: leave no git behind
        kill_tree(proc)
        raise
    return proc.returncode, out


_PLAIN_VALUE = re.compile(r"^[^\s\"\\;#\x00-\x1f][^\"\\;#\x00-\x1f]*(?<!\s)$")


def set_origin_url(repo: Path, url: str) -> bool:
    """Write ``url`` as ``remote.origin.url`` of the fresh clone in ``repo`` without starting git
    (``git clone`` wrote exactly one url line in its ``[remote "origin"]`` section); False, changing
    nothing, when the file is not that simple or ``url`` would need quoting: the caller runs
    ``git remote set-url`` then."""
    if not _PLAIN_VALUE.match(url):
        return False
    config = repo / ".git" / "config"
    try:
        lines = config.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError):
        return False
    section, hits = "", []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        elif section == '[remote "origin"]' and re.match(r"^\s*url\s*=", line):
            hits.append(i)
    if len(hits) != 1:
        return False
    lines[hits[0]] = f"\turl = {url}\n"
    tmp = config.with_name(f"config.{os.getpid()}.tmp")
    try:
        tmp.write_text("".join(lines), encoding="utf-8")
        os.replace(tmp, config)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True
