"""``cm-cli.py serve`` for real: a child process serving the table, the page and the socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "cm-cli.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
        # as from a terminal: a suite started in the background (CI) inherits SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    line = proc.stdout.readline()  # the ready line, printed once listening
    if "serving" not in line:
        proc.kill()
        raise AssertionError(f"serve did not start: {line!r} {proc.stderr.read()[-500:]}")
    return proc, line


def _get(url: str) -> tuple[int, bytes, str]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.read(), resp.headers.get("Content-Type", "")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=60)  # a loaded CI box is slow to wind the worker down
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    return tmp_path / "demo"


def test_serve_demo_answers_the_table_page_and_script(demo_dir: Path, socket_audit_log):
    port = _free_port()
    proc, line = _serve("serve", "--demo", "--dir", str(demo_dir), "--port", str(port))
    try:
        assert f"http://127.0.0.1:{port}/" in line and "offline" in line
        base = f"http://127.0.0.1:{port}"
        status, body, _ = _get(base + "/offline-manager/v1/status")
        data = json.loads(body)["data"]
        assert status == 200 and data["door"] == "standalone" and data["network_mode"] == "offline"
        status, body, _ = _get(base + "/api/offline-manager/health")  # the table's probe, as in ComfyUI
        assert status == 200 and json.loads(body)["data"]["comfyui_root"] == data["comfyui_root"]
        status, body, _ = _get(base + "/api/customnode/getlist?mode=cache&skip_update=true")
        assert status == 200 and "demo-image-tools" in json.loads(body)["node_packs"]
        status, body, ctype = _get(base + "/")
        assert status == 200 and ctype.startswith("text/html") and b"/js/standalone.js" in body
        status, body, ctype = _get(base + "/js/standalone.js")
        assert status == 200 and b"export async function startStandalone" in body
        status, body, ctype = _get(base + "/js/api-client.js")
        assert status == 200 and b"export class OfflineManagerClient" in body
        status, body, _ = _get(base + "/offline-manager/v1/openapi.json")
        assert json.loads(body)["openapi"].startswith("3.")
    finally:
        code = _stop(proc)
    assert code == 0
    hosts = {addr[0] for addr in socket_audit_log.inet_connects() if isinstance(addr, tuple)}
    assert hosts <= {"127.0.0.1"}


def test_serve_on_a_non_loopback_address_warns_and_the_policy_knows(demo_dir: Path):
    port = _free_port()
    proc, _line = _serve("serve", "--demo", "--dir", str(demo_dir), "--host", "0.0.0.0", "--port", str(port))
    try:
        policy = json.loads(_get(f"http://127.0.0.1:{port}/offline-manager/v1/policy")[1])["data"]
        assert policy["settings"]["loopback"] is False
        assert policy["operations"]["network_loosen"]["allowed"] is False
        assert "--listen 127.0.0.1" in policy["operations"]["network_loosen"]["hint"]
    finally:
        code = _stop(proc, signal.SIGTERM)  # systemd / docker stop: winds down like Ctrl+C
        err = proc.stderr.read()
    assert code == 0, err
    assert "not loopback" in err


def test_serve_reports_a_busy_port(demo_dir: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(
            [sys.executable, str(REPO / "cm-cli.py"), "serve", "--demo", "--dir", str(demo_dir), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": ""},
        )
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "--port" in out.stderr
