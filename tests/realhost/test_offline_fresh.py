"""A fresh box: the real ComfyUI with us and no channel data yet, and a start in every mode.

Offline with nothing cached, what does not need the catalog (installed packs, snapshots,
config, the queue, status) still answers; the catalog routes answer a coded error whose hint
names a command that exists. In public and private mode too, nothing opens a socket at start.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest
from realhost.helpers import keep_artifacts, need_host, start_or_skip

from support import realhost

NO_CATALOG_NEEDED = (
    "/customnode/installed",
    "/snapshot/getlist",
    "/manager/queue/status",
    "/offline-manager/v1/installed",
    "/offline-manager/v1/snapshots",
    "/offline-manager/v1/config",
    "/offline-manager/v1/queue",
    "/offline-manager/v1/status",
    "/snapshot/get_current",
)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory):
    need_host("0.8.0")
    workdir = tmp_path_factory.mktemp("fresh")
    host = realhost.start_comfyui(workdir, "0.8.0", config={"network_mode": "offline"})
    try:
        yield host
    finally:
        host.stop()
        keep_artifacts(host, "offline-fresh-0.8.0")


@pytest.mark.parametrize("path", NO_CATALOG_NEEDED)
def test_what_needs_no_catalog_answers_offline_with_no_channel_data(fresh: realhost.RealComfyUI, path: str) -> None:
    for prefix in ("", "/api"):
        status, _, body = fresh.request("GET", prefix + path)
        assert status == 200, (prefix + path, status, body[:400])
        json.loads(body)


def test_the_catalog_routes_say_how_to_get_a_catalog_with_a_command_that_exists(fresh: realhost.RealComfyUI) -> None:
    status, _, body = fresh.request("GET", "/api/customnode/getlist?mode=cache&skip_update=true")
    assert status >= 400
    error = json.loads(body)["error"]
    assert error["code"] in ("cache_missing", "catalog_unavailable"), error
    commands = re.findall(r"`(cm-cli\.py [^`]+)`", error["hint"])
    assert commands, error["hint"]
    for command in commands:  # each command the hint names runs (its --help, offline)
        argv = [
            sys.executable,
            str(realhost.REPO_ROOT / "cm-cli.py"),
            *[a for a in shlex.split(command)[1:] if not a.startswith("<")],
            "--help",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr[-500:])
    assert fresh.connects() == []


@pytest.mark.parametrize("mode", ["public", "private"])
def test_nothing_opens_a_socket_at_start_in_any_mode(workdir, mode: str) -> None:
    need_host("0.8.0")
    host = start_or_skip(workdir, "0.8.0", config={"network_mode": mode})
    try:
        assert host.get_json("/api/offline-manager/v1/status")["data"]["network_mode"] == mode
        assert host.connects() == [], host.connects()
    finally:
        host.stop()
