"""A pack's own setup after it is placed: ``requirements.txt`` through the dependency step,
then ``install.py`` run with the ComfyUI python under a timeout."""

from __future__ import annotations

import collections
import os
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InstallScriptFailed
from ..procs import child_kwargs, kill_tree
from .ops import Ops
from .reporting import TAIL_LINES, LineFn, Reporter, Step

if TYPE_CHECKING:  # pragma: no cover
    from ..context import Manager


def script_env(manager: Manager) -> dict[str, str]:
    """Environment for a pack's install.py: the tree's paths, and offline switches when offline."""
    env = dict(os.environ)
    layout = manager.layout
    env["COMFYUI_PATH"] = str(layout.comfyui_root)
    env["COMFYUI_FOLDERS_BASE_PATH"] = str(layout.comfyui_root)
    env["PYTHONUNBUFFERED"] = "1"
    if manager.gate.offline:
        # an install.py that shells out to pip/uv/huggingface must not reach the network
        env.update({"PIP_NO_INDEX": "1", "UV_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    return env


def run_install_script(python: str, folder: Path, emit: LineFn, *, timeout: float, env: Mapping[str, str]) -> int:
    """Run ``python install.py`` in ``folder`` streaming output lines; raises
    ``InstallScriptFailed`` on a non-zero exit or after ``timeout`` seconds."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        proc = subprocess.Popen(
            [python, "install.py"],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            **child_kwargs(),
        )
    except OSError as exc:
        raise InstallScriptFailed(
            f"could not start {python} for install.py: {exc}",
            hint="Check python_executable in config.ini (empty = ComfyUI's python).",
            details={"python": python},
        ) from exc
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        kill_tree(proc)

    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    started = time.monotonic()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                tail.append(line)
                emit(line)
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            kill()
            proc.wait()
    if timed_out.is_set():
        raise InstallScriptFailed(
            f"install.py ran longer than {timeout:.0f} s and was stopped",
            hint="The pack's install script hangs or waits for the network; check its "
            "output below, or install with a longer `script_timeout`.",
            details={"timeout": timeout, "output_tail": list(tail)},
        )
    if rc != 0:
        raise InstallScriptFailed(
            f"install.py exited with status {rc}" + (f": {tail[-1]}" if tail else ""),
            hint="Read the script output in details.output_tail; fix what it needs "
            "(often a missing package in the wheelhouse) and retry.",
            details={"exit_code": rc, "output_tail": list(tail), "seconds": round(time.monotonic() - started, 2)},
        )
    return rc


def run_pack_scripts(
    ops: Ops,
    folder: Path,
    pack: str,
    rep: Reporter,
    *,
    skip_deps: bool = False,
    timeout: float | None = None,
    fix: bool = False,
) -> Mapping[str, Any] | None:
    """requirements.txt through the deps step, then install.py; returns the deps summary."""
    deps: Mapping[str, Any] | None = None
    if not skip_deps and (folder / "requirements.txt").is_file():
        with Step(rep, "deps", pack):
            deps = ops.deps()(folder, pack, rep.line_fn("deps"))
            deps = dict(deps) if deps is not None else {}
    if (folder / "install.py").is_file():
        with Step(rep, "install-script", pack):
            run_install_script(
                str(ops.manager.host.python_executable),
                folder,
                rep.line_fn("install-script"),
                timeout=timeout or ops.script_timeout,
                env=script_env(ops.manager),
            )
    return deps
