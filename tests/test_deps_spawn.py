"""uv/pip children are started without a full fork of the Manager, and still die with it.

``procs.child_launch`` puts ``setpriv --pdeathsig KILL`` in front of the command where util-linux
has it (Python then spawns with vfork), else falls back to ``child_kwargs``' ``preexec_fn``.
Either way a SIGKILLed Manager leaves no installer running, and a timeout stops the whole tree.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manager.deps.backends.base import RunOptions, run_streaming
from manager.procs import child_launch

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")


def _gone(pid: int, why: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(")")[-1].split()[0] == "Z":
                    return  # a zombie is dead: only its parent has not reaped it
        except FileNotFoundError:
            return
        time.sleep(0.05)
    pytest.fail(why)


def test_launch_uses_setpriv_when_it_has_pdeathsig():
    argv, kwargs = child_launch(["uv", "--version"])
    setpriv = shutil.which("setpriv")
    has_option = (
        setpriv is not None
        and "--pdeathsig" in subprocess.run([setpriv, "--help"], capture_output=True, text=True, timeout=10).stdout
    )
    if has_option:
        assert argv == [setpriv, "--pdeathsig", "KILL", "--", "uv", "--version"]
        assert kwargs == {"start_new_session": True}  # no preexec_fn: Python may use vfork
    else:
        assert argv == ["uv", "--version"] and "preexec_fn" in kwargs


def test_an_installer_child_dies_with_the_sigkilled_manager():
    script = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from manager.deps.backends.base import run_streaming\n"
        "run_streaming(['sh', '-c', 'echo $$; exec sleep 60'], lambda line: print(line, flush=True))\n"
    )
    manager = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert manager.stdout is not None
        child = int(manager.stdout.readline())
        os.kill(child, 0)  # alive while the Manager lives
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":  # sh execs sleep
            assert time.monotonic() < deadline, "the child never became sleep"
            time.sleep(0.02)
    finally:
        os.kill(manager.pid, signal.SIGKILL)
        manager.wait()
    _gone(child, "the installer child outlived the SIGKILLed Manager")


def test_a_timeout_stops_the_child_and_its_helpers(tmp_path: Path):
    marker = tmp_path / "helper.pid"
    result = run_streaming(
        ["sh", "-c", f"sleep 60 & echo $! > {marker}; echo started; wait"],
        None,
        options=RunOptions(timeout=1.0),
    )
    assert result.returncode == -9 and "killed after 1 s" in result.output_tail[-1]
    assert result.command[:2] == ("sh", "-c")  # the command as asked, without the launcher
    _gone(int(marker.read_text()), "the installer's helper outlived the timeout")
