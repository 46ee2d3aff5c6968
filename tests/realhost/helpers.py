"""Helpers of the real-host tests (plain functions; the fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.conftest import CHROMIUM
from browser.pages import ARTIFACTS, PanelEnv, add_local_packs

from support import realhost


def need_host(version: str = "0.8.0", *, manager_package: bool = False, browser: bool = False) -> None:
    """Skip with the reason (which the run's last line repeats in capitals) when the tier cannot run."""
    reason = realhost.unavailable(version, manager_package=manager_package)
    if reason is None and browser and not Path(CHROMIUM).exists():
        reason = f"chromium not found at {CHROMIUM} (scripts/test.sh installs it)"
    if reason:
        pytest.skip(f"real-host tier did not run: {reason}")


def channel_env(workdir: Path, channel_db: Path) -> PanelEnv:
    """A file:// copy of the real channel with two packs backed by local git repos (offline-safe)."""
    channel = workdir / "channel"
    shutil.copytree(channel_db / "default", channel)
    env = PanelEnv(root=workdir, channel=channel, config=workdir / "unused.ini")
    add_local_packs(env, workdir / "repos", author="realhost-tests")
    env.settings = {"network_mode": "offline", "channel_url": channel.as_uri(), "security_level": "normal"}
    return env


def keep_artifacts(host: realhost.RealComfyUI, label: str) -> None:
    """The host's log and strace record, next to the screenshots (artifacts/ is git-ignored)."""
    dest = ARTIFACTS / "realhost"
    dest.mkdir(parents=True, exist_ok=True)
    for src, name in ((host.log_path, f"{label}.log"), (host.strace_path, f"{label}.strace.txt")):
        if src.exists():
            shutil.copyfile(src, dest / name)


def start_or_skip(workdir: Path, version: str, **kwargs: Any) -> realhost.RealComfyUI:
    need_host(version, manager_package=kwargs.get("manager_package", False))
    return realhost.start_comfyui(workdir, version, **kwargs)


@contextlib.contextmanager
def channel_host(
    workdir: Path, channel_db: Path, version: str, label: str, **kwargs: Any
) -> Iterator[realhost.RealComfyUI]:
    """A started real ComfyUI, offline, over a file:// channel with local pack repos; stopped and
    its log kept as ``label`` afterwards. ``kwargs`` go to ``start_comfyui`` (extra_nodes, ...)."""
    env = channel_env(workdir, channel_db)
    host = realhost.start_comfyui(workdir, version, config=env.settings, **kwargs)
    host.extra["env_panel"] = env
    with stopped_after(host, label):
        yield host


def browser_host_work(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, channel_db: Path, prefix: str
) -> tuple[str, Path, PanelEnv]:
    """For a module fixture parametrized by host version: (version, a fresh work folder named
    ``prefix-version``, its file:// channel env); skips when the tier or chromium is missing."""
    version: str = request.param
    need_host(version, browser=True)
    work = tmp_path_factory.mktemp(f"{prefix}-{version}")
    return version, work, channel_env(work, channel_db)


@contextlib.contextmanager
def stopped_after(host: realhost.RealComfyUI, label: str) -> Iterator[realhost.RealComfyUI]:
    """``host`` for the block; then stopped, its log and strace record kept as ``label``."""
    try:
        yield host
    finally:
        host.stop()
        keep_artifacts(host, label)
