"""How the Manager starts child processes (git, uv/pip, install.py).

Children get their own session, so a timeout can stop a whole tree of helpers, and on Linux
they are killed when the thread that started them dies: if the Manager is SIGKILLed mid-clone,
an orphaned git must not keep writing into a staging folder the next operation is cleaning.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

_PR_SET_PDEATHSIG = 1


def _death_signal_setter() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None).prctl  # libc's, resolved in the parent: the child makes one call
    except (OSError, AttributeError):
        return None

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return set_death_signal


@functools.lru_cache(maxsize=1)  # resolved on the first child, never at import
def _setter() -> Callable[[], None] | None:
    return _death_signal_setter()


def child_kwargs() -> dict[str, Any]:
    """``Popen`` keyword arguments for a child that dies with us and owns its process group."""
    if os.name != "posix":
        return {}
    kwargs: dict[str, Any] = {"start_new_session": True}
    setter = _setter()
    if setter is not None:
        kwargs["preexec_fn"] = setter
    return kwargs


@functools.lru_cache(maxsize=1)  # a fact of the machine, looked up on the first child that asks
def _death_signal_launcher() -> tuple[str, ...]:
    """``setpriv --pdeathsig KILL --`` when util-linux's setpriv has that option, else ()."""
    if not sys.platform.startswith("linux"):
        return ()
    exe = shutil.which("setpriv")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ()
    return (exe, "--pdeathsig", "KILL", "--") if "--pdeathsig" in out.stdout else ()


def child_launch(command: Sequence[str], *, must_exist: bool = False) -> tuple[list[str], dict[str, Any]]:
    """``command`` and ``Popen`` keyword arguments for a child like ``child_kwargs``'s, started the
    cheap way where the machine allows: ``setpriv --pdeathsig KILL`` sets the death signal and
    execs the command, so Python spawns with vfork (a ``preexec_fn`` forces a full fork of the
    Manager's process, about 2.5 ms per child, which shows on a 30 ms uv install or a git run).
    Without such a setpriv it is ``child_kwargs``.

    ``must_exist``: raise ``FileNotFoundError`` for a program that is not there, as ``Popen``
    does without the launcher (else setpriv starts and exits 127): callers that turn that error
    into their own (git's ``GitUnavailable``) keep it."""
    launcher = _death_signal_launcher() if os.name == "posix" else ()
    if launcher:
        if must_exist and shutil.which(command[0]) is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", command[0])
        return [*launcher, *command], {"start_new_session": True}
    return list(command), child_kwargs()


def kill_tree(proc: subprocess.Popen[Any]) -> None:
    """Stop ``proc`` and every helper it started: a child of ``child_kwargs`` leads its own
    process group, so a timeout or Ctrl-C leaves no git-remote-https or pip build running."""
    if proc.poll() is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):  # the group is gone, or not ours to signal
        proc.kill()
