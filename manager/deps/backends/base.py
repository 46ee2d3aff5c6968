"""One interface for the package installers (uv, pip), run as subprocesses of the ComfyUI python.

Backends only turn an ``InstallArgs`` into a command line and run it, streaming every output
line to a progress callback. Deciding *what* to install and *from where* belongs to
``manager.deps``; every URL in ``InstallArgs`` has already passed the network gate.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ...procs import child_launch, kill_tree

ProgressFn = Callable[[str], None]

# Package-source settings that pip/uv would otherwise take from the environment. The gate owns
# every package URL, so these are removed from the child's environment in every mode (a stray
# PIP_EXTRA_INDEX_URL would otherwise send requests to PyPI behind the admin's back).
_SOURCE_ENV_PREFIXES = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
    "PIP_TRUSTED_HOST",
    "PIP_CONFIG_FILE",
    "PIP_REQUIREMENT",
    "UV_INDEX",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
    "UV_INSECURE_HOST",
    "UV_OFFLINE",
    "UV_CONFIG_FILE",
    "UV_PYTHON",
    "UV_SYSTEM_PYTHON",
)


def _no_progress(_line: str) -> None:
    return None


@dataclass(frozen=True)
class InstallerChoice:
    """Which backend runs the installs, with which command, and why it was chosen."""

    name: str  # "uv" or "pip"
    reason: str  # shown to the user: config, availability
    command: tuple[str, ...]  # prefix: ("/venv/bin/uv",) or ("/venv/bin/python", "-m", "pip")
    python: str  # the interpreter whose environment is changed
    version: str = ""  # "uv 0.5.1" / "pip 24.0 from ..."

    def describe(self) -> str:
        return f"{self.name} ({self.version or 'version unknown'}): {self.reason}"


@dataclass(frozen=True)
class InstallArgs:
    """What one installer invocation installs and the only sources it may use."""

    requirements: tuple[str, ...]
    index_url: str | None = None  # None with no_index=True: wheelhouse only
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    no_index: bool = False
    offline: bool = False  # uv: --offline (never touch the network)

    def source_flags(self, *, trusted_flag: str) -> list[str]:
        """The index/find-links options both backends share; only the trusted-host flag differs."""
        cmd: list[str] = []
        if self.no_index:
            cmd.append("--no-index")
        elif self.index_url:
            cmd += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            cmd += ["--extra-index-url", url]
        for link in self.find_links:
            cmd += ["--find-links", link]
        for host in self.trusted_hosts:
            cmd += [trusted_flag, host]
        return cmd


@dataclass(frozen=True)
class RunResult:
    command: tuple[str, ...]
    returncode: int
    output_tail: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class RunOptions:
    """Process settings shared by every backend call."""

    timeout: float | None = 3600.0
    tail_lines: int = 40
    extra_env: Mapping[str, str] = field(default_factory=dict)


DEFAULT_RUN_OPTIONS = RunOptions()  # the shared default of the functions that take options


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for uv/pip: inherited, minus package-source settings, quiet and non-interactive."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_SOURCE_ENV_PREFIXES)}
    env.update(
        {
            "PIP_CONFIG_FILE": os.devnull,  # pip.conf may add extra-index-url; the gate decides sources
            "PIP_NO_INPUT": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",  # that check is a request to pypi.org
            "PIP_PROGRESS_BAR": "off",
            "UV_NO_CONFIG": "1",
            "UV_NO_PROGRESS": "1",
            "NO_COLOR": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def run_streaming(
    command: Sequence[str], progress: ProgressFn | None = None, *, options: RunOptions = RunOptions()
) -> RunResult:
    """Run ``command``, passing each output line (stdout and stderr merged) to ``progress``.

    Raises ``FileNotFoundError``/``PermissionError`` when the program cannot start; a timeout
    kills the process and returns returncode -9 with a note in the tail.
    """
    emit = progress or _no_progress
    tail: deque[str] = deque(maxlen=options.tail_lines)
    started = time.monotonic()
    argv, spawn = child_launch(command)
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=child_env(options.extra_env),
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
        **spawn,
    )
    timer: threading.Timer | None = None
    timed_out = threading.Event()
    if options.timeout:

        def _kill() -> None:
            timed_out.set()
            kill_tree(proc)

        timer = threading.Timer(options.timeout, _kill)
        timer.daemon = True
        timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\r\n")
            if line.strip():
                tail.append(line)
                emit(line)
        returncode = proc.wait()
    finally:
        if timer:
            timer.cancel()
        if proc.poll() is None:
            kill_tree(proc)
            proc.wait()
    if timed_out.is_set():
        tail.append(f"(killed after {options.timeout:.0f} s)")
        returncode = -9
    return RunResult(tuple(command), returncode, tuple(tail), time.monotonic() - started)


class Backend(ABC):
    """An installer behind the one interface: build a command, run it, stream its lines."""

    name: ClassVar[str] = ""

    def __init__(self, choice: InstallerChoice, options: RunOptions = RunOptions()):
        self.choice = choice
        self.options = options

    @abstractmethod
    def install_command(self, args: InstallArgs) -> list[str]:
        """The full command line installing ``args`` into ``choice.python``'s environment."""

    def install(self, args: InstallArgs, progress: ProgressFn | None = None) -> RunResult:
        return run_streaming(self.install_command(args), progress, options=self.options)
