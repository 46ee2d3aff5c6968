"""Children started by the Manager die with it: no orphaned git keeps writing after a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_child_is_killed_when_the_manager_process_is_sigkilled(tmp_path: Path):
    script = (
        f"import sys, subprocess; sys.path.append({str(REPO)!r})\n"
        "from manager.procs import child_kwargs\n"
        "p = subprocess.Popen(['sleep', '60'], **child_kwargs())\n"
        "print(p.pid, flush=True)\n"
        "p.wait()\n"
    )
    manager = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(manager.stdout.readline())
    os.kill(child, 0)  # alive while the Manager lives
    os.kill(manager.pid, signal.SIGKILL)
    manager.wait()
    _assert_gone(child, "the child outlived the SIGKILLed Manager")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_local_git_that_overruns_is_stopped_with_its_helpers(tmp_path: Path):
    """``git.run_local`` stops the whole group at its timeout (``procs.kill_tree``): no helper lingers."""
    from manager.git import run_local

    pid_file = tmp_path / "helper.pid"
    fake_git = tmp_path / "git"
    fake_git.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pid_file}\nwait\n")
    fake_git.chmod(0o755)
    started = time.monotonic()
    assert run_local(str(fake_git), tmp_path, "status", timeout=0.5) == (1, b"")
    assert time.monotonic() - started < 10
    helper = int(pid_file.read_text())
    _assert_gone(helper, "the helper outlived the timeout")


def _assert_gone(pid: int, failure: str, within: float = 5.0) -> None:
    """Wait until ``pid`` is gone (a zombie reaped by init counts as gone); kill it and fail if not."""
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().split()[2] == "Z":
                return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(failure)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_a_local_git_is_started_without_a_full_fork_and_dies_with_the_manager(tmp_path: Path):
    """git runs go through ``procs.child_launch`` (setpriv --pdeathsig where util-linux has it, so
    Python spawns with vfork, no preexec_fn): the git still dies with a SIGKILLed Manager."""
    from manager.git import run_local
    from manager.procs import child_launch

    argv, kwargs = child_launch(["git", "--version"], must_exist=True)
    if argv[0] == "git":  # no setpriv with --pdeathsig here: the preexec_fn fallback
        assert "preexec_fn" in kwargs
    else:
        assert argv[-3:] == ["--", "git", "--version"] and "preexec_fn" not in kwargs
    assert run_local(str(tmp_path / "no-such-git"), tmp_path, "status") == (1, b"")  # not a setpriv 127
    fake_git = tmp_path / "git"
    script = (
        f"import sys; sys.path.append({str(REPO)!r})\n"
        "from manager.git import run_local\n"
        f"run_local({str(fake_git)!r}, __import__('pathlib').Path({str(tmp_path)!r}), 'status', timeout=60)\n"
    )
    # run_local reads git's stdout only at the end: the pid comes through a file
    fake_git.write_text(f"#!/bin/sh\necho $$ > {tmp_path / 'git.pid'}\nexec sleep 60\n")
    fake_git.chmod(0o755)
    manager = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 10
        while not (tmp_path / "git.pid").exists() or not (tmp_path / "git.pid").read_text().strip():
            assert time.time() < deadline, "the git never started"
            time.sleep(0.02)
        child = int((tmp_path / "git.pid").read_text())
        os.kill(child, 0)  # alive while the Manager lives
    finally:
        os.kill(manager.pid, signal.SIGKILL)
        manager.wait()
    _assert_gone(child, "the git outlived the SIGKILLed Manager")
