"""Choose uv or pip by running them with the ComfyUI python, and record why.

A tool counts as available only when ``<tool> --version`` actually runs: pip may be missing
from a uv-made venv, and a ``uv`` on PATH may be a broken shim. ``use_uv``: ``True`` prefers
uv, ``False`` prefers pip, ``None`` (not set in config.ini) prefers uv when it is found.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import DepsInstallerUnavailable
from .base import DEFAULT_RUN_OPTIONS, Backend, InstallerChoice, RunOptions, child_env
from .pip import PipBackend
from .uv import UvBackend

_EXE = ".exe" if os.name == "nt" else ""


def probe_tool(command: Sequence[str], *, timeout: float = 30.0) -> tuple[str | None, str]:
    """Run ``command --version``: (first output line, "") when it works, else (None, why)."""
    try:
        out = subprocess.run(
            [*command, "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=child_env(),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{' '.join(command)}: {exc.__class__.__name__}: {exc}"
    text = (out.stdout or out.stderr).strip()
    if out.returncode != 0:
        last = text.splitlines()[-1] if text else f"exit status {out.returncode}"
        return None, f"{' '.join(command)}: {last}"
    return (text.splitlines()[0] if text else "unknown version"), ""


def uv_candidates(python: str) -> list[tuple[str, ...]]:
    """Where uv may live, most specific first: next to the ComfyUI python, next to ours, PATH,
    then the ``uv`` module of the ComfyUI python."""
    found: list[tuple[str, ...]] = []
    for folder in (Path(python).parent, Path(sys.executable).parent):
        exe = folder / f"uv{_EXE}"
        if exe.is_file():
            found.append((str(exe),))
    on_path = shutil.which("uv")
    if on_path:
        found.append((on_path,))
    found.append((python, "-m", "uv"))
    unique: list[tuple[str, ...]] = []
    for cand in found:
        if cand not in unique:
            unique.append(cand)
    return unique


def _find_uv(python: str, candidates: Sequence[Sequence[str]] | None) -> tuple[tuple[str, ...] | None, str, list[str]]:
    tried: list[str] = []
    for cand in uv_candidates(python) if candidates is None else candidates:
        version, why = probe_tool(cand)
        if version:
            return tuple(cand), version, tried
        tried.append(why)
    return None, "", tried


def detect_installer(
    python: str, use_uv: bool | None, *, uv_search: Sequence[Sequence[str]] | None = None
) -> InstallerChoice:
    """Pick the backend for ``python`` (see the module doc); ``DepsInstallerUnavailable`` when
    neither runs. ``uv_search`` replaces the default uv locations (tests, a pinned uv binary)."""
    if not Path(python).exists() and not shutil.which(python):
        raise DepsInstallerUnavailable(
            f"the python for dependency installs does not exist: {python}",
            hint="Set python_executable in config.ini to the interpreter ComfyUI runs with "
            "(empty = the interpreter running the Manager).",
            details={"python": python},
        )
    pip_cmd = (python, "-m", "pip")

    def pip_probe() -> tuple[str | None, str]:
        return probe_tool(pip_cmd)

    if use_uv is False:
        pip_version, pip_why = pip_probe()
        if pip_version:
            return InstallerChoice("pip", "use_uv = false in config.ini", pip_cmd, python, pip_version)
        uv_cmd, uv_version, tried = _find_uv(python, uv_search)
        if uv_cmd:
            return InstallerChoice(
                "uv", f"use_uv = false but pip does not run ({pip_why}); using uv", uv_cmd, python, uv_version
            )
        raise _unavailable(python, [pip_why, *tried])
    uv_cmd, uv_version, tried = _find_uv(python, uv_search)
    if uv_cmd:
        why = "use_uv = true in config.ini" if use_uv else "use_uv is not set and uv was found"
        return InstallerChoice("uv", f"{why} ({' '.join(uv_cmd)})", uv_cmd, python, uv_version)
    pip_version, pip_why = pip_probe()
    if pip_version:
        lead = "use_uv = true but" if use_uv else "use_uv is not set and"
        return InstallerChoice(
            "pip", f"{lead} uv was not found (tried {len(tried)} places); using pip", pip_cmd, python, pip_version
        )
    raise _unavailable(python, [*tried, pip_why])


def _unavailable(python: str, tried: list[str]) -> DepsInstallerUnavailable:
    return DepsInstallerUnavailable(
        f"neither uv nor pip runs with {python}",
        hint=f"Install one of them for that interpreter (`{python} -m ensurepip`, or put uv on PATH / "
        f"next to it), or point python_executable in config.ini at ComfyUI's python.",
        details={"python": python, "tried": tried},
    )


def backend_for(choice: InstallerChoice, options: RunOptions = DEFAULT_RUN_OPTIONS) -> Backend:
    """The backend object for a recorded choice."""
    if choice.name == "uv":
        return UvBackend(choice, options)
    if choice.name == "pip":
        return PipBackend(choice, options)
    raise ValueError(f"unknown installer {choice.name!r}")
