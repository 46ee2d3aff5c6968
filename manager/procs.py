"""How the Manager starts child processes (git, uv/pip, install.py).

Children get their own session, so a timeout can stop a whole tree of helpers, and on Linux
they are killed when the thread that started them dies: if the Manager is SIGKILLed mid-clone,
an orphaned git must not keep writing into a staging folder the next operation is cleaning.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable
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
